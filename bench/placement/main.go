// Command placement benchmarks vmctl.Place against a full-scan scheduler
// written here (the same filters and fit score, no indexes, no sampling:
// it scores every host), on the same snapshots and the same requests in the
// same run: snapshots of 1,000 and 10,000 hosts (3 zones, 20 hosts a rack,
// kvm, docker and bm hosts, labels) carrying 100,000 guests' usage.
//
// Decisions are not applied there: both measure the pure decision on a
// fixed snapshot. Then, on a throwaway PostgreSQL, committed placements
// per second (committed.go): guest.create tasks end to end on 1 and 8
// vmworker replicas, and the raw claim (decision + ClaimHost) in process.
// The last line is the 10,000-host result with the committed fields:
//
//	BENCH placement decisions_per_s=<r> fullscan_decisions_per_s=<p> ratio=<r/p> committed_1_per_s=<x> committed_8_per_s=<y> conflicts_8=<pct>
//
// Usage: go run ./bench/placement [-n 20000] [-seconds 2] [-guests 2000] [-hosts 200] [-workers 16] [-replicas 1,8] [-statements 0] [-skip-committed]
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/vmctl"
)

func main() {
	n := flag.Int("n", 20000, "distinct requests per size")
	secs := flag.Float64("seconds", 2, "how long each scheduler runs per size")
	var c committedConfig
	flag.IntVar(&c.guests, "guests", 2000, "guests placed per committed run")
	flag.IntVar(&c.hosts, "hosts", 200, "hosts of the committed runs (each sells 20 guests)")
	flag.IntVar(&c.workers, "workers", 16, "tasks each replica runs at once (goroutines per Keeper for the raw claims)")
	skip := flag.Bool("skip-committed", false, "only the decision benchmark, no PostgreSQL")
	flag.IntVar(&c.statements, "statements", 0, "print the top N statements of each end-to-end run (pg_stat_statements)")
	replicas := flag.String("replicas", "1,8", "replica counts of the end-to-end runs")
	flag.Parse()
	for _, f := range strings.Split(*replicas, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench/placement: -replicas %q: want counts like 1,8\n", *replicas)
			os.Exit(2)
		}
		c.replicas = append(c.replicas, n)
	}
	var last string
	for _, size := range []int{1000, 10000} {
		s := snapshot(size, 100000, rand.New(rand.NewPCG(1, uint64(size))))
		reqs := requests(*n, rand.New(rand.NewPCG(2, uint64(size))))
		d := time.Duration(*secs * float64(time.Second))
		placed, rate := measure(s, reqs, d, func(s *vmctl.Snapshot, r vmctl.Request, rnd *rand.Rand) bool {
			_, err := vmctl.Place(s, r, rnd)
			return err == nil
		})
		fullPlaced, fullRate := measure(s, reqs, d, fullScan)
		fmt.Printf("hosts=%d guests=100000 place: %.0f decisions/s (%.1f%% placed); fullscan: %.0f decisions/s (%.1f%% placed)\n",
			size, rate, 100*placed, fullRate, 100*fullPlaced)
		last = fmt.Sprintf("BENCH placement decisions_per_s=%.0f fullscan_decisions_per_s=%.0f ratio=%.1f", rate, fullRate, rate/fullRate)
	}
	if !*skip {
		extra, err := committed(os.Stdout, c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/placement:", err)
			os.Exit(1)
		}
		last += " " + extra
	}
	fmt.Println(last)
}

type decider func(s *vmctl.Snapshot, r vmctl.Request, rnd *rand.Rand) bool

// measure runs decide over reqs in a loop for about d on one goroutine and
// returns the fraction placed and the decisions per second.
func measure(s *vmctl.Snapshot, reqs []vmctl.Request, d time.Duration, decide decider) (placed, perSec float64) {
	rnd := rand.New(rand.NewPCG(3, 3))
	start := time.Now()
	ok, done := 0, 0
	for time.Since(start) < d {
		for range 100 {
			if decide(s, reqs[done%len(reqs)], rnd) {
				ok++
			}
			done++
		}
	}
	return float64(ok) / float64(done), float64(done) / time.Since(start).Seconds()
}

var zones = []string{"a", "b", "c"}

// snapshot builds hosts (70% kvm, 20% docker, 10% bm) with guests' usage
// spread over the kvm and docker hosts.
func snapshot(hosts, guests int, rnd *rand.Rand) *vmctl.Snapshot {
	var hs []*vmctl.HostInfo
	for i := range hosts {
		role := rackcloud.RoleKVM
		switch p := rnd.IntN(10); {
		case p == 0:
			role = rackcloud.RoleBareMetal
		case p < 3:
			role = rackcloud.RoleDocker
		}
		rack := i / 20
		h := &vmctl.HostInfo{ID: fmt.Sprintf("host-%05d", i), Name: fmt.Sprintf("n%05d", i),
			ZoneID: zones[rack%len(zones)], RackID: fmt.Sprintf("rack-%04d", rack), Role: role,
			State: rackcloud.HostReady, Maintenance: rnd.IntN(100) == 0, Labels: map[string]string{},
			Total:    rackcloud.Resources{CPUCores: 64, MemoryMiB: 262144, DiskGiB: 4000},
			Overhead: rackcloud.Resources{CPUCores: 2, MemoryMiB: 8192, DiskGiB: 100},
			Ratio:    vmctl.Overcommit{CPU: 4, Memory: 1, Disk: 1}}
		if rnd.IntN(2) == 0 {
			h.Labels["ssd"] = ""
		}
		if rnd.IntN(10) == 0 {
			h.Labels["gpu"] = []string{"a100", "h100"}[rnd.IntN(2)]
		}
		h.Labels["tier"] = []string{"gold", "silver", "bronze"}[rnd.IntN(3)]
		if rnd.IntN(50) == 0 {
			h.State = rackcloud.HostDraining
		}
		hs = append(hs, h)
	}
	// 100,000 guests of 1-8 cores and 2-32 GiB on random guest hosts, as
	// long as they leave a fifth free; groups of 5 guests each.
	for g := range guests {
		h := hs[rnd.IntN(len(hs))]
		if h.Role == rackcloud.RoleBareMetal {
			if h.Guests == 0 {
				h.Guests = 1
			}
			continue
		}
		f := rackcloud.Resources{CPUCores: 1 << rnd.IntN(4), MemoryMiB: 2048 << rnd.IntN(5), DiskGiB: 20 << rnd.IntN(3)}
		// Keep a fifth of each host free, so that a full small fleet
		// still places (the guests that do not fit are left out).
		free, c := h.Free(), h.Capacity()
		if free.CPUCores-c.CPUCores/5 < f.CPUCores || free.MemoryMiB-c.MemoryMiB/5 < f.MemoryMiB || free.DiskGiB-c.DiskGiB/5 < f.DiskGiB {
			continue
		}
		h.Used.CPUCores += f.CPUCores
		h.Used.MemoryMiB += f.MemoryMiB
		h.Used.DiskGiB += f.DiskGiB
		h.Guests++
		if h.Groups == nil {
			h.Groups = map[string]int{}
		}
		h.Groups[fmt.Sprint("grp-", g/5)]++
	}
	return vmctl.NewSnapshot(hs)
}

// requests is a mix: plain VMs, VMs in a zone, with labels, in a soft or
// hard anti-affinity group, containers and whole machines.
func requests(n int, rnd *rand.Rand) []vmctl.Request {
	reqs := make([]vmctl.Request, n)
	for i := range reqs {
		r := vmctl.Request{GuestID: fmt.Sprint("guest-", i), Kind: rackcloud.GuestVM,
			Flavor: rackcloud.Resources{CPUCores: 1 << rnd.IntN(4), MemoryMiB: 2048 << rnd.IntN(5), DiskGiB: 20 << rnd.IntN(3)}}
		switch p := rnd.IntN(10); p {
		case 1:
			r.ZoneID = zones[rnd.IntN(len(zones))]
		case 2:
			r.Constraints = vmctl.MustParseLabelExprs("ssd", "tier in (gold,silver)")
		case 3:
			r.Group = &vmctl.Group{ID: fmt.Sprint("grp-", rnd.IntN(20000)), Policy: rackcloud.AntiAffinity, Scope: rackcloud.ScopeRack}
		case 4:
			r.Group = &vmctl.Group{ID: fmt.Sprint("grp-", rnd.IntN(20000)), Policy: rackcloud.AntiAffinity, Hard: true, Scope: rackcloud.ScopeHost}
		case 5:
			r.Kind = rackcloud.GuestContainer
		case 6:
			r.Kind, r.Flavor = rackcloud.GuestBareMetal, rackcloud.Resources{}
		case 7:
			r.Strategy = vmctl.Spread
		}
		reqs[i] = r
	}
	return reqs
}

// fullScan is the baseline: the same filters over every host, the group's
// counts from every host's Groups, every feasible host scored, the choice
// random among the best three.
func fullScan(s *vmctl.Snapshot, r vmctl.Request, rnd *rand.Rand) bool {
	role := map[rackcloud.GuestKind]rackcloud.HostRole{rackcloud.GuestVM: rackcloud.RoleKVM,
		rackcloud.GuestContainer: rackcloud.RoleDocker, rackcloud.GuestBareMetal: rackcloud.RoleBareMetal}[r.Kind]
	key := func(h *vmctl.HostInfo) string {
		if r.Group.Scope == rackcloud.ScopeRack {
			return h.RackID
		}
		return h.ID
	}
	counts := map[string]int{}
	if r.Group != nil {
		for _, h := range s.Hosts {
			if n := h.Groups[r.Group.ID]; n > 0 {
				counts[key(h)] += n
			}
		}
	}
	type cand struct {
		id    string
		score float64
	}
	var top []cand
	for _, h := range s.Hosts {
		if h.Role != role || r.ZoneID != "" && h.ZoneID != r.ZoneID || r.Exclude[h.ID] ||
			h.State != rackcloud.HostReady || h.Maintenance || r.RackID != "" && h.RackID != r.RackID {
			continue
		}
		ok := true
		for _, e := range r.Constraints {
			ok = ok && e.Match(h.Labels)
		}
		free := h.Free()
		if !ok || free.CPUCores < r.Flavor.CPUCores || free.MemoryMiB < r.Flavor.MemoryMiB || free.DiskGiB < r.Flavor.DiskGiB ||
			h.Role == rackcloud.RoleBareMetal && h.Guests > 0 || h.MaxGuests > 0 && h.Guests >= h.MaxGuests {
			continue
		}
		score := vmctl.FitScore(h, r.Flavor, r.Strategy)
		if r.Group != nil && counts[key(h)] > 0 {
			if r.Group.Hard {
				continue
			}
			score -= vmctl.DefaultSoftWeight
		}
		top = append(top, cand{h.ID, score})
		for i := len(top) - 1; i > 0 && top[i].score > top[i-1].score; i-- {
			top[i], top[i-1] = top[i-1], top[i]
		}
		if len(top) > 3 {
			top = top[:3]
		}
	}
	if len(top) == 0 {
		return false
	}
	_ = top[rnd.IntN(len(top))]
	return true
}

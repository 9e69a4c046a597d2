// Command bmc benchmarks power-state polling of many BMCs: rackcloud's
// bmc.Poller (its native IPMI provider, bmc/ipmilan, unless
// -ipmi-provider=ipmitool) against calling ipmitool directly in a loop, with the same
// concurrency, against the same simulated BMCs (one ipmi_sim per server),
// in the same run. Rounds alternate between the two so that drift in the
// machine's load hits both.
//
// The last line is
//
//	BENCH bmc polls_per_s=<rackcloud> ipmitool_polls_per_s=<peer> ratio=<rackcloud/peer>
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/rack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/bmc:", err)
		os.Exit(1)
	}
}

type tally struct {
	polls, errors int64
	elapsed       time.Duration
	// cpu is the CPU time of the ipmitool processes run (user + system):
	// the client-side cost, which the machine's load does not change.
	cpu time.Duration
	// self is this process's CPU time over the phase: rackcloud's own
	// client-side cost, and the lab's in-process IPMI guards (which
	// relay every datagram of both) as well.
	self time.Duration
}

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perPoll shares d over every poll, good or failed.
func (t tally) perPoll(d time.Duration) time.Duration {
	if t.polls+t.errors == 0 {
		return 0
	}
	return d / time.Duration(t.polls+t.errors)
}

// childCPU is the CPU time of the reaped child processes so far.
func childCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (t tally) rate() float64 { return float64(t.polls) / t.elapsed.Seconds() }
func (t tally) errRate() float64 {
	if t.polls+t.errors == 0 {
		return 0
	}
	return float64(t.errors) / float64(t.polls+t.errors)
}

func run() error {
	bmcs := flag.Int("bmcs", 50, "simulated BMCs")
	conc := flag.Int("concurrency", 8, "polls in flight at once, for both")
	dur := flag.Duration("duration", 4*time.Second, "length of one round of each")
	rounds := flag.Int("rounds", 6, "rounds of each")
	perBMC := flag.Float64("rate", 0, "requests per second rackcloud sends one BMC (0: bmc.DefaultRate, the production limit, which caps the poller at rate*bmcs)")
	provider := flag.String("ipmi-provider", bmc.IPMINative, "rackcloud's IPMI provider: native (ipmilan) or ipmitool")
	flag.Parse()

	dir, err := os.MkdirTemp("", "bench-bmc-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	fmt.Printf("starting %d ipmi_sim BMCs...\n", *bmcs)
	r, err := rack.Start(ctx, rack.Config{Name: "bench", Nodes: *bmcs, Dir: dir, Virtual: true})
	if err != nil {
		return err
	}
	defer r.Stop()
	// Half the servers on, so both answers are exercised.
	want := map[string]rackcloud.PowerState{}
	for i, n := range r.Nodes {
		if i%2 == 0 {
			if err := n.PowerOn(); err != nil {
				return err
			}
		}
		want[n.IPMI.String()] = n.Power()
	}

	mgr, err := bmc.New(bmc.Config{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
		Rate: rate.Limit(*perBMC), Burst: int(max(*perBMC/2, 0)), IPMIProvider: *provider})
	if err != nil {
		return err
	}
	defer mgr.Close(ctx)

	// Open every client first: opening costs one extra status call per
	// BMC, which is not what is measured.
	for _, n := range r.Nodes {
		if _, err := mgr.Open(ctx, endpoint(n)); err != nil {
			return err
		}
	}

	var ours, peer tally
	for i := 0; i < *rounds; i++ {
		var o, p tally
		var err error
		// ABBA order: a steady drift in the machine's load hits both.
		if i%2 == 0 {
			p, err = pollIpmitool(ctx, r, want, *conc, *dur)
			if err == nil {
				o, err = pollRackcloud(ctx, mgr, r, want, *conc, *dur)
			}
		} else {
			o, err = pollRackcloud(ctx, mgr, r, want, *conc, *dur)
			if err == nil {
				p, err = pollIpmitool(ctx, r, want, *conc, *dur)
			}
		}
		if err != nil {
			return err
		}
		fmt.Printf("round %d: rackcloud %6.1f polls/s (%d errors), ipmitool %6.1f polls/s (%d errors)\n",
			i+1, o.rate(), o.errors, p.rate(), p.errors)
		peer.polls += p.polls
		peer.errors += p.errors
		peer.elapsed += p.elapsed
		peer.cpu += p.cpu
		peer.self += p.self
		ours.self += o.self
		ours.polls += o.polls
		ours.errors += o.errors
		ours.elapsed += o.elapsed
		ours.cpu += o.cpu
	}
	fmt.Printf("rackcloud bmc.Poller (%s): %.1f polls/s, error rate %.4f (%d polls, %d errors), ipmitool CPU %s per poll, own CPU %s per poll\n",
		*provider, ours.rate(), ours.errRate(), ours.polls, ours.errors, ours.perPoll(ours.cpu).Round(10*time.Microsecond), ours.perPoll(ours.self).Round(time.Microsecond))
	fmt.Printf("ipmitool loop:        %.1f polls/s, error rate %.4f (%d polls, %d errors), ipmitool CPU %s per poll, own CPU %s per poll\n",
		peer.rate(), peer.errRate(), peer.polls, peer.errors, peer.perPoll(peer.cpu).Round(10*time.Microsecond), peer.perPoll(peer.self).Round(time.Microsecond))
	if *perBMC == 0 {
		fmt.Printf("(rackcloud is held to bmc.DefaultRate=%d requests/s per BMC, at most %d polls/s here; -rate lifts it)\n", bmc.DefaultRate, bmc.DefaultRate**bmcs)
	}
	fmt.Printf("BENCH bmc polls_per_s=%.1f ipmitool_polls_per_s=%.1f ratio=%.3f\n", ours.rate(), peer.rate(), ours.rate()/peer.rate())
	return nil
}

// pollRackcloud runs a bmc.Poller over every BMC, polling each as soon as
// its previous poll ended (no interval, no jitter), for d.
func pollRackcloud(ctx context.Context, mgr *bmc.Manager, r *rack.Rack, want map[string]rackcloud.PowerState, conc int, d time.Duration) (tally, error) {
	var polls, errs, all atomic.Int64
	var counting atomic.Bool
	p := mgr.NewPoller(bmc.PollerConfig{
		Interval:    time.Nanosecond,
		Jitter:      -1,
		Concurrency: conc,
		SensorEvery: -1, // power polls alone, as the peer does
		OnResult: func(res bmc.PollResult) {
			all.Add(1)
			if !counting.Load() {
				return
			}
			addr := strings.TrimPrefix(res.BMC, "ipmi://")
			if res.Err != nil || res.Power != want[addr] {
				errs.Add(1)
				return
			}
			polls.Add(1)
		},
	})
	for _, n := range r.Nodes {
		if err := p.Set(n.Name, endpoint(n)); err != nil {
			return tally{}, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	cpu0, self0 := childCPU(), selfCPU()
	go func() { _ = p.Run(ctx); close(done) }()
	time.Sleep(200 * time.Millisecond) // warm-up: every slot busy
	counting.Store(true)
	start := time.Now()
	time.Sleep(d)
	counting.Store(false)
	elapsed := time.Since(start)
	cancel()
	<-done
	// CPU over the whole phase (warm-up and the polls cut short at the
	// end included), shared over every poll of the phase, as for the peer.
	share := float64(polls.Load()+errs.Load()) / float64(max(all.Load(), 1))
	cpu := time.Duration(float64(childCPU()-cpu0) * share)
	self := time.Duration(float64(selfCPU()-self0) * share)
	return tally{polls: polls.Load(), errors: errs.Load(), elapsed: elapsed, cpu: cpu, self: self}, nil
}

func endpoint(n *rack.Node) bmc.Endpoint {
	return bmc.Endpoint{Protocol: rackcloud.BMCIPMI, Address: n.IPMI.String(), Username: n.User, Password: bmc.NewSecret(n.Password)}
}

// pollIpmitool runs conc workers that call `ipmitool chassis power status`
// on the BMCs in turn, for d.
func pollIpmitool(ctx context.Context, r *rack.Rack, want map[string]rackcloud.PowerState, conc int, d time.Duration) (tally, error) {
	var polls, errs atomic.Int64
	var next atomic.Int64
	ipmitool, err := exec.LookPath("ipmitool")
	if err != nil {
		return tally{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	cpu0, self0 := childCPU(), selfCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n := r.Nodes[int(next.Add(1))%len(r.Nodes)]
				cmd := exec.CommandContext(ctx, ipmitool, "-I", "lanplus", "-C", "3",
					"-H", n.IPMI.Addr().String(), "-p", strconv.Itoa(int(n.IPMI.Port())),
					"-U", n.User, "-E", "chassis", "power", "status")
				cmd.Env = []string{"IPMITOOL_PASSWORD=" + n.Password}
				out, err := cmd.CombinedOutput()
				if ctx.Err() != nil {
					return // cut off by the end of the round: not counted
				}
				st, perr := bmc.ParsePowerState(string(out))
				if err != nil || perr != nil || st != want[n.IPMI.String()] {
					errs.Add(1)
					continue
				}
				polls.Add(1)
			}
		}()
	}
	wg.Wait()
	return tally{polls: polls.Load(), errors: errs.Load(), elapsed: time.Since(start), cpu: childCPU() - cpu0, self: selfCPU() - self0}, nil
}

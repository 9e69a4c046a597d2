// Command dhcp benchmarks rackcloud's DHCP server against dnsmasq with
// perfdhcp (Debian package kea-admin), in the same run and the same
// network namespaces: the servers take turns on a bridge in one namespace,
// perfdhcp runs in a second namespace linked to it by a veth pair, offering
// the same load to each: full DORA exchanges from -clients MACs, at each
// of the -rates per second for -period. The servers alternate at every
// rate, each starting fresh, so that drift in the machine's load hits both.
// rackcloud runs in-process (pxe.Service with its sockets in the
// namespace); dnsmasq runs as a child, stopped by PID.
//
// A server's score is its best throughput over the sweep: completed leases
// per second (DHCPACKs perfdhcp received over the period), so that a
// server collapsing under overload is judged at the load it handles best.
// Drops at that rate are reported on the line before the last:
//
//	BENCH dhcp leases_per_s=<rackcloud> dnsmasq_leases_per_s=<peer> ratio=<rackcloud/peer>
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/pxe"
)

const (
	serverIP = "10.201.0.1"
	clientIP = "10.201.0.2/16"
	subnet   = "10.201.0.0/16"
	poolLow  = "10.201.1.0"
	poolHigh = "10.201.255.254"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/dhcp:", err)
		os.Exit(1)
	}
}

type result struct {
	rate         int
	acks, offers int
	drops        int
	period       time.Duration
}

func (r result) leasesPerSec() float64 {
	if r.period == 0 {
		return 0
	}
	return float64(r.acks) / r.period.Seconds()
}

func run() error {
	ratesFlag := flag.String("rates", "250,500,1000,2000,4000,8000", "offered DORA exchanges per second, swept in order")
	clients := flag.Int("clients", 5000, "distinct client MACs")
	period := flag.Duration("period", 5*time.Second, "length of one measurement")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (rackcloud is in-process)")
	flag.Parse()
	var rates []int
	for _, r := range strings.Split(*ratesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			return fmt.Errorf("-rates: bad rate %q", r)
		}
		rates = append(rates, n)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for _, b := range []string{"perfdhcp", "dnsmasq", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found (run lab/install.sh): %w", b, err)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	dir, err := os.MkdirTemp("", "bench-dhcp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srvNS, cliNS, cleanup, err := setup()
	if err != nil {
		return err
	}
	defer cleanup()

	var bestRC, bestDM result
	fmt.Printf("%8s  %22s  %22s\n", "offered", "rackcloud leases/s (drops)", "dnsmasq leases/s (drops)")
	for i, rate := range rates {
		rc, err := benchRackcloud(srvNS, cliNS, filepath.Join(dir, fmt.Sprintf("rc%d", i)), rate, *clients, *period)
		if err != nil {
			return fmt.Errorf("rackcloud at %d/s: %w", rate, err)
		}
		dm, err := benchDnsmasq(srvNS, cliNS, filepath.Join(dir, fmt.Sprintf("dm%d", i)), rate, *clients, *period)
		if err != nil {
			return fmt.Errorf("dnsmasq at %d/s: %w", rate, err)
		}
		fmt.Printf("%6d/s  %18.0f (%5d)  %18.0f (%5d)\n", rate, rc.leasesPerSec(), rc.drops, dm.leasesPerSec(), dm.drops)
		if rc.leasesPerSec() > bestRC.leasesPerSec() {
			bestRC = rc
		}
		if dm.leasesPerSec() > bestDM.leasesPerSec() {
			bestDM = dm
		}
	}
	fmt.Printf("%d MACs, %v per rate; best: rackcloud %.0f leases/s at %d/s offered with %d drops, dnsmasq %.0f leases/s at %d/s offered with %d drops\n",
		*clients, *period, bestRC.leasesPerSec(), bestRC.rate, bestRC.drops, bestDM.leasesPerSec(), bestDM.rate, bestDM.drops)
	ratio := 0.0
	if bestDM.leasesPerSec() > 0 {
		ratio = bestRC.leasesPerSec() / bestDM.leasesPerSec()
	}
	fmt.Printf("BENCH dhcp leases_per_s=%.0f dnsmasq_leases_per_s=%.0f ratio=%.2f\n", bestRC.leasesPerSec(), bestDM.leasesPerSec(), ratio)
	return nil
}

// setup makes the server namespace (bridge br0) and the client namespace
// joined to the bridge by a veth pair.
func setup() (srv *netns.Net, cli string, cleanup func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := fmt.Sprintf("rcbdhcp%d", os.Getpid())
	srv, err = netns.New(ctx, name, netip.MustParsePrefix(serverIP+"/16"))
	if err != nil {
		return nil, "", nil, err
	}
	cli = name + "c"
	cleanup = func() {
		_ = exec.Command("ip", "netns", "del", cli).Run()
		_ = srv.Close()
	}
	steps := [][]string{
		{"ip", "netns", "add", cli},
		{"ip", "netns", "exec", name, "ip", "link", "add", "vb0", "type", "veth", "peer", "name", "vb1"},
		{"ip", "netns", "exec", name, "ip", "link", "set", "vb0", "master", srv.Bridge},
		{"ip", "netns", "exec", name, "ip", "link", "set", "vb0", "up"},
		{"ip", "netns", "exec", name, "ip", "link", "set", "vb1", "netns", cli},
		{"ip", "netns", "exec", cli, "ip", "link", "set", "lo", "up"},
		{"ip", "netns", "exec", cli, "ip", "addr", "add", clientIP, "dev", "vb1"},
		{"ip", "netns", "exec", cli, "ip", "link", "set", "vb1", "up"},
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			cleanup()
			return nil, "", nil, fmt.Errorf("%v: %w: %s", s, err, out)
		}
	}
	return srv, cli, cleanup, nil
}

func benchRackcloud(srv *netns.Net, cli, dir string, rate, clients int, period time.Duration) (result, error) {
	s, err := pxe.New(pxe.Config{
		Interface: srv.Bridge, Netns: srv.Path(), ServerIP: netip.MustParseAddr(serverIP),
		StateDir: dir, Subnet: netip.MustParsePrefix(subnet),
		RangeStart: netip.MustParseAddr(poolLow), RangeEnd: netip.MustParseAddr(poolHigh),
		LeaseTime: time.Hour, RAInterval: -1, TFTPRoot: pxe.DefaultTFTPRoot,
	}, pxe.Deps{})
	if err != nil {
		return result{}, err
	}
	if err := s.Start(context.Background()); err != nil {
		return result{}, err
	}
	defer s.Stop()
	if err := waitServer(srv.Name); err != nil {
		return result{}, err
	}
	return perfdhcp(cli, rate, clients, period)
}

func benchDnsmasq(srv *netns.Net, cli, dir string, rate, clients int, period time.Duration) (result, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	// The same service as rackcloud's: authoritative, no ICMP probe before
	// offering, leases on disk, no per-packet logging.
	cmd := exec.Command("ip", "netns", "exec", srv.Name, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface="+srv.Bridge, "--bind-interfaces",
		"--dhcp-range="+poolLow+","+poolHigh+",255.255.0.0,1h", "--dhcp-lease-max=1000000",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"),
		"--no-ping", "--dhcp-authoritative", "--quiet-dhcp", "--log-facility="+filepath.Join(dir, "log"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	if err := waitServer(srv.Name); err != nil {
		return result{}, fmt.Errorf("%w: %s", err, out.String())
	}
	return perfdhcp(cli, rate, clients, period)
}

// waitServer waits until a socket listens on UDP port 67 in namespace ns
// (read from the namespace's own /proc/net/udp).
func waitServer(ns string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/udp").Output()
		if err == nil && bytes.Contains(out, []byte(":0043 ")) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("no DHCP socket within 15s")
}

var (
	sectionRE = regexp.MustCompile(`(?s)Statistics for: DISCOVER-OFFER\*+\s*(.*?)\*+Statistics for: REQUEST-ACK\*+\s*(.*)`)
	recvRE    = regexp.MustCompile(`received packets: (\d+)`)
	dropsRE   = regexp.MustCompile(`drops: (\d+)`)
)

func perfdhcp(cli string, rate, clients int, period time.Duration) (result, error) {
	args := []string{"netns", "exec", cli, "perfdhcp", "-4", "-l", "vb1",
		"-r", strconv.Itoa(rate), "-R", strconv.Itoa(clients), "-p", strconv.Itoa(int(period.Seconds())), serverIP}
	out, err := exec.Command("ip", args...).CombinedOutput()
	m := sectionRE.FindSubmatch(out)
	if m == nil {
		return result{}, fmt.Errorf("perfdhcp: %v: no statistics in output:\n%s", err, out)
	}
	num := func(re *regexp.Regexp, b []byte) int {
		mm := re.FindSubmatch(b)
		if mm == nil {
			return 0
		}
		n, _ := strconv.Atoi(string(mm[1]))
		return n
	}
	return result{
		rate:   rate,
		offers: num(recvRE, m[1]), acks: num(recvRE, m[2]),
		drops:  num(dropsRE, m[1]) + num(dropsRE, m[2]),
		period: period,
	}, nil
}

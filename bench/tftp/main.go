// Command tftp benchmarks rackcloud's TFTP server against in.tftpd
// (tftpd-hpa) in the same run and the same network namespace: -clients
// concurrent clients (Go, pin/tftp) each fetch the UEFI iPXE binary
// (ipxe.efi, about 1 MB) and an 8 MB kernel, with blksize 1468 and tsize
// as iPXE asks, from one server and then the other; rounds alternate so
// that drift in the machine's load hits both. rackcloud runs in-process
// (pxe.Service with its sockets in the namespace); in.tftpd runs as a
// child, stopped by PID. Every transfer is checked for its full length.
//
// The metric is the aggregate throughput of a round (all bytes over the
// time until the last client finished), averaged over the rounds:
//
//	BENCH tftp mb_per_s=<rackcloud> tftpd_hpa_mb_per_s=<peer> ratio=<rackcloud/peer>
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pin/tftp/v3"
	"golang.org/x/sys/unix"

	"github.com/rackcloud/rackcloud/lab/bootimg"
	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/pxe"
)

const serverIP = "10.202.0.1"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/tftp:", err)
		os.Exit(1)
	}
}

type file struct {
	name string
	size int64
}

type round struct {
	bytes   int64
	elapsed time.Duration
	errors  int
}

func (r round) mbps() float64 { return float64(r.bytes) / 1e6 / r.elapsed.Seconds() }

func run() error {
	clients := flag.Int("clients", 64, "concurrent clients")
	rounds := flag.Int("rounds", 2, "rounds per server (alternating)")
	blksize := flag.Int("blksize", 1468, "block size the clients ask for")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (clients and rackcloud are in-process)")
	flag.Parse()
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
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("in.tftpd"); err != nil {
		return fmt.Errorf("in.tftpd not found (package tftpd-hpa; run lab/install.sh): %w", err)
	}
	dir, err := os.MkdirTemp("", "bench-tftp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	files, err := prepareRoot(root)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ns, err := netns.New(ctx, fmt.Sprintf("rcbtftp%d", os.Getpid()), netip.MustParsePrefix(serverIP+"/24"))
	cancel()
	if err != nil {
		return err
	}
	defer ns.Close()

	var rc, hpa []round
	for i := 0; i < *rounds; i++ {
		r, err := withRackcloud(ns, root, func(addr string) round { return fetchAll(ns, addr, files, *clients, *blksize) })
		if err != nil {
			return err
		}
		fmt.Printf("round %d rackcloud:  %6.2fs %7.1f MB/s, %d errors\n", i, r.elapsed.Seconds(), r.mbps(), r.errors)
		rc = append(rc, r)
		r, err = withTftpdHpa(ns, root, func(addr string) round { return fetchAll(ns, addr, files, *clients, *blksize) })
		if err != nil {
			return err
		}
		fmt.Printf("round %d tftpd-hpa:  %6.2fs %7.1f MB/s, %d errors\n", i, r.elapsed.Seconds(), r.mbps(), r.errors)
		hpa = append(hpa, r)
	}
	a, at, ae := mean(rc)
	b, bt, be := mean(hpa)
	fmt.Printf("%d clients x (%s %d B + %s %d B), blksize %d, %d rounds each\n",
		*clients, files[0].name, files[0].size, files[1].name, files[1].size, *blksize, *rounds)
	fmt.Printf("total time per round: rackcloud %.2fs, tftpd-hpa %.2fs; failed transfers: rackcloud %d, tftpd-hpa %d\n", at, bt, ae, be)
	ratio := 0.0
	if b > 0 {
		ratio = a / b
	}
	fmt.Printf("BENCH tftp mb_per_s=%.1f tftpd_hpa_mb_per_s=%.1f ratio=%.2f\n", a, b, ratio)
	return nil
}

func mean(rs []round) (mbps, secs float64, errs int) {
	for _, r := range rs {
		mbps += r.mbps()
		secs += r.elapsed.Seconds()
		errs += r.errors
	}
	n := float64(len(rs))
	return mbps / n, secs / n, errs
}

// prepareRoot copies ipxe.efi and the Debian kernel (or, without one in
// the boot cache, 8 MB of random bytes) into root.
func prepareRoot(root string) ([]file, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Dir(root), 0o755); err != nil { // tftpd-hpa drops to user nobody
		return nil, err
	}
	copyFile := func(src, dst string) error {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	if err := copyFile(filepath.Join(pxe.DefaultTFTPRoot, "ipxe.efi"), filepath.Join(root, "ipxe.efi")); err != nil {
		return nil, fmt.Errorf("ipxe.efi (package ipxe): %w", err)
	}
	kernel := filepath.Join(root, "vmlinuz")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if k, err := bootimg.FetchKernel(ctx, bootimg.CacheDir()); err == nil {
		if err := copyFile(k.Vmlinuz, kernel); err != nil {
			return nil, err
		}
	} else {
		fmt.Fprintln(os.Stderr, "no Debian kernel (", err, "): using 8 MB of random bytes")
		b := make([]byte, 8<<20)
		_, _ = rand.Read(b)
		if err := os.WriteFile(kernel, b, 0o644); err != nil {
			return nil, err
		}
	}
	var out []file
	for _, n := range []string{"ipxe.efi", "vmlinuz"} {
		st, err := os.Stat(filepath.Join(root, n))
		if err != nil {
			return nil, err
		}
		out = append(out, file{name: n, size: st.Size()})
	}
	return out, nil
}

func withRackcloud(ns *netns.Net, root string, f func(addr string) round) (round, error) {
	s, err := pxe.New(pxe.Config{
		DHCPMode: pxe.DHCPOff, RAInterval: -1, Netns: ns.Path(), ServerIP: netip.MustParseAddr(serverIP),
		HTTPAddr: netip.MustParseAddrPort(serverIP + ":0"), TFTPRoot: root,
	}, pxe.Deps{})
	if err != nil {
		return round{}, err
	}
	if err := s.Start(context.Background()); err != nil {
		return round{}, err
	}
	r := f(s.TFTPAddr().String())
	return r, s.Stop()
}

func withTftpdHpa(ns *netns.Net, root string, f func(addr string) round) (round, error) {
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "in.tftpd", "--foreground", "--listen",
		"--address", serverIP+":69", "--secure", "--user", "nobody", "--blocksize", "65464", root)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return round{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	if err := waitUDP(ns.Name, 69); err != nil {
		return round{}, fmt.Errorf("in.tftpd: %w", err)
	}
	return f(serverIP + ":69"), nil
}

// waitUDP waits until something listens on UDP port in namespace ns.
func waitUDP(ns string, port int) error {
	want := fmt.Sprintf(":%04X ", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/udp").Output()
		if err == nil && strings.Contains(string(out), want) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on UDP port %d", port)
}

// fetchAll runs the clients, each fetching every file once.
func fetchAll(ns *netns.Net, addr string, files []file, clients, blksize int) round {
	var (
		mu    sync.Mutex
		total int64
		errs  int
		wg    sync.WaitGroup
		ready sync.WaitGroup
		start = make(chan struct{})
	)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			c, err := tftp.NewClient(addr)
			ready.Done()
			<-start
			if err != nil {
				mu.Lock()
				errs += len(files)
				mu.Unlock()
				return
			}
			c.SetBlockSize(blksize)
			c.RequestTSize(true)
			c.SetTimeout(5 * time.Second)
			c.SetRetries(5)
			for _, f := range files {
				n, err := fetch(ns.Path(), c, f.name)
				mu.Lock()
				total += n
				if err != nil || n != f.size {
					errs++
				}
				mu.Unlock()
			}
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	wg.Wait()
	return round{bytes: total, elapsed: time.Since(t0), errors: errs}
}

// fetch gets one file. The client opens its socket in Receive, which so
// runs on a thread inside the namespace; the transfer itself runs
// unlocked (a goroutine locked to its thread pays a thread switch per
// block, which would dwarf the servers' own costs).
func fetch(ns string, c *tftp.Client, name string) (int64, error) {
	restore, err := enterNetns(ns)
	if err != nil {
		return 0, err
	}
	wt, err := c.Receive(name, "octet")
	restore()
	if err != nil {
		return 0, err
	}
	return wt.WriteTo(io.Discard)
}

// enterNetns locks the goroutine to its thread and moves the thread into
// the namespace at path; the returned function moves it back and unlocks.
func enterNetns(path string) (func(), error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		return nil, err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		return nil, err
	}
	return func() {
		defer orig.Close()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}, nil
}

package netns

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestNewAddTapClose(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("network namespace tests need root (make test runs as root)")
	}
	ctx := context.Background()
	name := fmt.Sprintf("rctest-ns-%d", os.Getpid())
	n, err := New(ctx, name, netip.MustParsePrefix("10.91.0.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if _, err := New(ctx, name, netip.MustParsePrefix("10.91.0.1/24")); err == nil {
		t.Fatal("second New with the same name succeeded")
	}
	if err := n.AddTap(ctx, "tap0"); err != nil {
		t.Fatal(err)
	}
	out, err := n.Command(ctx, "ip", "-br", "addr", "show", "dev", "br0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.91.0.1/24") || !strings.Contains(string(out), n.Gateway6.String()) {
		t.Fatalf("bridge addresses: %v: %s", err, out)
	}
	out, err = n.Command(ctx, "ip", "-br", "link", "show", "master", "br0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tap0") {
		t.Fatalf("tap0 not on br0: %v: %s", err, out)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.Path()); !os.IsNotExist(err) {
		t.Fatalf("namespace still present after Close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A namespace whose recorded owner has exited is deleted by the next
// sweep; one whose owner lives, or that has no owner record, is not.
func TestSweepStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("network namespace tests need root (make test runs as root)")
	}
	ctx := context.Background()
	live, err := New(ctx, fmt.Sprintf("rctest-live-%d", os.Getpid()), netip.MustParsePrefix("10.92.0.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Close() })
	if _, err := os.Stat(ownerFile(live.Name)); err != nil {
		t.Fatalf("no owner record: %v", err)
	}

	// A process that has exited owns the stale one.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("rctest-stale-%d", os.Getpid())
	orphan := fmt.Sprintf("rctest-orphan-%d", os.Getpid())
	for _, name := range []string{stale, orphan} {
		if err := run(ctx, "ip", "netns", "add", name); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = (&Net{Name: stale}).Close()
		_ = (&Net{Name: orphan}).Close()
	})
	if err := os.WriteFile(ownerFile(stale), fmt.Appendf(nil, "%d 1\n", dead.Process.Pid), 0o644); err != nil {
		t.Fatal(err)
	}

	// A stale record whose namespace still has a process inside is left.
	busy := fmt.Sprintf("rctest-busy-%d", os.Getpid())
	if err := run(ctx, "ip", "netns", "add", busy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = (&Net{Name: busy}).Close() })
	if err := os.WriteFile(ownerFile(busy), fmt.Appendf(nil, "%d 1\n", dead.Process.Pid), 0o644); err != nil {
		t.Fatal(err)
	}
	inside := exec.Command("ip", "netns", "exec", busy, "sleep", "60")
	if err := inside.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = inside.Process.Kill(); _ = inside.Wait() }()
	waitInUse := time.Now().Add(10 * time.Second)
	for !inUse(busy) {
		if time.Now().After(waitInUse) {
			t.Fatal("the process never showed up in the namespace")
		}
		time.Sleep(20 * time.Millisecond)
	}

	got := SweepStale(ctx)
	if len(got) != 1 || got[0] != stale {
		t.Fatalf("swept %v, want [%s]", got, stale)
	}
	if _, err := os.Stat(Path(busy)); err != nil {
		t.Fatalf("a namespace in use was swept: %v", err)
	}
	_ = inside.Process.Kill() // stopped by its PID
	_ = inside.Wait()
	if got := SweepStale(ctx); len(got) != 1 || got[0] != busy {
		t.Fatalf("swept %v once empty, want [%s]", got, busy)
	}
	if _, err := os.Stat(Path(stale)); !os.IsNotExist(err) {
		t.Fatalf("stale namespace still there: %v", err)
	}
	if _, err := os.Stat(ownerFile(stale)); !os.IsNotExist(err) {
		t.Fatalf("stale owner record still there: %v", err)
	}
	for _, name := range []string{live.Name, orphan} {
		if _, err := os.Stat(Path(name)); err != nil {
			t.Fatalf("%s was swept: %v", name, err)
		}
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ownerFile(live.Name)); !os.IsNotExist(err) {
		t.Fatalf("owner record left after Close: %v", err)
	}
}

// TestListenDial: a listener on the gateway inside the namespace is
// reachable with DialContext, not from this process's own namespace, and
// a child started before Do keeps running (the thread went back).
func TestListenDial(t *testing.T) {
	ctx := context.Background()
	n, err := New(ctx, fmt.Sprintf("rctest-ld-%d", os.Getpid()), netip.MustParsePrefix("10.92.0.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	child := exec.Command("sleep", "60")
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	l, err := n.Listen("tcp", "10.92.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := n.DialContext(ctx, "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q: %v", b, err)
	}
	c.Close()
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the namespace's listener is reachable from outside it")
	}
	for i := 0; i < 20; i++ { // threads that ran Do are reused, not ended
		if err := n.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := child.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the child died with a thread: %v", err)
	}
}

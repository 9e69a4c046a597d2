package netns

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
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

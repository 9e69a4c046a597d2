package vmctl_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/vmctl"
)

// The libvirt driver's stats come from one bulk call against a real
// libvirtd: a running VM has CPU time, memory and disk reads; a stopped
// one is absent.
func TestLibvirtStats(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	_, tg := startLibvirtd(t, ctx, "rc-lv-st", "10.93.7.1/24")
	d := &vmctl.Libvirt{DomainType: "qemu"}
	t.Cleanup(func() { _ = d.Close() })
	s := vmctl.Spec{GuestID: "7a2d3e47-6b9f-4e1c-8e6f-2d2f3b4c5d6e", Name: "tiny", ProjectID: "p1",
		Kind: rackcloud.GuestVM, Flavor: rackcloud.Resources{CPUCores: 1, MemoryMiB: 256, DiskGiB: 1}, Image: vmImage(t)}
	require.NoError(t, d.Prepare(ctx, tg, s))
	_, err := d.Create(ctx, tg, s)
	require.NoError(t, err)
	st, err := d.Stats(ctx, tg)
	require.NoError(t, err)
	require.Empty(t, st, "a defined, stopped VM has no stats")

	require.NoError(t, d.Start(ctx, tg, s))
	labtest.Eventually(t, 90*time.Second, 500*time.Millisecond, "the VM's stats", func() (bool, string) {
		st, err = d.Stats(ctx, tg)
		require.NoError(t, err)
		g, ok := st[s.GuestID]
		return ok && g.CPUSeconds > 0 && g.MemoryBytes > 0 && g.DiskReadBytes > 0, fmt.Sprintf("%+v", st)
	})
	t.Logf("stats: %+v", st[s.GuestID])
	require.Len(t, st, 1)
	require.NoError(t, d.Delete(ctx, tg, s))
	st, err = d.Stats(ctx, tg)
	require.NoError(t, err)
	require.Empty(t, st)
}

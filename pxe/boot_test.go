package pxe

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab/bootimg"
	"github.com/rackcloud/rackcloud/lab/qemu"
)

// TestBootBIOS: SeaBIOS with QEMU's iPXE ROM gets its script from DHCP
// (no TFTP), loads the real kernel and initramfs over HTTP and calls back.
func TestBootBIOS(t *testing.T) {
	t.Parallel()
	l := newLab(t, 71)
	s := l.start(l.config(), Deps{})
	mac := "52:54:00:71:00:01"
	m, start := l.boot("bios", mac, qemu.BIOS)
	cb := waitEvent(t, s, mac, EventCallback, 3*time.Minute, m)
	ctx, cancel := contextWithTimeout(30 * time.Second)
	defer cancel()
	require.NoError(t, m.WaitConsole(ctx, bootimg.CallbackMarker+" mac="+mac))
	evs := s.Timeline(mac)
	t.Logf("timeline:\n%s", formatTimeline(evs))
	t.Logf("BIOS boot times: %s", measure(evs, start))
	logInitLines(t, m)
	require.Contains(t, string(cb.Data), `"mac":"`+mac+`"`)
}

// TestBootUEFI: OVMF's own PXE loads snponly.efi over TFTP, which chains
// to the script over HTTP.
func TestBootUEFI(t *testing.T) {
	t.Parallel()
	l := newLab(t, 72)
	s := l.start(l.config(), Deps{})
	mac := "52:54:00:72:00:01"
	m, start := l.boot("uefi", mac, qemu.UEFI)
	waitEvent(t, s, mac, EventCallback, 4*time.Minute, m)
	evs := s.Timeline(mac)
	t.Logf("timeline:\n%s", formatTimeline(evs))
	t.Logf("UEFI boot times: %s", measure(evs, start))
	logInitLines(t, m)
}

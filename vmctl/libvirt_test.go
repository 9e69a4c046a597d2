package vmctl_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/imagefmt"
	"github.com/rackcloud/rackcloud/lab/guestimg"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/virtd"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/vmctl"
)

// startLibvirtd starts a test libvirtd in a namespace of its own; a
// missing libvirtd fails the test (make deps installs it).
func startLibvirtd(t *testing.T, ctx context.Context, name, gw string) (*virtd.Daemon, vmctl.Target) {
	t.Helper()
	n, err := netns.New(ctx, name, netip.MustParsePrefix(gw))
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	start := time.Now()
	d, err := virtd.Start(ctx, virtd.Config{Dir: filepath.Join(t.TempDir(), "virtd"), Netns: n})
	require.NoError(t, err)
	t.Cleanup(d.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(d.Config.Dir, "libvirtd.log"))
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("%s: libvirtd.log:\n%s", name, b)
		}
	})
	t.Logf("%s: libvirtd answered after %s", name, time.Since(start).Round(time.Millisecond))
	return d, vmctl.Target{HostID: name, Role: rackcloud.RoleKVM, Endpoint: d.URI()}
}

// vmImage is the tiny guest image as raw+zstd, as the image store keeps it.
func vmImage(t *testing.T) vmctl.Image {
	t.Helper()
	raw, _, _, err := guestimg.VM(filepath.Join(os.TempDir(), "rackcloud-guestimg"))
	require.NoError(t, err)
	in, err := os.Open(raw)
	require.NoError(t, err)
	defer in.Close()
	var z bytes.Buffer
	_, _, err = imagefmt.Compress(&z, in)
	require.NoError(t, err)
	data := z.Bytes()
	sum := sha256.Sum256(data)
	return imageOf("vm-tiny", rackcloud.FormatRawZstd, data, "sha256:"+hex.EncodeToString(sum[:]))
}

func imageOf(id string, f rackcloud.ImageFormat, data []byte, checksum string) vmctl.Image {
	return vmctl.Image{ID: id, Format: f, Checksum: checksum, Size: int64(len(data)),
		Open: func(context.Context) (io.ReadCloser, error) {
			return checked(data, checksum), nil
		}}
}

// checked reads data and fails at its end when data does not match
// checksum, as vmctl.ImageFrom's readers do.
func checked(data []byte, checksum string) io.ReadCloser {
	sum := sha256.Sum256(data)
	var r io.Reader = bytes.NewReader(data)
	if "sha256:"+hex.EncodeToString(sum[:]) != checksum {
		r = io.MultiReader(r, errReader{vmctl.ErrChecksum})
	}
	return io.NopCloser(r)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func waitMarker(t *testing.T, ctx context.Context, d *vmctl.Libvirt, tg vmctl.Target, s vmctl.Spec, count int) time.Duration {
	t.Helper()
	start := time.Now()
	labtest.Eventually(t, 90*time.Second, 500*time.Millisecond, fmt.Sprintf("%q (x%d) on the console", guestimg.VMMarker, count),
		func() (bool, string) {
			log, err := d.ConsoleLog(ctx, tg, s)
			require.NoError(t, err)
			return strings.Count(log, guestimg.VMMarker) >= count, log
		})
	return time.Since(start)
}

func waitState(t *testing.T, ctx context.Context, d *vmctl.Libvirt, tg vmctl.Target, s vmctl.Spec, want vmctl.ObservedState) {
	t.Helper()
	labtest.Eventually(t, 30*time.Second, 100*time.Millisecond, fmt.Sprintf("guest %s %s", s.GuestID, want), func() (bool, string) {
		o, err := d.Observe(ctx, tg, s)
		require.NoError(t, err)
		return o.State == want, fmt.Sprintf("%+v", o)
	})
}

func TestLibvirtDriver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	daemon, tg := startLibvirtd(t, ctx, "rc-lv-a", "10.93.1.1/24")
	d := &vmctl.Libvirt{DomainType: "qemu"}
	t.Cleanup(func() { _ = d.Close() })
	img := vmImage(t)
	s := vmctl.Spec{GuestID: "6f1c2c36-5a8e-4d0b-9d5e-1c1e2a3b4c5d", Name: "tiny", ProjectID: "p1",
		Kind: rackcloud.GuestVM, Flavor: rackcloud.Resources{CPUCores: 1, MemoryMiB: 256, DiskGiB: 1}, Image: img}

	t.Run("a corrupted image leaves no volume", func(t *testing.T) {
		bad := s
		bad.GuestID = "bad"
		data := []byte(strings.Repeat("x", 5<<20))
		bad.Image = imageOf("corrupt", rackcloud.FormatRaw, data, "sha256:"+strings.Repeat("0", 64))
		err := d.Prepare(ctx, tg, bad)
		require.ErrorIs(t, err, vmctl.ErrChecksum)
		left, _ := filepath.Glob(filepath.Join(daemon.PoolHostDir, "*corrupt*"))
		require.Empty(t, left, "the half-uploaded base is deleted")
	})

	t.Run("prepare uploads the base once", func(t *testing.T) {
		start := time.Now()
		require.NoError(t, d.Prepare(ctx, tg, s))
		t.Logf("prepare (upload %d bytes raw+zstd, disk over it): %s", img.Size, time.Since(start).Round(time.Millisecond))
		base := filepath.Join(daemon.PoolHostDir, "img-vm-tiny")
		st1, err := os.Stat(base)
		require.NoError(t, err)
		opens := 0
		again := s
		again.GuestID = "second-guest"
		again.Image.Open = func(ctx context.Context) (io.ReadCloser, error) { opens++; return img.Open(ctx) }
		require.NoError(t, d.Prepare(ctx, tg, again))
		require.NoError(t, d.Prepare(ctx, tg, s))
		require.Zero(t, opens, "the base is not uploaded again")
		st2, err := os.Stat(base)
		require.NoError(t, err)
		require.Equal(t, st1.ModTime(), st2.ModTime())
		require.NoError(t, d.Delete(ctx, tg, again))
	})

	t.Run("create twice gives the same domain", func(t *testing.T) {
		start := time.Now()
		h1, err := d.Create(ctx, tg, s)
		require.NoError(t, err)
		t.Logf("define: %s", time.Since(start).Round(time.Millisecond))
		h2, err := d.Create(ctx, tg, s)
		require.NoError(t, err)
		require.Equal(t, s.GuestID, h1)
		require.Equal(t, h1, h2)
		o, err := d.Observe(ctx, tg, s)
		require.NoError(t, err)
		require.Equal(t, vmctl.ObservedStopped, o.State)
	})

	t.Run("start boots to the marker", func(t *testing.T) {
		require.NoError(t, d.Start(ctx, tg, s))
		require.NoError(t, d.Start(ctx, tg, s), "a running guest is left alone")
		t.Logf("boot to marker: %s", waitMarker(t, ctx, d, tg, s, 1).Round(time.Millisecond))
		waitState(t, ctx, d, tg, s, vmctl.ObservedRunning)
		text, cut, err := d.Console(ctx, tg, s, 1<<20)
		require.NoError(t, err)
		require.False(t, cut)
		require.Contains(t, text, guestimg.VMMarker)
		short, cut, err := d.Console(ctx, tg, s, 100)
		require.NoError(t, err)
		require.True(t, cut)
		require.True(t, strings.HasSuffix(text, short) && len(short) <= 100, "the newest bytes: %q", short)
	})

	t.Run("reboot", func(t *testing.T) {
		require.NoError(t, d.Reboot(ctx, tg, s))
		t.Logf("reboot to marker: %s", waitMarker(t, ctx, d, tg, s, 2).Round(time.Millisecond))
	})

	t.Run("probe and list", func(t *testing.T) {
		c, err := d.Probe(ctx, tg)
		require.NoError(t, err)
		t.Logf("probe: %+v", c)
		require.Positive(t, c.Resources.CPUCores)
		require.Positive(t, c.Resources.MemoryMiB)
		require.Positive(t, c.Resources.DiskGiB)
		require.Contains(t, c.Daemon, "libvirt 9.")
		require.Contains(t, c.Daemon, "domain type qemu")
		l, err := d.List(ctx, tg)
		require.NoError(t, err)
		require.Equal(t, vmctl.ObservedRunning, l[s.GuestID].State, "%+v", l)
		require.Len(t, l, 1)
	})

	t.Run("a killed qemu is crashed", func(t *testing.T) {
		pids := daemon.QEMUPIDs()
		require.Len(t, pids, 1)
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids[0]))
		t.Logf("qemu pid %d: %.80q", pids[0], b)
		require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
		waitState(t, ctx, d, tg, s, vmctl.ObservedCrashed)
	})

	t.Run("stop after grace", func(t *testing.T) {
		require.NoError(t, d.Start(ctx, tg, s))
		waitState(t, ctx, d, tg, s, vmctl.ObservedRunning)
		start := time.Now()
		require.NoError(t, d.Stop(ctx, tg, s, time.Second), "the busybox guest ignores ACPI: destroyed after grace")
		t.Logf("stop with 1 s grace: %s", time.Since(start).Round(time.Millisecond))
		waitState(t, ctx, d, tg, s, vmctl.ObservedStopped)
		require.NoError(t, d.Stop(ctx, tg, s, time.Second))
	})

	t.Run("export and import boots on a second host", func(t *testing.T) {
		daemonB, tgB := startLibvirtd(t, ctx, "rc-lv-b", "10.93.2.1/24")
		r, size, err := d.ExportDisk(ctx, tg, s)
		require.NoError(t, err)
		start := time.Now()
		err = d.ImportDisk(ctx, tgB, s, r, size)
		r.Close()
		require.NoError(t, err)
		t.Logf("export+import (%d bytes overlay, base uploaded): %s", size, time.Since(start).Round(time.Millisecond))
		_, err = d.Create(ctx, tgB, s)
		require.NoError(t, err)
		require.NoError(t, d.Start(ctx, tgB, s))
		t.Logf("imported guest boot to marker: %s", waitMarker(t, ctx, d, tgB, s, 1).Round(time.Millisecond))
		require.NoError(t, d.Delete(ctx, tgB, s))
		_ = daemonB
	})

	t.Run("delete", func(t *testing.T) {
		require.NoError(t, d.Delete(ctx, tg, s))
		o, err := d.Observe(ctx, tg, s)
		require.NoError(t, err)
		require.Equal(t, vmctl.ObservedMissing, o.State)
		require.NoError(t, d.Delete(ctx, tg, s))
		require.ErrorIs(t, d.Start(ctx, tg, s), rackcloud.ErrNotFound)
		left, _ := filepath.Glob(filepath.Join(daemon.PoolHostDir, "rc-*"))
		require.Empty(t, left)
	})
	_ = fmt.Sprint
	_ = strconv.Itoa
}

// End to end through tasks on real libvirtds: adopt two, create a VM
// guest (every step; its console shows the marker), migrate it cold to
// the other host (it boots there from its copied disk; the first host
// keeps nothing), delete it.
func TestVMGuestOnAdoptedLibvirtdAndMigrate(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dA, _ := startLibvirtd(t, ctx, fmt.Sprintf("rcvmA%d", os.Getpid()), "10.65.0.1/24")
	dB, _ := startLibvirtd(t, ctx, fmt.Sprintf("rcvmB%d", os.Getpid()), "10.66.0.1/24")
	img := vmImage(t)
	rd, err := img.Open(ctx)
	require.NoError(t, err)
	data, err := io.ReadAll(rd)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "vm.img.zst")
	require.NoError(t, os.WriteFile(file, data, 0o644))

	drv := &vmctl.Libvirt{DomainType: "qemu"}
	defer drv.Close()
	e := newVenvWith(t, 1, map[rackcloud.GuestKind]vmctl.Driver{rackcloud.GuestVM: drv})
	im, err := store.CreateImage(ctx, e.pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "tiny-vm"}, URL: "file://" + file,
		Checksum: img.Checksum, Format: rackcloud.FormatRawZstd, Size: img.Size})
	require.NoError(t, err)
	var hosts []string
	for i, d := range []*virtd.Daemon{dA, dB} {
		h, err := store.CreateHost(ctx, e.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: fmt.Sprintf("kvm-%d", i)},
			Role: rackcloud.RoleKVM, RackID: e.racks[0]})
		require.NoError(t, err)
		require.NoError(t, store.SetHostEndpoint(ctx, e.pool, h.ID, d.URI()))
		info := e.run(rackcloud.KindHostAdopt, rackcloud.HostTaskParams{HostID: h.ID}, "host/"+h.ID)
		require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
		hosts = append(hosts, h.ID)
	}
	e.waitSnapshot(2)

	g := e.guest("tiny", 1, 128, func(g *rackcloud.Guest) { g.Kind, g.ImageID, g.WantHostID = rackcloud.GuestVM, im.ID, hosts[0] })
	start := time.Now()
	info := e.guestTask(rackcloud.KindGuestCreate, g)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	t.Logf("guest.create to running: %s", time.Since(start).Round(time.Millisecond))
	g = e.get(g.ID)
	require.Equal(t, hosts[0], g.HostID)
	spec := vmctl.Spec{GuestID: g.ID, Name: g.Name}
	tA := vmctl.Target{HostID: hosts[0], Role: rackcloud.RoleKVM, Endpoint: dA.URI()}
	tB := vmctl.Target{HostID: hosts[1], Role: rackcloud.RoleKVM, Endpoint: dB.URI()}
	t.Logf("boot to marker: %s", waitMarker(t, ctx, drv, tA, spec, 1).Round(time.Millisecond))

	info = e.run(rackcloud.KindGuestMigrate, rackcloud.GuestMigrateParams{GuestID: g.ID}, "guest/"+g.ID)
	require.Equal(t, rackcloud.TaskFailed, info.State)
	require.Contains(t, info.Error, "only (exact placement): name the host to move it to")
	require.Equal(t, rackcloud.GuestRunning, e.get(g.ID).State, "refused before it was stopped")
	start = time.Now()
	info = e.run(rackcloud.KindGuestMigrate, rackcloud.GuestMigrateParams{GuestID: g.ID, HostID: hosts[1]}, "guest/"+g.ID)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	t.Logf("migrate: %s", time.Since(start).Round(time.Millisecond))
	g = e.get(g.ID)
	require.Equal(t, hosts[1], g.HostID)
	require.Equal(t, rackcloud.GuestRunning, g.State)
	t.Logf("boot on the new host to marker: %s", waitMarker(t, ctx, drv, tB, spec, 1).Round(time.Millisecond))
	onA, err := drv.List(ctx, tA)
	require.NoError(t, err)
	require.Empty(t, onA, "the old host keeps nothing")

	require.Equal(t, rackcloud.TaskSucceeded, e.guestTask(rackcloud.KindGuestDelete, g).State)
	onB, err := drv.List(ctx, tB)
	require.NoError(t, err)
	require.Empty(t, onB)
}

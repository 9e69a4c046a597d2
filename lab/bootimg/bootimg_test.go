package bootimg

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackcloud/rackcloud/lab/qemu"
	"github.com/stretchr/testify/require"
)

func needBinary(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: run lab/install.sh (%v)", n, err)
		}
	}
}

// cpioList lists an archive with busybox's own cpio, an independent reader.
func cpioList(t *testing.T, archive []byte) []string {
	t.Helper()
	needBinary(t, "busybox")
	cmd := exec.Command("busybox", "cpio", "-t")
	cmd.Stdin = bytes.NewReader(archive)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	return strings.Fields(string(out))
}

func TestCPIOWriterReadByBusybox(t *testing.T) {
	var b bytes.Buffer
	c := NewCPIOWriter(&b, time.Unix(1700000000, 0))
	require.NoError(t, c.Dir("etc", 0o755))
	require.NoError(t, c.File("etc/hello", 0o644, []byte("hello world\n")))
	require.NoError(t, c.File("etc/odd", 0o600, []byte("abc"))) // not a multiple of 4
	require.NoError(t, c.Symlink("etc/link", "hello"))
	require.NoError(t, c.Close())
	require.Equal(t, []string{"etc", "etc/hello", "etc/odd", "etc/link"}, cpioList(t, b.Bytes()))

	dir := t.TempDir()
	cmd := exec.Command("busybox", "cpio", "-i", "-d")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(b.Bytes())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	got, err := os.ReadFile(filepath.Join(dir, "etc/link"))
	require.NoError(t, err)
	require.Equal(t, "hello world\n", string(got))
	got, err = os.ReadFile(filepath.Join(dir, "etc/odd"))
	require.NoError(t, err)
	require.Equal(t, "abc", string(got))
}

func TestCPIOWriterRejectsBadEntries(t *testing.T) {
	c := NewCPIOWriter(io.Discard, time.Time{})
	require.Error(t, c.File("nodir/file", 0o644, nil), "entry before its directory")
	require.NoError(t, c.Dir("a", 0o755))
	require.Error(t, c.Dir("a", 0o755), "duplicate")
	require.Error(t, c.File("", 0o644, nil), "empty name")
	// "../a/x" is cleaned to "a/x": nothing can point outside the archive root.
	require.NoError(t, c.File("../a/x", 0o644, nil))
	require.True(t, c.Has("a/x"))
}

func fetchKernel(t *testing.T) *Kernel {
	t.Helper()
	needBinary(t, "apt-get", "dpkg")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := FetchKernel(ctx, CacheDir())
	require.NoError(t, err)
	return k
}

func TestKernelModulesDependencyOrder(t *testing.T) {
	k := fetchKernel(t)
	require.FileExists(t, k.Vmlinuz)
	mods, err := k.Modules("virtio-net", "virtio_pci")
	require.NoError(t, err)
	pos := map[string]int{}
	for i, m := range mods {
		pos[m.Name] = i
	}
	for _, dep := range [][2]string{{"failover", "net_failover"}, {"net_failover", "virtio_net"},
		{"virtio", "virtio_net"}, {"virtio_ring", "virtio_net"}, {"virtio_pci_modern_dev", "virtio_pci"}} {
		a, okA := pos[dep[0]]
		b, okB := pos[dep[1]]
		require.True(t, okA && okB, "missing %v in %v", dep, mods)
		require.Less(t, a, b, "%s must load before %s", dep[0], dep[1])
	}
	_, err = k.Modules("no_such_module")
	require.ErrorContains(t, err, "no module")
}

func TestInitramfsContents(t *testing.T) {
	k := fetchKernel(t)
	var b bytes.Buffer
	require.NoError(t, BuildInitramfs(&b, Spec{Kernel: k, Files: []File{
		{Path: HooksDir + "/50-agent", Mode: 0o755, Data: []byte("#!/bin/sh\necho agent\n")},
		{Path: "opt/agent/config.json", Mode: 0o644, Data: []byte("{}")},
	}}))
	zr, err := gzip.NewReader(&b)
	require.NoError(t, err)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	names := strings.Join(cpioList(t, raw), " ")
	for _, want := range []string{"init", "bin/busybox", "dev/console", "lib/modules/virtio_net.ko",
		"lib/modules/e1000.ko", "etc/rackcloud/modules", HooksDir + "/50-agent", "opt/agent/config.json"} {
		require.Contains(t, names, want)
	}
	_, err = k.Modules("ipmi_si")
	require.NoError(t, err, "the agent will need ipmi_si from the same kernel")
}

// TestImageBootsAndCallsBack boots the real kernel and initramfs in QEMU
// (direct kernel boot, user-mode network whose host side is this process's
// loopback) and waits for /init's callback.
func TestImageBootsAndCallsBack(t *testing.T) {
	needBinary(t, "qemu-system-x86_64")
	dir := t.TempDir()
	cache := t.TempDir()
	spec := Spec{Kernel: fetchKernel(t), CacheDir: cache}
	img, err := Prepare(dir, spec)
	require.NoError(t, err)
	cached, _ := filepath.Glob(filepath.Join(cache, "initrd-*.img"))
	require.Len(t, cached, 1, "the build is cached")
	again, err := Prepare(t.TempDir(), spec)
	require.NoError(t, err)
	b1, _ := os.ReadFile(img.Initrd)
	b2, _ := os.ReadFile(again.Initrd)
	require.Equal(t, b1, b2, "an unchanged spec reuses the cached image")
	spec.Files = []File{{Path: "etc/extra", Mode: 0o644, Data: []byte("x")}}
	_, err = Prepare(t.TempDir(), spec)
	require.NoError(t, err)
	cached, _ = filepath.Glob(filepath.Join(cache, "initrd-*.img"))
	require.Len(t, cached, 2, "a changed spec is built anew")

	const token = "tok-_0123456789abcdefghijklmnopqrstuvwxyzABCD"
	got := make(chan map[string]string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]string
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "no token", http.StatusForbidden)
			return
		}
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&m) != nil {
			http.Error(w, "bad callback", http.StatusBadRequest)
			return
		}
		select {
		case got <- m:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))

	mac := "52:54:00:bb:00:01"
	m, err := qemu.Start(context.Background(), qemu.Spec{Name: "bootimg", Dir: dir, MemoryMiB: 384, ExtraArgs: []string{
		"-kernel", img.Vmlinuz, "-initrd", img.Initrd,
		"-append", `console=ttyS0 quiet x="a\b" ` + ParamMAC + "=" + mac + " " + ParamCallback + "=http://10.0.2.2:" + port + "/cb " +
			ParamToken + "=" + token,
		"-netdev", "user,id=u0", "-device", "virtio-net-pci,netdev=u0,mac=" + mac,
	}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	require.NoError(t, m.WaitConsole(ctx, CallbackMarker+" mac="+mac), m.Console())
	cb := <-got
	require.Equal(t, mac, cb["mac"])
	require.True(t, strings.HasPrefix(cb["kernel"], "6.1.0-"), cb)
	require.NotEmpty(t, cb["ip"])
	require.Contains(t, cb["cmdline"], `x="a\b" `+ParamMAC+"="+mac, "the command line, escaped into JSON")
	require.Contains(t, cb["cmdline"], ParamToken+"=REDACTED", "the token went as a header, not in the body")
	require.NotContains(t, cb["cmdline"], token)
	t.Logf("callback %v", cb)
	for _, l := range strings.Split(m.Console(), "\n") {
		if strings.Contains(l, "rackcloud-init") {
			t.Log(strings.TrimSpace(l))
		}
	}
	require.NotContains(t, m.Console(), "failed")
}

// TestAgentBuilt: the agent is built once per process, static, and the
// inspection files carry it and the hook that runs it after the callback.
func TestAgentBuilt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	files, err := AgentFiles(ctx)
	require.NoError(t, err)
	require.Len(t, files, 2)
	bin := files[0].Data
	require.Equal(t, AgentPath, files[0].Path)
	require.Equal(t, []byte("\x7fELF"), bin[:4])
	require.Less(t, len(bin), 16<<20, "a small agent")
	t.Logf("agent binary: %d bytes", len(bin))
	require.NotContains(t, string(bin), "/lib64/ld-linux", "static: no dynamic loader")
	require.Equal(t, InventoryHook, files[1].Path)
	require.Contains(t, string(files[1].Data), "/"+AgentPath+" --from-cmdline")
	again, err := Agent(ctx)
	require.NoError(t, err)
	require.Equal(t, bin, again)
}

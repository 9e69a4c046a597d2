package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostconfig"
	"github.com/rackcloud/rackcloud/lab/labtest"
)

// blankDisk writes a 3 MiB disk file whose MBR has one 1 MiB partition of
// type hostconfig.PartitionType at 1 MiB, all zeros.
func blankDisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	mbr := make([]byte, 512)
	e := mbr[446:462]
	e[4] = hostconfig.PartitionType
	binary.LittleEndian.PutUint32(e[8:], 2048)
	binary.LittleEndian.PutUint32(e[12:], 2048)
	mbr[510], mbr[511] = 0x55, 0xaa
	require.NoError(t, os.WriteFile(p, mbr, 0o644))
	require.NoError(t, os.Truncate(p, 3<<20))
	return p
}

var testHostConfig = hostconfig.Config{Version: 1, HostID: "h-1", Hostname: "node1", Role: rackcloud.RoleDocker,
	MAC: "52:54:00:AA:01:01", BootURL: "http://boot.invalid/", Token: "secret-token",
	CA: "ca-pem", Cert: "cert-pem", Key: "key-pem", HeartbeatSeconds: 1}

func TestHostSetup(t *testing.T) {
	disk := blankDisk(t)
	root := t.TempDir()
	var out, errOut bytes.Buffer
	code := HostMain(context.Background(), "rackcloud-agent", []string{"host-setup", "--root", root, "--devices", disk, "--wait", "0s"}, &out, &errOut)
	require.Equal(t, 1, code, "a zeroed config partition holds no configuration")
	require.Equal(t, 1, strings.Count(errOut.String(), "\n"), "one line: %q", errOut.String())
	require.Contains(t, errOut.String(), "no host configuration on "+disk)

	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	require.NoError(t, err)
	require.NoError(t, hostconfig.Write(f, f, testHostConfig))
	require.NoError(t, f.Close())
	out.Reset()
	errOut.Reset()
	code = HostMain(context.Background(), "rackcloud-agent", []string{"host-setup", "--root", root, "--devices", "/nonexistent," + disk}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	require.Contains(t, out.String(), "host h-1 (node1, docker) configured from "+disk)
	for name, want := range map[string]string{hostconfig.FileHostname: "node1\n", hostconfig.FileKey: "key-pem", hostconfig.FileCA: "ca-pem"} {
		b, err := os.ReadFile(filepath.Join(root, name))
		require.NoError(t, err)
		require.Equal(t, want, string(b), name)
	}
	st, err := os.Stat(filepath.Join(root, hostconfig.FileKey))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

func TestHostUsage(t *testing.T) {
	for _, args := range [][]string{{"host", "-h"}, {"host-setup", "--help"}} {
		var out, errOut bytes.Buffer
		require.Equal(t, 0, HostMain(context.Background(), "rackcloud-agent", args, &out, &errOut), args)
		require.Contains(t, out.String(), "usage: rackcloud-agent "+args[0])
		require.Empty(t, errOut.String())
	}
	var out, errOut bytes.Buffer
	require.Equal(t, 2, HostMain(context.Background(), "rackcloud-agent", []string{"host", "extra"}, &out, &errOut))
	require.Equal(t, 2, HostMain(context.Background(), "rackcloud-agent", []string{"nope"}, &out, &errOut))
	require.Equal(t, 1, HostMain(context.Background(), "rackcloud-agent", []string{"host", "--root", t.TempDir()}, &out, &errOut),
		"no host.json: run host-setup first")
	require.Contains(t, errOut.String(), "run host-setup first")
}

// hostRoot lays out c under a new root with the proc files the
// heartbeat reads.
func hostRoot(t *testing.T, c hostconfig.Config) string {
	root := t.TempDir()
	require.NoError(t, hostconfig.Setup(root, c))
	for name, data := range map[string]string{"proc/sys/kernel/random/boot_id": "0b6b1f0e-boot\n",
		"proc/uptime": "123.45 200.00\n", "proc/sys/kernel/osrelease": "6.1.0-57-amd64\n"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, name), []byte(data), 0o644))
	}
	return root
}

// TestHostHeartbeat: failures (a 500, a dropped connection) are retried
// with backoff; every beat carries the token and the host's state; the
// marker is printed once, after the first 2xx.
func TestHostHeartbeat(t *testing.T) {
	srv := newReportServer(t, 500, 0)
	c := testHostConfig
	c.BootURL = srv.URL + "/"
	h, err := newHostAgent(hostRoot(t, c), &labtest.LogBuffer{}, &labtest.LogBuffer{})
	require.NoError(t, err)
	h.retryMin = time.Millisecond
	h.interval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.run(ctx); close(done) }()
	labtest.Eventually(t, 10*time.Second, 5*time.Millisecond, "four heartbeats", func() (bool, string) {
		return srv.tries() >= 4, "tries so far"
	})
	cancel()
	<-done
	out := h.stdout.(*labtest.LogBuffer).String()
	require.Equal(t, HeartbeatMarker+" mac=52:54:00:aa:01:01\n", out, "the marker, once")
	logs := h.stderr.(*labtest.LogBuffer).String()
	require.Contains(t, logs, "500 Internal Server Error")
	require.Contains(t, logs, "(2 in a row")
	require.NotContains(t, logs, c.Token, "the token is never logged")

	srv.mu.Lock()
	defer srv.mu.Unlock()
	for i, r := range srv.got {
		require.Equal(t, "/boot/52:54:00:aa:01:01/heartbeat", r.URL.Path)
		require.Equal(t, "POST", r.Method)
		require.Equal(t, "Bearer secret-token", r.Header.Get("Authorization"))
		var hb Heartbeat
		require.NoError(t, json.Unmarshal(srv.bodies[i], &hb))
		want := Heartbeat{HostID: "h-1", Role: rackcloud.RoleDocker, Hostname: "node1", BootID: "0b6b1f0e-boot",
			UptimeS: 123.45, Kernel: "6.1.0-57-amd64"}
		require.Empty(t, cmp.Diff(want, hb))
	}
}

func TestWholeDisks(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"vda", "sda", "loop0", "ram1", "sr0", "nvme0n1", "zram0"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, n), 0o755))
	}
	require.Equal(t, []string{"/dev/nvme0n1", "/dev/sda", "/dev/vda"}, WholeDisks(dir))
}

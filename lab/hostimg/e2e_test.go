package hostimg

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/agent"
	"github.com/rackcloud/rackcloud/hostconfig"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/pki"
	"github.com/rackcloud/rackcloud/lab/qemu"
)

// The end-to-end tests build (or take from the shared cache,
// DefaultCacheDir) a real image, write it onto a blank disk as the
// installer would, fill in the config partition, and boot it in QEMU on a
// provisioning network of their own (a namespace with dnsmasq for DHCP
// and a boot service stand-in recording heartbeats on the gateway).

// skipIfShort marks the heavy tests: they boot real images (a minute or
// two each, once the images are cached) and run in make test, but not
// under go test -short.
func skipIfShort(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a real host image in QEMU; run without -short")
	}
}

// beat is one heartbeat the stand-in received.
type beat struct {
	mac    string
	authOK bool
	hb     agent.Heartbeat
	at     time.Time
}

// hostLab is a provisioning network with a heartbeat recorder.
type hostLab struct {
	net    *netns.Net
	url    string
	dnsLog string
	mu     sync.Mutex
	tokens map[string]string // by MAC
	beats  []beat
	tapSeq int
}

func newHostLab(t *testing.T, prefix, gateway string) *hostLab {
	labtest.Need(t, "qemu-system-x86_64", "dnsmasq")
	n := labtest.Net(t, prefix, gateway)
	l := &hostLab{net: n, tokens: map[string]string{}}
	l.dnsLog = labtest.Dnsmasq(t, n)
	ln, err := n.Listen("tcp", n.Gateway.Addr().String()+":0")
	require.NoError(t, err)
	l.url = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /boot/{mac}/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		b := beat{mac: r.PathValue("mac"), at: time.Now()}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&b.hb); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		l.mu.Lock()
		tok, ok := l.tokens[b.mac]
		b.authOK = ok && r.Header.Get("Authorization") == "Bearer "+tok
		l.beats = append(l.beats, b)
		l.mu.Unlock()
		if !b.authOK {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l
}

// firstBeat returns the first authenticated heartbeat from mac.
func (l *hostLab) firstBeat(mac string) (beat, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.beats {
		if b.mac == mac && b.authOK {
			return b, true
		}
	}
	return beat{}, false
}

// leasedIP reads the address dnsmasq acknowledged for mac from its log.
func (l *hostLab) leasedIP(mac string) string {
	b, _ := os.ReadFile(l.dnsLog)
	m := regexp.MustCompile(`DHCPACK\(\S+\) (\S+) `+regexp.QuoteMeta(mac)).FindAllStringSubmatch(string(b), -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

// host is a simulated server with an image installed.
type host struct {
	m       *qemu.Machine
	cfg     hostconfig.Config
	started time.Time
}

// bootHost writes img onto a blank disk of diskSize bytes, writes the host
// config into its config partition and boots it.
func (l *hostLab) bootHost(t *testing.T, img *Image, fw qemu.Firmware, mac string, diskSize int64, cpus, memMiB int, tlsDir *pki.PKI) *host {
	t.Helper()
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	start := time.Now()
	require.NoError(t, WriteDisk(img.Path, disk, diskSize))
	t.Logf("%s: image written onto a %d MiB disk in %s", img.Role, diskSize>>20, time.Since(start).Round(time.Millisecond))
	name := fmt.Sprintf("%s-%s", img.Role, fw)
	cfg := hostconfig.Config{Version: 1, HostID: "host-" + name, Hostname: name, Role: img.Role, MAC: mac,
		BootURL: l.url, Token: "tok-" + name + "-0123456789abcdef", HeartbeatSeconds: 2}
	if tlsDir != nil {
		for p, f := range map[*string]string{&cfg.CA: tlsDir.CAFile, &cfg.Cert: tlsDir.CertFile, &cfg.Key: tlsDir.KeyFile} {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			*p = string(b)
		}
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	require.NoError(t, err)
	require.NoError(t, hostconfig.Write(f, f, cfg))
	require.NoError(t, f.Close())
	l.mu.Lock()
	l.tokens[mac] = cfg.Token
	l.tapSeq++
	tap := fmt.Sprintf("tap%d", l.tapSeq)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, l.net.AddTap(ctx, tap))
	hw, err := net.ParseMAC(mac)
	require.NoError(t, err)
	m, err := qemu.Start(ctx, qemu.Spec{Name: name, MAC: hw, CPUs: cpus, MemoryMiB: memMiB, Firmware: fw,
		Disks: []qemu.Disk{{Path: disk}}, Netns: l.net.Name, Tap: tap, Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Stop() })
	return &host{m: m, cfg: cfg, started: time.Now()}
}

// waitHeartbeat waits for the host's first authenticated heartbeat and
// checks what it says.
func (l *hostLab) waitHeartbeat(t *testing.T, h *host, timeout time.Duration) time.Duration {
	t.Helper()
	var b beat
	labtest.Eventually(t, timeout, 500*time.Millisecond, h.cfg.Hostname+"'s heartbeat", func() (bool, string) {
		var ok bool
		b, ok = l.firstBeat(h.cfg.MAC)
		if !h.m.Running() {
			t.Fatalf("QEMU exited (%v); console:\n%s", h.m.ExitErr(), tail(h.m.Console(), 4000))
		}
		dl, _ := os.ReadFile(l.dnsLog)
		return ok, "console tail:\n" + tail(h.m.Console(), 3000) + "\ndnsmasq log tail:\n" + tail(string(dl), 1500)
	})
	took := b.at.Sub(h.started)
	t.Logf("%s: console milestones:\n%s", h.cfg.Hostname, milestones(h.m.Console()))
	require.Equal(t, h.cfg.HostID, b.hb.HostID)
	require.Equal(t, h.cfg.Role, b.hb.Role)
	require.Equal(t, h.cfg.Hostname, b.hb.Hostname)
	require.True(t, strings.HasPrefix(b.hb.Kernel, "6.1.0-"), b.hb.Kernel)
	require.NotEmpty(t, b.hb.BootID)
	require.Positive(t, b.hb.UptimeS)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, h.m.WaitConsole(ctx, agent.HeartbeatMarker+" mac="+h.cfg.MAC))
	return took
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func buildShared(t *testing.T, role rackcloud.HostRole, timeout time.Duration) *Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	img, err := Build(ctx, Options{Role: role, Progress: testWriter{t}})
	require.NoError(t, err)
	t.Logf("%s image: %s (cached %v, %s; raw %d MiB, %s)", role, img.Path, img.Cached,
		time.Since(start).Round(time.Millisecond), img.RawSize>>20, img.SHA256)
	return img
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestBMHostBoots boots the bm image from its disk under BIOS and UEFI
// and waits for the host agent's heartbeat.
func TestBMHostBoots(t *testing.T) {
	skipIfShort(t)
	img := buildShared(t, rackcloud.RoleBareMetal, 5*time.Minute)
	l := newHostLab(t, "hbm", "10.81.0.1/24")
	for i, fw := range []qemu.Firmware{qemu.BIOS, qemu.UEFI} {
		t.Run(string(fw), func(t *testing.T) {
			h := l.bootHost(t, img, fw, fmt.Sprintf("52:54:00:81:00:%02x", i+1), 64<<20, 1, 512, nil)
			took := l.waitHeartbeat(t, h, 90*time.Second)
			t.Logf("bm %s: boot to first heartbeat %s", fw, took.Round(100*time.Millisecond))
			require.NoError(t, h.m.Stop())
		})
	}
}

// bootDaemonHost boots a kvm or docker host (2 vCPUs, 2 GiB, an 8 GiB
// disk) with a TLS identity for <hostname>.lab from a CA of its own,
// waits for its heartbeat, and returns the address dnsmasq leased it.
func bootDaemonHost(t *testing.T, role rackcloud.HostRole, fw qemu.Firmware, gateway string) (*hostLab, *host, *pki.PKI, string) {
	img := buildShared(t, role, 15*time.Minute)
	l := newHostLab(t, "h"+string(role[:2]), gateway)
	name := fmt.Sprintf("%s-%s", role, fw)
	certs, err := pki.New(t.TempDir(), name, name+".lab")
	require.NoError(t, err)
	b := netip.MustParsePrefix(gateway).Addr().As4()
	mac := fmt.Sprintf("52:54:00:%02x:00:01", b[1])
	h := l.bootHost(t, img, fw, mac, 8<<30, 2, 2048, certs)
	took := l.waitHeartbeat(t, h, 5*time.Minute)
	t.Logf("%s: boot to first heartbeat %s", role, took.Round(100*time.Millisecond))
	ip := l.leasedIP(mac)
	require.NotEmpty(t, ip, "dnsmasq leased an address")
	return l, h, certs, ip
}

// TestDockerHostBoots boots the docker image (BIOS) and checks the
// heartbeat, then dockerd's API over mutual TLS on :2376 from the
// provisioning network, and that a client without a certificate is
// refused.
func TestDockerHostBoots(t *testing.T) {
	skipIfShort(t)
	l, h, certs, ip := bootDaemonHost(t, rackcloud.RoleDocker, qemu.BIOS, "10.82.0.1/24")
	addr := net.JoinHostPort(ip, fmt.Sprint(hostconfig.DockerTLSPort))
	client := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: certs.Pool, ServerName: h.cfg.Hostname + ".lab"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: l.net.DialContext, TLSClientConfig: cfg}}
	}
	var body string
	labtest.Eventually(t, 3*time.Minute, time.Second, "dockerd's _ping over TLS", func() (bool, string) {
		resp, err := client(&certs.Client).Get("https://" + addr + "/_ping")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	require.Equal(t, "OK", body)
	t.Logf("docker: _ping over mutual TLS answered %s after QEMU start", time.Since(h.started).Round(100*time.Millisecond))

	resp, err := client(&certs.Client).Get("https://" + addr + "/version")
	require.NoError(t, err)
	var v struct{ Version, APIVersion string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	resp.Body.Close()
	t.Logf("docker: dockerd %s, API %s", v.Version, v.APIVersion)
	runContainer(t, client(&certs.Client), "https://"+addr)

	_, err = client(nil).Get("https://" + addr + "/_ping")
	require.Error(t, err, "a client without a certificate is refused")
	t.Logf("docker: without a client certificate: %v", err)
	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: l.net.DialContext}}
	if resp, err := plain.Get("http://" + addr + "/_ping"); err == nil {
		resp.Body.Close()
		require.NotEqual(t, http.StatusOK, resp.StatusCode, "plain HTTP is not served")
	}
	if strings.Contains(h.m.Console(), "[FAILED]") {
		t.Logf("failed units on the console:\n%s", grepLines(h.m.Console(), "FAILED"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// milestones picks the boot's landmarks from a console log.
func milestones(console string) string {
	re := regexp.MustCompile(`rackcloud|Startup finished|wait-online|FAILED|Reached target.*(Network|Multi-User)|Linux version|Run /init`)
	var out []string
	for _, l := range strings.Split(console, "\n") {
		if re.MatchString(l) && !strings.Contains(l, "heartbeat to") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "\n")
}

// runContainer imports a busybox image (no registry is reachable),
// runs a container that exits 0 and waits for it: the daemon can start
// containers (apparmor_parser is there).
func runContainer(t *testing.T, c *http.Client, base string) {
	t.Helper()
	slow := *c
	slow.Timeout = 2 * time.Minute // a container start under TCG on a loaded machine
	c = &slow
	start := time.Now()
	bb, err := os.ReadFile("/bin/busybox")
	require.NoError(t, err)
	var img bytes.Buffer
	tw := tar.NewWriter(&img)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}))
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb))}))
	_, err = tw.Write(bb)
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	call := func(method, path, ctype string, body io.Reader, out any) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, body)
		require.NoError(t, err)
		req.Header.Set("Content-Type", ctype)
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Less(t, resp.StatusCode, 300, "%s %s: %s: %s", method, path, resp.Status, b)
		if out != nil {
			require.NoError(t, json.Unmarshal(b, out), string(b))
		}
	}
	call("POST", "/images/create?fromSrc=-&repo=rc-busybox&tag=1", "application/x-tar", &img, nil)
	var created struct{ ID string }
	call("POST", "/containers/create", "application/json",
		strings.NewReader(`{"Image":"rc-busybox:1","Cmd":["/bin/busybox","true"]}`), &created)
	call("POST", "/containers/"+created.ID+"/start", "application/json", nil, nil)
	var waited struct{ StatusCode int }
	call("POST", "/containers/"+created.ID+"/wait", "application/json", nil, &waited)
	require.Equal(t, 0, waited.StatusCode)
	t.Logf("docker: image import, container create, start and wait in %s", time.Since(start).Round(100*time.Millisecond))
}

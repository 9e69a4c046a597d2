// Command provision benchmarks rack-to-ready: simulated servers (QEMU
// under TCG, the lab's sizes and firmware: BIOS, UEFI, BIOS...) go from
// powered off to ready, with rackcloud (the whole lab: boot service, API,
// enroll rules, inspection, the agent's installer, BMC disk boot,
// heartbeat, and for docker dockerd over mutual TLS) and with the floor,
// in the same run on the same QEMU setup: dnsmasq (DHCP, TFTP, iPXE over
// HTTP from a plain Go file server) and a shell script in the same
// initramfs that does `wget | zstd -d | dd`, writes the same host config,
// reboots, and waits for the same readiness signal (the installed OS's
// heartbeat; for docker also GET /_ping over mutual TLS).
//
// The floor does less than rackcloud by design: no inventory, no checksum
// read back, no BMC, no database. The ratio floor/rackcloud says how much
// of the floor's speed rackcloud keeps while doing all that.
//
// For each role in -roles and each count in -nodes (docker: the first
// count only) it prints the per-server ready times and rackcloud's
// per-phase times (rackcloud_provision_phase_duration_seconds), then
//
//	BENCH provision ready_s=<rackcloud> floor_s=<floor> ratio=<floor/rackcloud>
//
// for one bare-metal server (the first role and count).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	dto "github.com/prometheus/client_model/go"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostca"
	"github.com/rackcloud/rackcloud/hostconfig"
	"github.com/rackcloud/rackcloud/lab"
	"github.com/rackcloud/rackcloud/lab/bootimg"
	"github.com/rackcloud/rackcloud/lab/hostimg"
	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/proc"
	"github.com/rackcloud/rackcloud/lab/qemu"
	"github.com/rackcloud/rackcloud/nsnet"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/provision:", err)
		os.Exit(1)
	}
}

// result is one run: each server's time from power-on to ready.
type result struct {
	ready  []time.Duration
	phases map[string]float64 // mean seconds per phase (rackcloud)
}

func (r result) all() time.Duration { return slicesMax(r.ready) }

func slicesMax(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

func run() error {
	nodesFlag := flag.String("nodes", "1,4", "server counts to run (bare metal); docker runs the first only")
	rolesFlag := flag.String("roles", "bm,docker", "roles to run: bm, docker, kvm")
	keep := flag.Bool("keep", false, "keep the state directories")
	flag.Parse()
	for _, b := range []string{"dnsmasq", "qemu-system-x86_64", "zstd", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found (make deps installs it): %w", b, err)
		}
	}
	var counts []int
	for _, s := range strings.Split(*nodesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-nodes: %q", s)
		}
		counts = append(counts, n)
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-provision-")
	if err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // postgres must reach it
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	var headline *[2]result
	var scale []string
	for _, r := range strings.Split(*rolesFlag, ",") {
		role := rackcloud.HostRole(strings.TrimSpace(r))
		fmt.Printf("== %s: building (or reusing) the host image\n", role)
		im, err := hostimg.Build(ctx, hostimg.Options{Role: role})
		if err != nil {
			return err
		}
		fmt.Printf("   %s: %d MiB of disk, %d MiB raw+zstd, cached=%v\n", im.Path, im.RawSize>>20, fileSize(im.Path)>>20, im.Cached)
		cs := counts
		if role != rackcloud.RoleBareMetal {
			cs = counts[:1]
		}
		var one [2]result
		for _, n := range cs {
			rc, err := rackcloudRun(ctx, filepath.Join(dir, fmt.Sprintf("rc-%s-%d", role, n)), role, n)
			if err != nil {
				return fmt.Errorf("rackcloud %s x%d: %w", role, n, err)
			}
			fl, err := floorRun(ctx, filepath.Join(dir, fmt.Sprintf("floor-%s-%d", role, n)), role, n, im)
			if err != nil {
				return fmt.Errorf("floor %s x%d: %w", role, n, err)
			}
			fmt.Printf("   %s x%d: rackcloud %s (servers %s), floor %s (servers %s), ratio %.2f\n", role, n,
				secs(rc.all()), list(rc.ready), secs(fl.all()), list(fl.ready), fl.all().Seconds()/rc.all().Seconds())
			fmt.Printf("   %s x%d: rackcloud phases (mean s): %s\n", role, n, phases(rc.phases))
			fmt.Printf("   %s x%d: floor phases (mean s): %s\n", role, n, phases(fl.phases))
			fmt.Printf("bench provision %s_x%d ready_s=%.1f floor_s=%.1f ratio=%.2f\n", role, n, rc.all().Seconds(), fl.all().Seconds(),
				fl.all().Seconds()/rc.all().Seconds())
			if n == cs[0] {
				one = [2]result{rc, fl}
				if headline == nil && role == rackcloud.RoleBareMetal {
					h := one
					headline = &h
				}
			} else {
				scale = append(scale, fmt.Sprintf("%s: %d servers in %.2fx the time of %d (rackcloud), %.2fx (floor)", role, n,
					rc.all().Seconds()/one[0].all().Seconds(), cs[0], fl.all().Seconds()/one[1].all().Seconds()))
			}
		}
	}
	for _, s := range scale {
		fmt.Println("   " + s)
	}
	if headline == nil {
		return errors.New("no bare-metal run for the headline (add bm to -roles)")
	}
	rc, fl := headline[0].all().Seconds(), headline[1].all().Seconds()
	fmt.Printf("BENCH provision ready_s=%.1f floor_s=%.1f ratio=%.2f\n", rc, fl, fl/rc)
	return nil
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

func list(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, secs(d))
	}
	return strings.Join(s, " ")
}

func phases(m map[string]float64) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var s []string
	for _, k := range keys {
		s = append(s, fmt.Sprintf("%s=%.1f", k, m[k]))
	}
	return strings.Join(s, " ")
}

// rackcloudRun brings a lab up whose n servers are installed with role
// by enroll rules, and times each from the first power-on to ready.
func rackcloudRun(ctx context.Context, dir string, role rackcloud.HostRole, n int) (result, error) {
	ports := make([]int, 5)
	for i := range ports {
		p, err := proc.FreePort()
		if err != nil {
			return result{}, err
		}
		ports[i] = p
	}
	roles := make([]rackcloud.HostRole, n)
	for i := range roles {
		roles[i] = role
	}
	l, err := lab.Up(ctx, lab.Config{Dir: dir, APIPort: ports[0], PostgresPort: ports[1], PrometheusPort: ports[2],
		AlertmanagerPort: ports[3], NodeExporterPort: ports[4], Netns: fmt.Sprintf("rcbench-prov-%d", os.Getpid()),
		Gateway: netip.MustParsePrefix("10.84.0.1/24"), Nodes: n, Roles: roles, Onboard: true,
		IPMIPort: 0, RedfishPort: 0}, slog.New(slog.DiscardHandler))
	if err != nil {
		return result{}, err
	}
	defer l.Down()
	token, err := l.Token()
	if err != nil {
		return result{}, err
	}
	ready := map[string]time.Duration{}
	deadline := time.Now().Add(timeout(role, n))
	for len(ready) < n {
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("%d of %d servers ready after %s", len(ready), n, timeout(role, n))
		}
		hosts, err := listHosts(ctx, l.APIURL, token)
		if err != nil {
			return result{}, err
		}
		for _, h := range hosts {
			if h.State == "failed" {
				return result{}, fmt.Errorf("host %s failed: %s", h.Name, h.Reason)
			}
			if _, ok := ready[h.Name]; !ok && h.State == "ready" {
				ready[h.Name] = time.Since(l.OnboardedAt)
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	res := result{phases: map[string]float64{}}
	for _, d := range ready {
		res.ready = append(res.ready, d)
	}
	sort.Slice(res.ready, func(i, j int) bool { return res.ready[i] < res.ready[j] })
	mfs, err := l.Server.Registry().Gather()
	if err != nil {
		return res, err
	}
	for _, mf := range mfs {
		if mf.GetName() != "rackcloud_provision_phase_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "result") != "ok" || m.GetHistogram().GetSampleCount() == 0 {
				continue
			}
			res.phases[label(m, "phase")] = m.GetHistogram().GetSampleSum() / float64(m.GetHistogram().GetSampleCount())
		}
	}
	return res, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func timeout(role rackcloud.HostRole, n int) time.Duration {
	if role == rackcloud.RoleBareMetal {
		return time.Duration(3+n) * time.Minute
	}
	return 20 * time.Minute
}

type hostLine struct {
	Name, State, Reason string
}

func listHosts(ctx context.Context, api, token string) ([]hostLine, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/v1/hosts?limit=1000", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var page struct {
		Items []struct {
			Name    string `json:"name"`
			State   string `json:"state"`
			Failure *struct {
				Reason string `json:"reason"`
				Detail string `json:"detail"`
			} `json:"failure"`
		} `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return nil, err
	}
	var out []hostLine
	for _, h := range page.Items {
		l := hostLine{Name: h.Name, State: h.State}
		if h.Failure != nil {
			l.Reason = h.Failure.Reason + ": " + h.Failure.Detail
		}
		out = append(out, l)
	}
	return out, nil
}

// floor is the floor's file server and its record of what happened.
type floor struct {
	mu     sync.Mutex
	start  time.Time
	events map[string]map[string]time.Duration // mac -> event -> since start
	files  map[string]string                   // URL path -> file
	config map[string][]byte                   // mac -> encoded host config
	script string
}

func (f *floor) note(mac, ev string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.events[mac] == nil {
		f.events[mac] = map[string]time.Duration{}
	}
	if _, ok := f.events[mac][ev]; !ok {
		f.events[mac][ev] = time.Since(f.start)
	}
}

func (f *floor) at(mac, ev string) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.events[mac][ev]
	return d, ok
}

func (f *floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mac := strings.ToLower(r.URL.Query().Get("mac"))
	switch {
	case r.URL.Path == "/boot.ipxe":
		f.note(mac, "script")
		io.WriteString(w, f.script)
	case strings.HasPrefix(r.URL.Path, "/config/"):
		mac = strings.TrimPrefix(r.URL.Path, "/config/")
		f.mu.Lock()
		b := f.config[mac]
		f.mu.Unlock()
		w.Write(b)
	case strings.HasPrefix(r.URL.Path, "/installed/"):
		f.note(strings.TrimPrefix(r.URL.Path, "/installed/"), "installed")
	case strings.HasPrefix(r.URL.Path, "/boot/") && strings.HasSuffix(r.URL.Path, "/heartbeat"):
		f.note(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/boot/"), "/heartbeat"), "heartbeat")
		w.WriteHeader(http.StatusAccepted)
	default:
		file, ok := f.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.URL.Path == "/image" {
			f.note(mac, "image")
		}
		http.ServeFile(w, r, file)
	}
}

// floorHook is the installer of the floor: the inspection initramfs's
// /init brings the NIC up and runs it.
const floorHook = `#!/bin/sh
param() { for w in $(cat /proc/cmdline); do case "$w" in "$1"=*) echo "${w#*=}"; return;; esac; done; }
URL=$(param floor.url); MAC=$(param rackcloud.mac | tr A-F a-f); OFF=$(param floor.cfgoff)
echo "floor: writing the image"
wget -q -O- "$URL/image?mac=$MAC" | zstd -q -d -c | dd of=/dev/vda bs=4M conv=fsync 2>/dev/null
wget -q -O- "$URL/config/$MAC" | dd of=/dev/vda bs=512 seek="$OFF" conv=notrunc,fsync 2>/dev/null
sync
wget -q -O /dev/null --post-data=x "$URL/installed/$MAC"
echo "floor: rebooting"
reboot -f
`

// floorRun boots n servers of role's size with dnsmasq and the floor
// installer, and times each from power-on to its heartbeat (docker: to
// GET /_ping over mutual TLS).
func floorRun(ctx context.Context, dir string, role rackcloud.HostRole, n int, im *hostimg.Image) (result, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	gw := netip.MustParsePrefix("10.85.0.1/24")
	nw, err := netns.New(ctx, fmt.Sprintf("rcbench-floor-%d", os.Getpid()), gw)
	if err != nil {
		return result{}, err
	}
	defer nw.Close()
	base := "http://" + gw.Addr().String() + ":8080"

	k, err := bootimg.FetchKernel(ctx, bootimg.CacheDir())
	if err != nil {
		return result{}, err
	}
	files := []bootimg.File{{Path: bootimg.HooksDir + "/50-floor", Mode: 0o755, Data: []byte(floorHook)}}
	zfiles, err := binaryWithLibs("/usr/bin/zstd")
	if err != nil {
		return result{}, err
	}
	files = append(files, zfiles...)
	var initrd bytes.Buffer
	if err := bootimg.BuildInitramfs(&initrd, bootimg.Spec{Kernel: k, Files: files}); err != nil {
		return result{}, err
	}
	initrdPath := filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(initrdPath, initrd.Bytes(), 0o644); err != nil {
		return result{}, err
	}
	off, err := configOffset(im.Path)
	if err != nil {
		return result{}, err
	}
	f := &floor{events: map[string]map[string]time.Duration{}, config: map[string][]byte{},
		files: map[string]string{"/vmlinuz": k.Vmlinuz, "/initrd.img": initrdPath, "/image": im.Path},
		script: "#!ipxe\nkernel --name vmlinuz " + base + "/vmlinuz initrd=initrd.img console=tty0 console=ttyS0,115200 " +
			bootimg.ParamMAC + "=${net0/mac} floor.url=" + base + " floor.cfgoff=" + strconv.FormatInt(off/512, 10) + "\n" +
			"initrd --name initrd.img " + base + "/initrd.img\nboot\n"}
	ln, err := nw.Listen("tcp", gw.Addr().String()+":8080")
	if err != nil {
		return result{}, err
	}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	defer srv.Close()

	// The host CA, for a docker host's mutual TLS.
	ca, err := hostca.New(time.Now())
	if err != nil {
		return result{}, err
	}
	client, err := ca.Client(time.Now())
	if err != nil {
		return result{}, err
	}
	dm, err := startDnsmasq(ctx, nw, dir, gw)
	if err != nil {
		return result{}, err
	}
	defer dm.Stop(syscall.SIGTERM, 5*time.Second)

	size := lab.RoleSizes[role]
	var machines []*qemu.Machine
	defer func() {
		for _, m := range machines {
			m.Stop()
		}
	}()
	macs := make([]string, n)
	ids := make([]string, n)
	for i := range n {
		mac := net.HardwareAddr{0x52, 0x54, 0x00, 0xfb, 0x00, byte(i + 1)}
		macs[i] = mac.String()
		ids[i] = fmt.Sprintf("00000000-0000-4000-8000-0000000000%02d", i+1)
		cfg := hostconfig.Config{Version: 1, HostID: ids[i], Hostname: fmt.Sprintf("floor%d", i+1), Role: role, MAC: macs[i],
			BootURL: base, Token: "floor", HeartbeatSeconds: 10}
		if role != rackcloud.RoleBareMetal {
			pair, err := ca.Host(ids[i], cfg.Hostname, nil, time.Now())
			if err != nil {
				return result{}, err
			}
			cfg.CA, cfg.Cert, cfg.Key = ca.Cert, pair.Cert, pair.Key
		}
		enc, err := hostconfig.Encode(cfg)
		if err != nil {
			return result{}, err
		}
		f.config[macs[i]] = enc
		if err := nw.AddTap(ctx, fmt.Sprintf("tapfl%d", i)); err != nil {
			return result{}, err
		}
	}
	f.start = time.Now()
	for i := range n {
		fw := qemu.BIOS
		if i%2 == 1 {
			fw = qemu.UEFI
		}
		var disks []qemu.Disk
		for j, mib := range size.DisksMiB {
			disks = append(disks, qemu.Disk{Path: filepath.Join(dir, fmt.Sprintf("node%d-disk%d.img", i+1, j)), SizeMiB: mib})
		}
		mac, _ := net.ParseMAC(macs[i])
		m, err := qemu.Start(ctx, qemu.Spec{Name: fmt.Sprintf("floor%d", i+1), MAC: mac, CPUs: size.CPUs, MemoryMiB: size.MemoryMiB,
			Disks: disks, Firmware: fw, Netns: nw.Name, Tap: fmt.Sprintf("tapfl%d", i), Dir: filepath.Join(dir, fmt.Sprintf("node%d", i+1))})
		if err != nil {
			return result{}, err
		}
		machines = append(machines, m)
	}
	deadline := time.Now().Add(timeout(role, n))
	res := result{phases: map[string]float64{}}
	done := make([]bool, n)
	for left := n; left > 0; {
		if time.Now().After(deadline) {
			var cons []string
			for _, m := range machines {
				c := m.Console()
				if len(c) > 2000 {
					c = c[len(c)-2000:]
				}
				cons = append(cons, c)
			}
			return result{}, fmt.Errorf("%d of %d floor servers ready after %s; consoles:\n%s", n-left, n, timeout(role, n), strings.Join(cons, "\n----\n"))
		}
		for i, mac := range macs {
			if done[i] {
				continue
			}
			hb, ok := f.at(mac, "heartbeat")
			if !ok {
				continue
			}
			if role == rackcloud.RoleDocker {
				if !pingDocker(ctx, nw, filepath.Join(dir, leaseFileName), ca.Cert, client, ids[i], mac) {
					continue
				}
				hb = time.Since(f.start)
			}
			done[i] = true
			left--
			res.ready = append(res.ready, hb)
		}
		time.Sleep(250 * time.Millisecond)
	}
	sort.Slice(res.ready, func(i, j int) bool { return res.ready[i] < res.ready[j] })
	sum := map[string]float64{}
	for _, mac := range macs {
		ev := f.events[mac]
		sum["to_script"] += ev["script"].Seconds()
		sum["install"] += (ev["installed"] - ev["script"]).Seconds()
		sum["first_boot"] += (ev["heartbeat"] - ev["installed"]).Seconds()
	}
	for k, v := range sum {
		res.phases[k] = v / float64(n)
	}
	return res, nil
}

// pingDocker asks dockerd on the floor server with mac (its lease's
// address) for GET /_ping over mutual TLS.
func pingDocker(ctx context.Context, nw *netns.Net, leases, caPEM string, client hostca.Pair, hostID, mac string) bool {
	ip := leaseIP(leases, mac)
	if ip == "" {
		return false
	}
	cfg, err := hostca.ClientTLS(caPEM, client, hostID)
	if err != nil {
		return false
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: nsnet.Dialer(nw.Path(), nil), TLSClientConfig: cfg}}
	resp, err := hc.Get("https://" + net.JoinHostPort(ip, "2376") + "/_ping")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// leaseIP reads the lease of mac from dnsmasq's lease file.
func leaseIP(leases, mac string) string {
	b, _ := os.ReadFile(leases)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && strings.EqualFold(f[1], mac) {
			return f[2]
		}
	}
	return ""
}

// leaseFileName is dnsmasq's lease file in the floor's directory.
const leaseFileName = "dnsmasq.leases"

func startDnsmasq(ctx context.Context, nw *netns.Net, dir string, gw netip.Prefix) (*proc.Process, error) {
	b := gw.Addr().As4()
	lo, hi := b, b
	lo[3], hi[3] = 100, 199
	leaseFile := filepath.Join(dir, leaseFileName)
	ipxe := "http://" + gw.Addr().String() + ":8080/boot.ipxe?mac=${net0/mac}"
	args := []string{"netns", "exec", nw.Name, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=" + nw.Bridge, "--bind-interfaces", "--dhcp-authoritative",
		"--dhcp-range=" + netip.AddrFrom4(lo).String() + "," + netip.AddrFrom4(hi).String() + ",1h",
		"--dhcp-leasefile=" + leaseFile,
		"--dhcp-match=set:ipxe,175", "--dhcp-match=set:efi,option:client-arch,7", "--dhcp-match=set:efi,option:client-arch,9",
		"--dhcp-boot=tag:ipxe," + ipxe, "--dhcp-boot=tag:!ipxe,tag:efi,snponly.efi", "--dhcp-boot=tag:!ipxe,tag:!efi,undionly.kpxe",
		"--dhcp-option=tag:ipxe,encap:175,176,1",
		"--enable-tftp", "--tftp-root=/usr/lib/ipxe",
		"--enable-ra", "--dhcp-range=::,constructor:" + nw.Bridge + ",ra-only",
		"--pid-file=" + filepath.Join(dir, "dnsmasq.pid"), "--log-facility=" + filepath.Join(dir, "dnsmasq.log")}
	p, err := proc.Start(proc.Spec{Name: "dnsmasq", Path: "ip", Args: args, Log: filepath.Join(dir, "dnsmasq.out")})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.WaitFunc(wctx, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "dnsmasq.log"))
		return bytes.Contains(b, []byte("TFTP root"))
	}); err != nil {
		p.Stop(syscall.SIGTERM, time.Second)
		return nil, fmt.Errorf("dnsmasq did not start: %w: %s", err, p.LogTail(10))
	}
	return p, nil
}

// configOffset reads the image's MBR (its first frame) and returns the
// byte offset of its host config partition.
func configOffset(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	d, err := zstd.NewReader(f)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	mbr := make([]byte, 512)
	if _, err := io.ReadFull(d, mbr); err != nil {
		return 0, err
	}
	p, err := hostconfig.Find(bytes.NewReader(mbr))
	return p.Offset, err
}

// binaryWithLibs returns the files of a dynamically linked binary and the
// shared libraries ldd names, at their paths.
func binaryWithLibs(bin string) ([]bootimg.File, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	paths := []string{bin}
	for _, line := range strings.Split(string(out), "\n") {
		for _, w := range strings.Fields(line) {
			if strings.HasPrefix(w, "/") {
				paths = append(paths, w)
			}
		}
	}
	var files []bootimg.File
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		files = append(files, bootimg.File{Path: strings.TrimPrefix(p, "/"), Mode: 0o755, Data: b})
	}
	return files, nil
}

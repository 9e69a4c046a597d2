// Package virtd starts libvirtd and virtlogd for tests, each pair in a
// mount namespace of its own (and in a test's network namespace), so that
// two daemons (a migration's two hosts) run side by side without seeing
// each other or a system libvirtd.
//
// The daemon's shell runs `unshare --mount --propagation private` and
// bind-mounts per-daemon directories under Config.Dir over /run/libvirt,
// /var/lib/libvirt, /var/cache/libvirt, /etc/libvirt (a copy of the
// machine's, with the settings below), /var/log/libvirt and the storage
// pool's directory, then execs libvirtd; virtlogd is started afterwards
// in the same namespaces (nsenter --mount=/proc/PID/ns/mnt). The bind
// sources are the test's directories, so the unix socket is reachable
// from outside at Daemon.Socket and the files libvirt writes can be read
// from the test.
//
// Settings, fit for tests only: qemu.conf runs domains as root with no
// security driver (user = "root", security_driver = "none"), so disks
// and logs need no ownership changes; the unix socket needs no
// authentication (auth_unix_rw = "none"). With Config.TLS, libvirtd also
// listens for mutual TLS (libvirtd --listen, listen_tls).
package virtd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/proc"
)

// DefaultPoolDir is where the storage pool's directory is mounted inside
// the daemon's namespace: vmctl.Libvirt's default pool path, so that
// every test daemon has the same path, as real hosts do.
const DefaultPoolDir = "/var/lib/libvirt/images/rackcloud"

// DefaultTLSPort is libvirtd's TLS port.
const DefaultTLSPort = 16514

// Config says where and how to run the daemons.
type Config struct {
	// Dir holds everything the daemons write (run/, lib/, cache/, etc/,
	// log/, pool/ and the daemons' logs); required, and one per daemon.
	Dir string
	// Netns is the network namespace to run in; nil keeps the caller's.
	Netns *netns.Net
	// PoolDir is the path the pool directory (Dir/pool) is mounted at
	// inside the daemon's namespace; empty means DefaultPoolDir.
	PoolDir string
	// TLS, when set, makes libvirtd listen for mutual TLS.
	TLS *TLS
	// Timeout bounds the wait until libvirtd answers; 0 means 60 s.
	Timeout time.Duration
}

// TLS is libvirtd's TLS listener: PEM files of the CA that signs client
// certificates, the server's certificate and key.
type TLS struct {
	CAFile, CertFile, KeyFile string
	// Addr is the address to listen on (inside Netns); empty means
	// 127.0.0.1.
	Addr string
	// Port; 0 means DefaultTLSPort.
	Port int
}

// Daemon is a running libvirtd and its virtlogd.
type Daemon struct {
	Config Config
	// Socket is libvirtd's read-write unix socket, reachable from the
	// test.
	Socket string
	// PoolHostDir is the pool directory as the test sees it (Dir/pool).
	PoolHostDir string
	// LogDir is /var/log/libvirt as the test sees it (Dir/log).
	LogDir string

	libvirtd, virtlogd *proc.Process
	mntNS              string
	stopOnce           sync.Once
}

// URI is the endpoint of the unix socket: qemu+unix:///system?socket=PATH.
func (d *Daemon) URI() string { return "qemu+unix:///system?socket=" + d.Socket }

// TLSURI is the endpoint of the TLS listener (qemu+tls://ADDR:PORT/system);
// empty without Config.TLS.
func (d *Daemon) TLSURI() string {
	if d.Config.TLS == nil {
		return ""
	}
	return "qemu+tls://" + d.tlsAddr() + "/system"
}

func (d *Daemon) tlsAddr() string {
	t := d.Config.TLS
	addr, port := t.Addr, t.Port
	if addr == "" {
		addr = "127.0.0.1"
	}
	if port == 0 {
		port = DefaultTLSPort
	}
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// mounts are the directories each daemon gets of its own: the name under
// Config.Dir and the path it is mounted over.
var mounts = []struct{ name, target string }{
	{"run", "/run/libvirt"},
	{"lib", "/var/lib/libvirt"},
	{"cache", "/var/cache/libvirt"},
	{"etc", "/etc/libvirt"},
	{"log", "/var/log/libvirt"},
}

// Start starts libvirtd and virtlogd and waits until libvirtd answers on
// its unix socket. The daemons die with the calling process; call Stop
// to stop them (and the QEMU processes they started) sooner.
func Start(ctx context.Context, c Config) (*Daemon, error) {
	if c.Dir == "" {
		return nil, errors.New("virtd: no Dir")
	}
	if c.PoolDir == "" {
		c.PoolDir = DefaultPoolDir
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
	for _, bin := range []string{"libvirtd", "virtlogd", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("virtd: %s not installed (lab/debian-packages.txt: libvirt-daemon-system, qemu-system-x86; make deps): %w", bin, err)
		}
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, err
	}
	c.Dir = dir
	d := &Daemon{Config: c, Socket: filepath.Join(dir, "run", "libvirt-sock"),
		PoolHostDir: filepath.Join(dir, "pool"), LogDir: filepath.Join(dir, "log")}
	if err := d.layout(); err != nil {
		return nil, fmt.Errorf("virtd: %w", err)
	}
	script := "set -e\n"
	for _, m := range append(mounts, struct{ name, target string }{"pool", c.PoolDir}) {
		src := filepath.Join(dir, m.name)
		script += fmt.Sprintf("mkdir -p %q\nmount --bind %q %q\n", m.target, src, m.target)
	}
	args := []string{"libvirtd", "--pid-file", "/run/libvirt/libvirtd.pid"}
	if c.TLS != nil {
		args = append(args, "--listen")
	}
	script += "exec " + strings.Join(args, " ") + "\n"
	cmd := []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script}
	if c.Netns != nil {
		cmd = append([]string{"nsenter", "--net=" + c.Netns.Path()}, cmd...)
	}
	path, err := exec.LookPath(cmd[0])
	if err != nil {
		return nil, err
	}
	d.libvirtd, err = proc.Start(proc.Spec{Name: "libvirtd", Path: path, Args: cmd[1:], Dir: dir,
		Log: filepath.Join(dir, "libvirtd.log")})
	if err != nil {
		return nil, fmt.Errorf("virtd: %w", err)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.Timeout, errors.New("libvirtd did not answer in time"))
	defer cancel()
	if err := d.libvirtd.WaitFunc(ctx, d.answers); err != nil {
		d.Stop()
		return nil, fmt.Errorf("virtd: %w", err)
	}
	// The socket answers only once libvirtd runs (after the mounts), so
	// its mount namespace is the daemon's now.
	pid := d.libvirtd.PID()
	d.mntNS, err = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		d.Stop()
		return nil, fmt.Errorf("virtd: %w", err)
	}
	vargs := []string{fmt.Sprintf("--mount=/proc/%d/ns/mnt", pid)}
	if c.Netns != nil {
		vargs = append(vargs, "--net="+c.Netns.Path())
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		d.Stop()
		return nil, err
	}
	d.virtlogd, err = proc.Start(proc.Spec{Name: "virtlogd", Path: nsenter, Args: append(vargs, "virtlogd", "--pid-file", "/run/libvirt/virtlogd.pid"),
		Dir: dir, Log: filepath.Join(dir, "virtlogd.log")})
	if err != nil {
		d.Stop()
		return nil, fmt.Errorf("virtd: %w", err)
	}
	vsock := filepath.Join(dir, "run", "virtlogd-sock")
	if err := d.virtlogd.WaitFunc(ctx, func() bool {
		conn, err := net.DialTimeout("unix", vsock, time.Second)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}); err != nil {
		d.Stop()
		return nil, fmt.Errorf("virtd: %w", err)
	}
	if c.TLS != nil {
		if err := d.libvirtd.WaitFunc(ctx, func() bool {
			conn, err := c.Netns.DialContext(ctx, "tcp", d.tlsAddr())
			if err != nil {
				return false
			}
			conn.Close()
			return true
		}); err != nil {
			d.Stop()
			return nil, fmt.Errorf("virtd: %w", err)
		}
	}
	return d, nil
}

// answers reports whether libvirtd answers an RPC on its socket.
func (d *Daemon) answers() bool {
	if _, err := os.Stat(d.Socket); err != nil {
		return false
	}
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(d.Socket), dialers.WithLocalTimeout(time.Second)))
	if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
		return false
	}
	defer l.Disconnect()
	_, err := l.ConnectGetLibVersion()
	return err == nil
}

// layout makes the daemon's directories and its configuration.
func (d *Daemon) layout() error {
	dir := d.Config.Dir
	for _, m := range append(mounts, struct{ name, target string }{"pool", ""}) {
		if m.name == "etc" {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, m.name), 0o755); err != nil {
			return err
		}
	}
	etc := filepath.Join(dir, "etc")
	_ = os.RemoveAll(etc)
	if out, err := exec.Command("cp", "-a", "/etc/libvirt", etc).CombinedOutput(); err != nil {
		return fmt.Errorf("copy /etc/libvirt: %w: %s", err, out)
	}
	// No network autostarts (the default network wants dnsmasq and NAT).
	auto, _ := filepath.Glob(filepath.Join(etc, "qemu", "networks", "autostart", "*"))
	for _, a := range auto {
		_ = os.Remove(a)
	}
	libvirtd := "\n# lab/virtd\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n" +
		"unix_sock_dir = \"/run/libvirt\"\nlog_outputs = \"3:stderr\"\n"
	if t := d.Config.TLS; t != nil {
		addr, port, _ := net.SplitHostPort(d.tlsAddr())
		libvirtd += fmt.Sprintf("listen_tls = 1\nlisten_tcp = 0\nlisten_addr = %q\ntls_port = %q\n"+
			"ca_file = %q\ncert_file = %q\nkey_file = %q\n", addr, port, t.CAFile, t.CertFile, t.KeyFile)
	}
	qemu := "\n# lab/virtd: tests only\nuser = \"root\"\ngroup = \"root\"\nsecurity_driver = \"none\"\n"
	for name, extra := range map[string]string{"libvirtd.conf": libvirtd, "qemu.conf": qemu} {
		f, err := os.OpenFile(filepath.Join(etc, name), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(extra)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// QEMUPIDs returns the PIDs of the QEMU processes this libvirtd started,
// read from its pidfiles (run/qemu/<domain>.pid) and kept only when the
// process's command line names that domain (a PID reused by another
// process is not taken for QEMU, nor libvirtd's own driver.pid).
func (d *Daemon) QEMUPIDs() []int {
	files, _ := filepath.Glob(filepath.Join(d.Config.Dir, "run", "qemu", "*.pid"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		// run/qemu/driver.pid is libvirtd's own lock; a QEMU process names
		// its domain on its command line (-name guest=NAME,...). QEMU runs
		// in a mount namespace of its own (qemu.conf namespaces), so the
		// name is what ties it to this daemon's pidfile.
		name := strings.TrimSuffix(filepath.Base(f), ".pid")
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !strings.Contains(string(cmdline), "\x00guest="+name+",") || !alive(pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// Stop kills the QEMU processes the daemon started (by the PIDs in its
// pidfiles), then libvirtd and virtlogd, and waits for them. Safe to
// call twice.
func (d *Daemon) Stop() {
	d.stopOnce.Do(func() {
		if d.mntNS != "" {
			pids := d.QEMUPIDs()
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			deadline := time.Now().Add(10 * time.Second)
			for _, pid := range pids {
				for alive(pid) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
		if d.libvirtd != nil {
			d.libvirtd.Stop(syscall.SIGTERM, 5*time.Second)
		}
		if d.virtlogd != nil {
			d.virtlogd.Stop(syscall.SIGTERM, 5*time.Second)
		}
	})
}

package hostimg

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"hash"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostconfig"
)

// Suite is the Debian release of the kvm and docker images.
const Suite = "bookworm"

// Packages are the Debian packages of the kvm and docker images (with
// their dependencies, no recommends). apparmor is required on a docker
// host: docker.io only recommends it, and without apparmor_parser every
// container start fails. qemu-utils on a kvm host: libvirt makes
// qcow2 volumes (the guests' disks) with qemu-img.
var Packages = map[rackcloud.HostRole][]string{
	rackcloud.RoleDocker: append(basePackages(), "docker.io"),
	rackcloud.RoleKVM:    append(basePackages(), "libvirt-daemon-system", "libvirt-clients", "qemu-system-x86", "qemu-utils"),
}

func basePackages() []string {
	return []string{"systemd-sysv", "udev", "dbus", "kmod", "linux-image-amd64", "initramfs-tools", "iproute2",
		"e2fsprogs", "apparmor"}
}

// AgentBinary is where the kvm and docker images carry the agent.
const AgentBinary = "/usr/local/bin/rackcloud-agent"

// Units of the installed host's agent.
const (
	SetupUnit = "rackcloud-host-setup.service"
	HostUnit  = "rackcloud-host.service"
)

// dpkgOptions keep documentation, manual pages and translations out of the
// image (now and for packages installed later on the host).
var dpkgOptions = []string{
	"path-exclude=/usr/share/man/*",
	"path-exclude=/usr/share/info/*",
	"path-exclude=/usr/share/doc/*",
	"path-include=/usr/share/doc/*/copyright",
	"path-exclude=/usr/share/locale/*",
	"path-include=/usr/share/locale/locale.alias",
	"path-exclude=/usr/share/lintian/*",
}

// hook runs on the build machine after the packages are installed, with
// the root file system as $1, the image's files as $2 and the role's
// package cache as $3.
const hook = `#!/bin/sh
set -eu
R=$1 F=$2 D=$3
# Keep the downloaded packages for this role's next build.
rm -f "$D"/*.deb
for f in "$R"/var/cache/apt/archives/*.deb; do [ -e "$f" ] && mv "$f" "$D"/; done
cp -a "$F"/. "$R"/
: >"$R/etc/resolv.conf"
rm -f "$R"/etc/ssh/ssh_host_*
rm -rf "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin
find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
chroot "$R" systemctl enable systemd-networkd.service ` + SetupUnit + ` ` + HostUnit + `
for u in $(cat "$F/etc/rackcloud/enable-units" 2>/dev/null); do chroot "$R" systemctl enable "$u"; done
rm -f "$R/etc/rackcloud/enable-units"
`

const setupUnitText = `[Unit]
Description=rackcloud host configuration (from the disk's config partition)
DefaultDependencies=no
After=local-fs.target
Wants=network-pre.target
Before=network-pre.target docker.service libvirtd.service libvirtd-tls.socket ` + HostUnit + ` shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + AgentBinary + ` host-setup --root /
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`

func hostUnitText(daemon string) string {
	return `[Unit]
Description=rackcloud host agent (heartbeats to the boot service)
Wants=network-online.target
After=network-online.target ` + SetupUnit + ` ` + daemon + `

[Service]
ExecStart=` + AgentBinary + ` host --root /
Restart=always
RestartSec=5
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`
}

const networkText = `[Match]
Name=en* eth*

[Network]
DHCP=ipv4
`

const waitOnlineDropIn = `[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
`

// dockerDropIn drops the stock unit's -H fd://: daemon.json names the
// listeners.
const dockerDropIn = `[Service]
ExecStart=
ExecStart=/usr/sbin/dockerd --containerd=/run/containerd/containerd.sock $DOCKER_OPTS
`

func dockerDaemonJSON() string {
	b, _ := json.MarshalIndent(map[string]any{
		"hosts":     []string{"unix:///var/run/docker.sock", "tcp://0.0.0.0:" + strconv.Itoa(hostconfig.DockerTLSPort)},
		"tls":       true,
		"tlsverify": true,
		"tlscacert": "/" + hostconfig.FileCA,
		"tlscert":   "/" + hostconfig.FileCert,
		"tlskey":    "/" + hostconfig.FileKey,
	}, "", "  ")
	return string(b) + "\n"
}

type rootFile struct {
	mode os.FileMode
	data string
}

type debianRecipe struct {
	role     rackcloud.HostRole
	packages []string
	mirrors  []string
	files    map[string]rootFile
	agent    []byte
}

func newDebianRecipe(role rackcloud.HostRole, agent []byte) (*debianRecipe, error) {
	mirrors, err := AptMirrors("/etc/apt")
	if err != nil {
		return nil, err
	}
	files := map[string]rootFile{
		"etc/hostname": {0o644, "rackcloud-host\n"},
		"etc/fstab":    {0o644, "UUID=" + RootUUID + " / ext4 errors=remount-ro 0 1\n"},
		"etc/systemd/network/50-rackcloud-dhcp.network":                            {0o644, networkText},
		"etc/systemd/system/systemd-networkd-wait-online.service.d/rackcloud.conf": {0o644, waitOnlineDropIn},
		"etc/systemd/system/" + SetupUnit:                                          {0o644, setupUnitText},
	}
	switch role {
	case rackcloud.RoleDocker:
		files["etc/systemd/system/"+HostUnit] = rootFile{0o644, hostUnitText("docker.service")}
		files["etc/docker/daemon.json"] = rootFile{0o644, dockerDaemonJSON()}
		files["etc/systemd/system/docker.service.d/rackcloud.conf"] = rootFile{0o644, dockerDropIn}
		files["etc/rackcloud/enable-units"] = rootFile{0o644, "docker.service\n"}
	case rackcloud.RoleKVM:
		// libvirtd listens with TLS only (libvirtd-tls.socket, port
		// 16514, the files at hostconfig.FileLibvirt*); no TCP socket.
		files["etc/systemd/system/"+HostUnit] = rootFile{0o644, hostUnitText("libvirtd.service")}
		files["etc/rackcloud/enable-units"] = rootFile{0o644, "libvirtd.service\nlibvirtd-tls.socket\n"}
	}
	return &debianRecipe{role: role, packages: Packages[role], mirrors: mirrors, files: files, agent: agent}, nil
}

func (d *debianRecipe) hashInto(h hash.Hash) {
	fmt.Fprintf(h, "debian\x00%s\x00%q\x00%q\x00%q\x00%s\x00", Suite, d.packages, d.mirrors, dpkgOptions, hook)
	names := make([]string, 0, len(d.files))
	for n := range d.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%o\x00%s\x00", n, d.files[n].mode, d.files[n].data)
	}
}

func (d *debianRecipe) build(ctx context.Context, work string, p *progress) (*diskSpec, error) {
	stage := filepath.Join(work, "files")
	for n, f := range d.files {
		if err := writeFile(filepath.Join(stage, n), f.mode, []byte(f.data)); err != nil {
			return nil, err
		}
	}
	if err := writeFile(filepath.Join(stage, strings.TrimPrefix(AgentBinary, "/")), 0o755, d.agent); err != nil {
		return nil, err
	}
	hookFile := filepath.Join(work, "hook.sh")
	if err := writeFile(hookFile, 0o755, []byte(hook)); err != nil {
		return nil, err
	}
	// The role's downloaded packages, kept between builds.
	debs := filepath.Join(filepath.Dir(work), "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, err
	}
	rootfs := filepath.Join(work, "rootfs")
	args := []string{"--mode=root", "--variant=apt", "--format=directory",
		`--aptopt=APT::Install-Recommends "false"`, `--aptopt=Acquire::Retries "3"`,
		"--include=" + strings.Join(d.packages, ","),
		"--skip=essential/unlink",
		"--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives && cp -a " + shq(debs) + "/. \"$1\"/var/cache/apt/archives/",
		"--customize-hook=" + shq(hookFile) + " \"$1\" " + shq(stage) + " " + shq(debs),
	}
	for _, o := range dpkgOptions {
		args = append(args, "--dpkgopt="+o)
	}
	args = append(args, Suite, rootfs)
	args = append(args, d.mirrors...)
	p.phase("mmdebstrap %s (this takes 1-3 minutes, more when loaded)...", strings.Join(d.packages, ","))
	logPath := filepath.Join(filepath.Dir(work), "mmdebstrap.log")
	if err := mmdebstrap(ctx, logPath, args); err != nil {
		return nil, err
	}
	vmlinuz, initrd, err := bootFiles(rootfs)
	if err != nil {
		return nil, err
	}
	release := strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-")
	out, err := run(ctx, work, "", "du", "-s", "-B1M", rootfs)
	if err != nil {
		return nil, err
	}
	used, _ := strconv.ParseInt(strings.Fields(out)[0], 10, 64)
	// Room for containers and guests' first steps; the file system does
	// not grow by itself.
	size := (used*13/10 + 1024 + 63) / 64 * 64
	p.phase("ext4 root file system (%d MiB used of %d MiB)...", used, size)
	root := filepath.Join(work, "root.ext4")
	// The kernel and initramfs are read from the boot partition.
	if _, err := run(ctx, work, "", "mke2fs", "-q", "-F", "-t", "ext4", "-U", RootUUID, "-L", "rackcloud-root",
		"-d", rootfs, root, strconv.FormatInt(size, 10)+"M"); err != nil {
		return nil, err
	}
	// Copy the boot files out before the rootfs goes.
	for _, f := range []*string{&vmlinuz, &initrd} {
		dst := filepath.Join(work, filepath.Base(*f))
		if _, err := run(ctx, work, "", "cp", *f, dst); err != nil {
			return nil, err
		}
		*f = dst
	}
	if err := removeAll(rootfs); err != nil {
		return nil, err
	}
	return &diskSpec{vmlinuz: vmlinuz, initrd: initrd, rootImage: root, kernel: release}, nil
}

// mmdebstrap runs mmdebstrap, logging to logPath; on cancel it gets
// SIGTERM (it then unmounts what it mounted in the chroot) and time to
// clean up.
func mmdebstrap(ctx context.Context, logPath string, args []string) error {
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	c := exec.CommandContext(ctx, "mmdebstrap", args...)
	c.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	c.Stdout, c.Stderr = log, log
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = 30 * time.Second
	if err := c.Run(); err != nil {
		b, _ := os.ReadFile(logPath)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		return fmt.Errorf("mmdebstrap (log %s): %w: %s", logPath, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// bootFiles finds the kernel and initramfs the packages installed.
func bootFiles(rootfs string) (vmlinuz, initrd string, err error) {
	ks, _ := filepath.Glob(filepath.Join(rootfs, "boot", "vmlinuz-*"))
	if len(ks) == 0 {
		return "", "", fmt.Errorf("no kernel in %s/boot", rootfs)
	}
	sort.Strings(ks)
	vmlinuz = ks[len(ks)-1]
	initrd = filepath.Join(rootfs, "boot", "initrd.img-"+strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-"))
	if _, err := os.Stat(initrd); err != nil {
		return "", "", fmt.Errorf("no initramfs for %s: %w", vmlinuz, err)
	}
	return vmlinuz, initrd, nil
}

// AptMirrors returns this machine's apt sources for Suite (its
// sources.list and sources.list.d, one-line and deb822 formats) as
// one-line "deb URI SUITE COMPONENTS" entries, so that images are built
// from the mirror apt already uses here. Without any, it returns
// deb.debian.org.
func AptMirrors(etcApt string) ([]string, error) {
	var out []string
	add := func(types, uris, suites, comps []string) {
		if !contains(types, "deb") {
			return
		}
		for _, u := range uris {
			for _, s := range suites {
				if s == Suite || strings.HasPrefix(s, Suite+"-") {
					out = append(out, "deb "+u+" "+s+" "+strings.Join(comps, " "))
				}
			}
		}
	}
	lists := []string{filepath.Join(etcApt, "sources.list")}
	more, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", "*.list"))
	lists = append(lists, more...)
	for _, l := range lists {
		f, err := os.Open(l)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = strings.TrimSpace(line[:i])
			}
			fs := strings.Fields(line)
			// Options in brackets ([signed-by=...]) are dropped: the
			// build uses the machine's keyrings.
			for len(fs) > 1 && strings.HasPrefix(fs[1], "[") {
				end := 1
				for end < len(fs) && !strings.HasSuffix(fs[end], "]") {
					end++
				}
				fs = append(fs[:1], fs[min(end+1, len(fs)):]...)
			}
			if len(fs) >= 4 {
				add(fs[:1], fs[1:2], fs[2:3], fs[3:])
			}
		}
		f.Close()
	}
	deb822, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", "*.sources"))
	for _, p := range deb822 {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, stanza := range strings.Split(string(b), "\n\n") {
			fields := map[string][]string{}
			for _, l := range strings.Split(stanza, "\n") {
				if strings.HasPrefix(strings.TrimSpace(l), "#") {
					continue
				}
				k, v, ok := strings.Cut(l, ":")
				if ok && !strings.HasPrefix(l, " ") {
					fields[strings.ToLower(strings.TrimSpace(k))] = strings.Fields(v)
				}
			}
			if e := fields["enabled"]; len(e) == 1 && e[0] == "no" {
				continue
			}
			add(fields["types"], fields["uris"], fields["suites"], fields["components"])
		}
	}
	if len(out) == 0 {
		out = []string{"deb http://deb.debian.org/debian " + Suite + " main"}
	}
	return out, nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func writeFile(path string, mode os.FileMode, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, mode)
}

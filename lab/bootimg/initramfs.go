package bootimg

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Kernel command-line parameters the default /init reads.
const (
	// ParamMAC selects the NIC to configure (lower-case colon form).
	ParamMAC = "rackcloud.mac"
	// ParamCallback is the URL /init POSTs a JSON report to once the NIC
	// has an address.
	ParamCallback = "rackcloud.callback"
	// ParamToken is this boot's callback token: /init sends it as
	// "Authorization: Bearer" and leaves it out of the command line it
	// reports.
	ParamToken = "rackcloud.token"
)

// CallbackMarker is printed on the console by the default /init after the
// callback was accepted by the server (HTTP 2xx), followed by " mac=<mac>".
const CallbackMarker = "RACKCLOUD-CALLBACK-OK"

// DefaultModules are the NIC and disk drivers the default image loads:
// virtio (q35 QEMU) and Intel e1000, with their dependencies.
var DefaultModules = []string{"virtio_pci", "virtio_net", "virtio_blk", "e1000"}

// DefaultBusybox is busybox-static's binary.
const DefaultBusybox = "/bin/busybox"

// HooksDir is where extra programs added to the image are run from, in
// name order, after the callback (the inspection agent goes there).
const HooksDir = "etc/rackcloud/init.d"

// File is an extra file put into the initramfs.
type File struct {
	// Path inside the image, e.g. "etc/rackcloud/init.d/50-agent".
	Path string
	Mode os.FileMode
	Data []byte
}

// Spec describes an initramfs.
type Spec struct {
	// Kernel provides the modules; required.
	Kernel *Kernel
	// Modules to load at boot (with their dependencies); nil means
	// DefaultModules.
	Modules []string
	// Busybox is the static busybox binary; empty means DefaultBusybox.
	Busybox string
	// Init replaces the default /init script when not empty.
	Init string
	// Files are added as they are; parent directories are created.
	Files []File
	// CacheDir, when set, keeps built initramfs images keyed by a hash of
	// everything that goes into them, so an unchanged image is built once.
	CacheDir string
}

// key hashes everything BuildInitramfs puts into the image.
func (s Spec) key() (string, error) {
	h := sha256.New()
	init := s.Init
	if init == "" {
		init = DefaultInit // a changed default must not reuse the old builds
	}
	fmt.Fprintf(h, "bootimg-initramfs-v1\x00%s\x00%s\x00%s\x00", s.Kernel.Version, init, udhcpcScript)
	names := s.Modules
	if names == nil {
		names = DefaultModules
	}
	mods, err := s.Kernel.Modules(names...)
	if err != nil {
		return "", err
	}
	bb := s.Busybox
	if bb == "" {
		bb = DefaultBusybox
	}
	paths := []string{bb}
	for _, m := range mods {
		paths = append(paths, m.Path)
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00", p)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	for _, f := range s.Files {
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00", cleanName(f.Path), f.Mode, len(f.Data))
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

// InitPrologue starts an /init script (DefaultInit, or one of Spec.Init):
// busybox's applets installed, /proc, /sys and /dev mounted, output to
// the console.
const InitPrologue = `#!/bin/sh
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
`

// DefaultInit is the /init script: it loads the NIC modules, brings up the
// NIC whose MAC is rackcloud.mac with udhcpc, POSTs a JSON report
// ({"mac","ip","kernel","uptime","cmdline"}, the command line with
// rackcloud.token's value replaced by REDACTED) to rackcloud.callback with
// wget, presenting rackcloud.token as "Authorization: Bearer", prints
// CallbackMarker on the console, then runs the programs in HooksDir and
// idles.
const DefaultInit = InitPrologue + `say() { echo "rackcloud-init: $*"; }
param() {
	for w in $(cat /proc/cmdline); do
		case "$w" in "$1"=*) echo "${w#*=}"; return;; esac
	done
}
MAC=$(param ` + ParamMAC + ` | tr A-F a-f)
CALLBACK=$(param ` + ParamCallback + `)
TOKEN=$(param ` + ParamToken + `)
say "kernel $(uname -r) up at $(cut -d' ' -f1 /proc/uptime)s mac=$MAC"
while read -r m; do
	insmod "/lib/modules/$m" || say "insmod $m failed"
done </etc/rackcloud/modules
IF=""
for try in 1 2 3 4 5 6 7 8 9 10; do
	for d in /sys/class/net/*; do
		n=${d##*/}
		[ "$n" = lo ] && continue
		if [ -z "$MAC" ] || [ "$(cat "$d/address")" = "$MAC" ]; then IF=$n; break; fi
	done
	[ -n "$IF" ] && break
	sleep 1
done
ip link set lo up
if [ -z "$IF" ]; then
	say "no NIC with MAC $MAC"
else
	ip link set "$IF" up
	say "dhcp on $IF"
	udhcpc -i "$IF" -n -q -f -t 30 -T 1 -s /etc/rackcloud/udhcpc.sh || say "udhcpc on $IF failed"
fi
IP=$(cat /run/rackcloud-ip 2>/dev/null)
say "address $IP up at $(cut -d' ' -f1 /proc/uptime)s"
if [ -n "$CALLBACK" ]; then
	cmdline=$(sed -e 's/\(` + ParamToken + `=\)[^ ]*/\1REDACTED/g' -e 's/[\\"]/\\&/g' /proc/cmdline)
	auth="X-Rackcloud-No-Token: 1"
	[ -n "$TOKEN" ] && auth="Authorization: Bearer $TOKEN"
	body="{\"mac\":\"$MAC\",\"ip\":\"$IP\",\"kernel\":\"$(uname -r)\",\"uptime\":\"$(cut -d' ' -f1 /proc/uptime)\",\"cmdline\":\"$cmdline\"}"
	for try in 1 2 3 4 5 6 7 8 9 10; do
		if wget -q -O /run/callback.out --header "Content-Type: application/json" --header "$auth" --post-data "$body" "$CALLBACK"; then
			echo "` + CallbackMarker + ` mac=$MAC"
			break
		fi
		say "callback to $CALLBACK failed, retrying"
		sleep 2
	done
fi
for h in /` + HooksDir + `/*; do
	[ -x "$h" ] && "$h"
done
while :; do sleep 3600; done
`

const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig)
	ip addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	if [ -n "$router" ]; then
		ip route add default via "${router%% *}" dev "$interface"
	fi
	echo "$ip" >/run/rackcloud-ip
	;;
esac
exit 0
`

// BuildInitramfs writes a gzip-compressed newc initramfs for spec to w.
func BuildInitramfs(w io.Writer, spec Spec) error {
	if spec.Kernel == nil {
		return fmt.Errorf("initramfs: no kernel")
	}
	names := spec.Modules
	if names == nil {
		names = DefaultModules
	}
	mods, err := spec.Kernel.Modules(names...)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	bb := spec.Busybox
	if bb == "" {
		bb = DefaultBusybox
	}
	busybox, err := os.ReadFile(bb)
	if err != nil {
		return fmt.Errorf("initramfs: busybox (package busybox-static): %w", err)
	}
	init := spec.Init
	if init == "" {
		init = DefaultInit
	}
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	c := NewCPIOWriter(zw, time.Unix(0, 0))
	mkdirs := func(p string) error {
		var parts []string
		for d := path.Dir(cleanName(p)); d != "." && d != "/"; d = path.Dir(d) {
			parts = append(parts, d)
		}
		for i := len(parts) - 1; i >= 0; i-- {
			if !c.Has(parts[i]) {
				if err := c.Dir(parts[i], 0o755); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, d := range []string{"bin", "dev", "etc", "etc/rackcloud", HooksDir, "lib", "lib/modules",
		"proc", "sys", "run", "tmp", "sbin", "usr", "usr/bin", "usr/sbin", "root"} {
		if err := c.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := c.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := c.File("bin/busybox", 0o755, busybox); err != nil {
		return err
	}
	if err := c.Symlink("bin/sh", "busybox"); err != nil {
		return err
	}
	if err := c.File("init", 0o755, []byte(init)); err != nil {
		return err
	}
	if err := c.File("etc/rackcloud/udhcpc.sh", 0o755, []byte(udhcpcScript)); err != nil {
		return err
	}
	var list strings.Builder
	for _, m := range mods {
		data, err := os.ReadFile(m.Path)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		if err := c.File("lib/modules/"+m.Name+".ko", 0o644, data); err != nil {
			return err
		}
		list.WriteString(m.Name + ".ko\n")
	}
	if err := c.File("etc/rackcloud/modules", 0o644, []byte(list.String())); err != nil {
		return err
	}
	files := append([]File(nil), spec.Files...)
	sort.SliceStable(files, func(i, j int) bool { return cleanName(files[i].Path) < cleanName(files[j].Path) })
	for _, f := range files {
		if err := mkdirs(f.Path); err != nil {
			return err
		}
		if err := c.File(f.Path, uint32(f.Mode.Perm()), f.Data); err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// Image is a kernel and an initramfs ready to be served.
type Image struct {
	Kernel *Kernel
	// Vmlinuz and Initrd are the files written by Prepare.
	Vmlinuz string
	Initrd  string
}

// Names of the files Prepare writes.
const (
	VmlinuzName = "vmlinuz"
	InitrdName  = "initrd.img"
)

// Prepare writes dir/vmlinuz and dir/initrd.img for spec. Files are
// replaced atomically, so a server may already serve dir.
func Prepare(dir string, spec Spec) (*Image, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	img := &Image{Kernel: spec.Kernel, Vmlinuz: filepath.Join(dir, VmlinuzName), Initrd: filepath.Join(dir, InitrdName)}
	kernel, err := os.ReadFile(spec.Kernel.Vmlinuz)
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(img.Vmlinuz, func(w io.Writer) error { _, err := w.Write(kernel); return err }); err != nil {
		return nil, err
	}
	build := func(w io.Writer) error { return BuildInitramfs(w, spec) }
	if spec.CacheDir != "" {
		key, err := spec.key()
		if err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		cached := filepath.Join(spec.CacheDir, "initrd-"+key+".img")
		if _, err := os.Stat(cached); err != nil {
			if err := writeAtomic(cached, build); err != nil {
				return nil, err
			}
		}
		build = func(w io.Writer) error {
			f, err := os.Open(cached)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, f)
			return err
		}
	}
	if err := writeAtomic(img.Initrd, build); err != nil {
		return nil, err
	}
	return img, nil
}

// Inspection fetches the kernel into CacheDir(), builds the agent (see
// Agent) and writes the inspection image (DefaultInit, DefaultModules,
// AgentFiles: the agent reports the inventory after the callback) into
// dir, reusing a cached build.
func Inspection(ctx context.Context, dir string) (*Image, error) {
	k, err := FetchKernel(ctx, CacheDir())
	if err != nil {
		return nil, err
	}
	files, err := AgentFiles(ctx)
	if err != nil {
		return nil, err
	}
	return Prepare(dir, Spec{Kernel: k, Files: files, CacheDir: CacheDir()})
}

func writeAtomic(name string, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := fill(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

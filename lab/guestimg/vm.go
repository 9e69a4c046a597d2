package guestimg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rackcloud/rackcloud/lab/bootimg"
	"github.com/rackcloud/rackcloud/lab/hostimg"
)

// VMMarker is the line the VM image prints on its serial console (ttyS0)
// once its init runs.
const VMMarker = "rackcloud-vm-up"

// vmVersion is hashed into the VM image's recipe: bump it when the build
// changes in a way the other inputs do not show.
const vmVersion = "guestimg-vm-v1"

// vmInit mounts /proc, /sys and /dev (InitPrologue), prints VMMarker and
// idles forever. It does not handle ACPI: a guest of this image stops
// only when it is destroyed.
const vmInit = bootimg.InitPrologue + `echo "` + VMMarker + ` kernel $(uname -r) at $(cut -d' ' -f1 /proc/uptime)s"
while :; do sleep 3600; done
`

const vmCmdline = "console=tty0 console=ttyS0,115200 quiet"

// VM returns a raw bootable BIOS (and UEFI) disk image in dir: the Debian
// kernel of lab/bootimg and a busybox initramfs whose init prints
// VMMarker on the serial console and then sleeps forever. The image is
// built once per recipe (kernel, init, busybox, boot loader files) and
// reused from dir afterwards, so test packages share it; concurrent
// callers, in this process or others, share one build. It returns the
// image's path, its checksum as "sha256:<hex>" and its size in bytes
// (about 20 MiB).
func VM(dir string) (path, sha256sum string, size int64, err error) {
	ctx := context.Background()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", 0, fmt.Errorf("vm image: %w", err)
	}
	k, err := bootimg.FetchKernel(ctx, bootimg.CacheDir())
	if err != nil {
		return "", "", 0, fmt.Errorf("vm image: %w", err)
	}
	bb, err := os.ReadFile(bootimg.DefaultBusybox)
	if err != nil {
		return "", "", 0, fmt.Errorf("vm image: busybox (package busybox-static): %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%x\x00", vmVersion, hostimg.BuilderVersion, k.Version, vmInit, vmCmdline, sha256.Sum256(bb))
	recipe := hex.EncodeToString(h.Sum(nil))[:20]

	unlock, err := bootimg.LockDir(dir)
	if err != nil {
		return "", "", 0, err
	}
	defer unlock()
	path = filepath.Join(dir, "vm-"+recipe+".raw")
	meta := path + ".sha256"
	if b, err := os.ReadFile(meta); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if st, err := os.Stat(path); err == nil && strconv.FormatInt(st.Size(), 10) == f[1] {
				return path, f[0], st.Size(), nil
			}
		}
	}
	work, err := os.MkdirTemp(dir, ".build-vm-")
	if err != nil {
		return "", "", 0, err
	}
	defer os.RemoveAll(work)
	initrd := filepath.Join(work, hostimg.BootInitrd)
	f, err := os.Create(initrd)
	if err != nil {
		return "", "", 0, err
	}
	err = bootimg.BuildInitramfs(f, bootimg.Spec{Kernel: k, Modules: []string{}, Init: vmInit})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", 0, fmt.Errorf("vm image: %w", err)
	}
	raw := filepath.Join(work, "disk.raw")
	if err := hostimg.BootDisk(ctx, work, raw, k.Vmlinuz, initrd, vmCmdline); err != nil {
		return "", "", 0, fmt.Errorf("vm image: %w", err)
	}
	sum, size, err := fileSHA256(raw)
	if err != nil {
		return "", "", 0, err
	}
	if err := os.Chmod(raw, 0o644); err != nil {
		return "", "", 0, err
	}
	if err := os.Rename(raw, path); err != nil {
		return "", "", 0, err
	}
	if err := os.WriteFile(meta, fmt.Appendf(nil, "%s %d\n", sum, size), 0o644); err != nil {
		return "", "", 0, err
	}
	return path, sum, size, nil
}

func fileSHA256(name string) (string, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}

package hostimg

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rackcloud/rackcloud/lab/mounts"
)

// Boot loader files from Debian's syslinux and systemd-boot-efi.
const (
	syslinuxMBR  = "/usr/lib/syslinux/mbr/mbr.bin"
	systemdBoot  = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	fatVolumeID  = "52434254" // "RCBT": a fixed FAT serial
	diskSignalID = "0x52434b31"
)

// Names of the kernel and initramfs on the boot partition.
const (
	BootKernel = "vmlinuz"
	BootInitrd = "initrd.img"
)

// RootUUID is the fixed UUID of the kvm and docker images' root file
// system, which their fstab and kernel command line name.
const RootUUID = "5d1f6a3c-7b2e-4c8a-9e41-726b636c6f75"

// ConfigPartitionSize is the size of the last partition, where the
// installer writes the host config.
const ConfigPartitionSize = 1 << 20

const mib = 1 << 20

// diskSpec is what goes onto the disk.
type diskSpec struct {
	vmlinuz, initrd string // files for the boot partition
	rootImage       string // ext4 image for p2; empty for none
	cmdline         string
	kernel          string // the release of vmlinuz (uname -r)
}

func syslinuxCfg(cmdline string) string {
	return "DEFAULT rackcloud\nPROMPT 0\nTIMEOUT 0\nLABEL rackcloud\n  KERNEL /" + BootKernel +
		"\n  INITRD /" + BootInitrd + "\n  APPEND " + cmdline + "\n"
}

func loaderEntry(cmdline string) string {
	return "title rackcloud\nlinux /" + BootKernel + "\ninitrd /" + BootInitrd + "\noptions " + cmdline + "\n"
}

const loaderConf = "default rackcloud.conf\ntimeout 0\neditor no\n"

// assemble writes the whole disk to raw: an MBR with syslinux's boot
// code, p1 FAT (bootable, type c), p2 the root (type 83) when there is
// one, and last the zeroed config partition (hostconfig.PartitionType).
func (d *diskSpec) assemble(ctx context.Context, work, raw string) error {
	content := int64(0)
	for _, f := range []string{d.vmlinuz, d.initrd, systemdBoot} {
		st, err := os.Stat(f)
		if err != nil {
			return err
		}
		content += st.Size()
	}
	fatMiB := (content*5/4+mib-1)/mib + 4
	var rootMiB int64
	if d.rootImage != "" {
		st, err := os.Stat(d.rootImage)
		if err != nil {
			return err
		}
		rootMiB = (st.Size() + mib - 1) / mib
	}
	// Partitions start on MiB boundaries, the first at 1 MiB.
	fatStart := int64(1)
	rootStart := fatStart + fatMiB
	cfgStart := rootStart + rootMiB
	total := cfgStart + ConfigPartitionSize/mib
	sector := func(m int64) int64 { return m * mib / 512 }
	table := "label: dos\nlabel-id: " + diskSignalID + "\n" +
		fmt.Sprintf("start=%d, size=%d, type=c, bootable\n", sector(fatStart), sector(fatMiB))
	if rootMiB > 0 {
		table += fmt.Sprintf("start=%d, size=%d, type=83\n", sector(rootStart), sector(rootMiB))
	}
	table += fmt.Sprintf("start=%d, size=%d, type=da\n", sector(cfgStart), sector(ConfigPartitionSize/mib))

	fat := filepath.Join(work, "boot.fat")
	files := map[string]string{
		"syslinux.cfg":   syslinuxCfg(d.cmdline),
		"loader.conf":    loaderConf,
		"rackcloud.conf": loaderEntry(d.cmdline),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	in := func(n string) string { return filepath.Join(work, n) }
	steps := [][]string{
		{"truncate", "-s", strconv.FormatInt(total*mib, 10), raw},
		{"sfdisk", "-q", "--no-reread", "--no-tell-kernel", raw},
		{"dd", "if=" + syslinuxMBR, "of=" + raw, "bs=440", "count=1", "conv=notrunc", "status=none"},
		{"mkfs.vfat", "-C", "-h", strconv.FormatInt(sector(fatStart), 10), "-n", "BOOT", "-i", fatVolumeID, fat,
			strconv.FormatInt(fatMiB*1024, 10)},
		{"mcopy", "-i", fat, d.vmlinuz, "::/" + BootKernel},
		{"mcopy", "-i", fat, d.initrd, "::/" + BootInitrd},
		{"mcopy", "-i", fat, in("syslinux.cfg"), "::/syslinux.cfg"},
		{"mmd", "-i", fat, "::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries"},
		{"mcopy", "-i", fat, systemdBoot, "::/EFI/BOOT/BOOTX64.EFI"},
		{"mcopy", "-i", fat, in("loader.conf"), "::/loader/loader.conf"},
		{"mcopy", "-i", fat, in("rackcloud.conf"), "::/loader/entries/rackcloud.conf"},
		{"syslinux", "--install", fat},
		{"dd", "if=" + fat, "of=" + raw, "bs=1M", "seek=" + strconv.FormatInt(fatStart, 10), "conv=notrunc,sparse", "status=none"},
	}
	if rootMiB > 0 {
		steps = append(steps, []string{"dd", "if=" + d.rootImage, "of=" + raw, "bs=1M",
			"seek=" + strconv.FormatInt(rootStart, 10), "conv=notrunc,sparse", "status=none"})
	}
	for _, s := range steps {
		var stdin string
		if s[0] == "sfdisk" {
			stdin = table
		}
		if _, err := run(ctx, work, stdin, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// run runs a build tool; its output goes into the error when it fails.
func run(ctx context.Context, dir, stdin, name string, args ...string) (string, error) {
	c := exec.CommandContext(ctx, name, args...)
	c.Dir = dir
	c.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	if stdin != "" {
		c.Stdin = strings.NewReader(stdin)
	}
	var b bytes.Buffer
	c.Stdout, c.Stderr = &b, &b
	if err := c.Run(); err != nil {
		out := strings.TrimSpace(b.String())
		if len(out) > 2000 {
			out = "..." + out[len(out)-2000:]
		}
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return b.String(), nil
}

// removeAll deletes a build directory, first detaching whatever is still
// mounted under it (a chroot's /proc, /sys or /dev after an interrupted
// mmdebstrap): deleting through a bind-mounted /dev would delete the
// machine's device nodes. It refuses when a mount cannot be detached.
func removeAll(dir string) error {
	dir = filepath.Clean(dir)
	under := func() []string {
		out, err := mounts.Under(dir)
		if err != nil {
			return []string{"(mountinfo unreadable)"}
		}
		return out
	}
	for _, mp := range under() {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
	if left := under(); len(left) > 0 {
		return fmt.Errorf("still mounted under %s: %v; not deleting it", dir, left)
	}
	return os.RemoveAll(dir)
}

// BootDisk writes raw, a whole bootable MBR disk as the bm image has
// (syslinux for BIOS, systemd-boot for UEFI, the zeroed config partition
// last) holding vmlinuz and initrd booted with cmdline; work is a scratch
// directory for the FAT partition. Other image builders (lab/guestimg)
// use it for disks of their own.
func BootDisk(ctx context.Context, work, raw, vmlinuz, initrd, cmdline string) error {
	d := &diskSpec{vmlinuz: vmlinuz, initrd: initrd, cmdline: cmdline}
	return d.assemble(ctx, work, raw)
}

package hostimg

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"os"
	"path/filepath"

	"github.com/rackcloud/rackcloud/lab/bootimg"
)

// BMModules are the drivers the bm image's initramfs loads (with their
// dependencies): virtio (QEMU) and common server NICs and disks.
var BMModules = []string{"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "e1000", "e1000e",
	"ahci", "sd_mod", "nvme"}

// bmInit is the bm image's /init: it loads the drivers, lays the host
// config out (retrying until a disk holds one), brings up the host's NIC
// (the config's MAC, else the first) with udhcpc and runs the host agent
// forever.
const bmInit = bootimg.InitPrologue + `say() { echo "rackcloud-host: $*"; }
say "kernel $(uname -r) up at $(cut -d' ' -f1 /proc/uptime)s"
while read -r m; do
	insmod "/lib/modules/$m" || say "insmod $m failed"
done </etc/rackcloud/modules
ip link set lo up
until /` + bootimg.AgentPath + ` host-setup --root /; do
	say "no host configuration yet, retrying in 10s"
	sleep 10
done
MAC=$(sed -n 's/.*"mac": *"\([^"]*\)".*/\1/p' /etc/rackcloud/host.json | tr A-F a-f)
IF=""
for try in 1 2 3 4 5 6 7 8 9 10; do
	for d in /sys/class/net/*; do
		n=${d##*/}
		[ "$n" = lo ] && continue
		[ -z "$IF" ] && IF=$n
		if [ "$(cat "$d/address")" = "$MAC" ]; then IF=$n; break 2; fi
	done
	sleep 1
done
if [ -z "$IF" ]; then
	say "no NIC"
else
	ip link set "$IF" up
	say "dhcp on $IF"
	udhcpc -i "$IF" -b -t 15 -T 2 -s /etc/rackcloud/udhcpc.sh -x "hostname:$(hostname)" || say "udhcpc on $IF failed"
	say "address $(cat /run/rackcloud-ip 2>/dev/null) up at $(cut -d' ' -f1 /proc/uptime)s"
fi
while :; do
	/` + bootimg.AgentPath + ` host --root /
	say "host agent exited ($?), restarting in 5s"
	sleep 5
done
`

type bmRecipe struct {
	spec    bootimg.Spec
	busybox [sha256.Size]byte
}

func newBMRecipe(k *bootimg.Kernel, agent []byte) (*bmRecipe, error) {
	bb, err := os.ReadFile(bootimg.DefaultBusybox)
	if err != nil {
		return nil, fmt.Errorf("busybox (package busybox-static): %w", err)
	}
	return &bmRecipe{
		spec: bootimg.Spec{Kernel: k, Modules: BMModules, Init: bmInit,
			Files: []bootimg.File{{Path: bootimg.AgentPath, Mode: 0o755, Data: agent}}},
		busybox: sha256.Sum256(bb),
	}, nil
}

func (b *bmRecipe) hashInto(h hash.Hash) {
	fmt.Fprintf(h, "bm\x00%s\x00%q\x00%x\x00", bmInit, BMModules, b.busybox)
}

func (b *bmRecipe) build(_ context.Context, work string, p *progress) (*diskSpec, error) {
	p.phase("initramfs (busybox, %d modules, the agent)...", len(BMModules))
	initrd := filepath.Join(work, "initrd.img")
	f, err := os.Create(initrd)
	if err != nil {
		return nil, err
	}
	err = bootimg.BuildInitramfs(f, b.spec)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return &diskSpec{vmlinuz: b.spec.Kernel.Vmlinuz, initrd: initrd, kernel: b.spec.Kernel.Version}, nil
}

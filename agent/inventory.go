// Package agent is the program that runs on a machine booted into the
// inspection (or install) image: it reads the hardware inventory from /proc
// and /sys and reports it to rackcloud. Collecting is pure over an fs.FS so
// it is tested on fixture trees and on the real machine alike.
package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/rackcloud/rackcloud"
)

// Collect reads the inventory of the machine whose root file system is
// root (os.DirFS("/") on a real machine). CPU and memory are required;
// disks, NICs and DMI data are reported when present.
func Collect(root fs.FS) (rackcloud.Inventory, error) {
	var inv rackcloud.Inventory
	cpuinfo, err := fs.ReadFile(root, "proc/cpuinfo")
	if err != nil {
		return inv, fmt.Errorf("inventory: %w", err)
	}
	inv.CPUs, inv.CPUModel = ParseCPUInfo(string(cpuinfo))
	meminfo, err := fs.ReadFile(root, "proc/meminfo")
	if err != nil {
		return inv, fmt.Errorf("inventory: %w", err)
	}
	kib, err := ParseMemTotal(string(meminfo))
	if err != nil {
		return inv, fmt.Errorf("inventory: %w", err)
	}
	inv.MemoryMiB = kib / 1024
	if inv.CPUs == 0 {
		return inv, errors.New("inventory: no processor in /proc/cpuinfo")
	}
	inv.Disks = disks(root)
	inv.NICs = nics(root)
	inv.Vendor = readTrim(root, "sys/class/dmi/id/sys_vendor")
	inv.Product = readTrim(root, "sys/class/dmi/id/product_name")
	inv.Serial = readTrim(root, "sys/class/dmi/id/product_serial")
	inv.Firmware = "bios"
	if _, err := fs.Stat(root, "sys/firmware/efi"); err == nil {
		inv.Firmware = "uefi"
	}
	return inv, nil
}

// ParseCPUInfo returns the number of logical processors and the first
// model name in a /proc/cpuinfo text.
func ParseCPUInfo(s string) (n int, model string) {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			n++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		}
	}
	return n, model
}

// ParseMemTotal returns MemTotal in KiB from a /proc/meminfo text.
func ParseMemTotal(s string) (int64, error) {
	for _, line := range strings.Split(s, "\n") {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || v <= 0 {
			return 0, fmt.Errorf("bad MemTotal %q", strings.TrimSpace(rest))
		}
		if len(f) > 1 && f[1] != "kB" {
			return 0, fmt.Errorf("MemTotal unit %q, want kB", f[1])
		}
		return v, nil
	}
	return 0, errors.New("no MemTotal in /proc/meminfo")
}

// disks lists block devices backed by a device (skipping loop, zram, ram
// and device-mapper, which have no "device" link).
func disks(root fs.FS) []rackcloud.InventoryDisk {
	ents, err := fs.ReadDir(root, "sys/block")
	if err != nil {
		return nil
	}
	var out []rackcloud.InventoryDisk
	for _, e := range ents {
		dir := path.Join("sys/block", e.Name())
		if _, err := fs.Stat(root, path.Join(dir, "device")); err != nil {
			continue
		}
		sectors, err := strconv.ParseInt(readTrim(root, path.Join(dir, "size")), 10, 64)
		if err != nil {
			continue
		}
		out = append(out, rackcloud.InventoryDisk{
			Name:       e.Name(),
			SizeBytes:  sectors * 512, // /sys/block/*/size is in 512-byte units
			Rotational: readTrim(root, path.Join(dir, "queue/rotational")) == "1",
			Model:      readTrim(root, path.Join(dir, "device/model")),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// nics lists network interfaces backed by a device, with their MAC.
func nics(root fs.FS) []rackcloud.InventoryNIC {
	ents, err := fs.ReadDir(root, "sys/class/net")
	if err != nil {
		return nil
	}
	var out []rackcloud.InventoryNIC
	for _, e := range ents {
		dir := path.Join("sys/class/net", e.Name())
		if _, err := fs.Stat(root, path.Join(dir, "device")); err != nil {
			continue
		}
		mac, err := rackcloud.NormalizeMAC(readTrim(root, path.Join(dir, "address")))
		if err != nil {
			continue
		}
		speed, _ := strconv.Atoi(readTrim(root, path.Join(dir, "speed")))
		if speed < 0 {
			speed = 0
		}
		out = append(out, rackcloud.InventoryNIC{Name: e.Name(), MAC: mac, Speed: speed})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func readTrim(root fs.FS, name string) string {
	b, err := fs.ReadFile(root, name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

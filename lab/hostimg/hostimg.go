// Package hostimg builds the OS images rackcloud installs on hosts, one
// per role: "bm" (a tiny image: the Debian kernel and a busybox initramfs
// running the host agent), "kvm" and "docker" (Debian bookworm with
// systemd and libvirtd or dockerd, built with mmdebstrap). Every image is
// a whole MBR disk: p1 a FAT boot partition that boots under BIOS
// (syslinux) and UEFI (systemd-boot as \EFI\BOOT\BOOTX64.EFI), p2 the ext4
// root (kvm, docker), and last a 1 MiB zeroed partition of type
// hostconfig.PartitionType that the installer fills in (hostconfig.Write).
// At boot the agent's host-setup lays the configuration out before the
// role's daemon starts, and `rackcloud-agent host` heartbeats to the
// boot service.
//
// Images are written as raw+zstd (imagefmt.Compress) and cached by a hash
// of their recipe (role, packages, scripts, the agent's bytes, the kernel
// version, BuilderVersion), so a rebuild happens only when one of those
// changes. Builds use userspace tools only (mmdebstrap, mke2fs -d,
// mkfs.vfat + mtools, syslinux, sfdisk, dd): no loop devices or mounts.
//
// Measured on the lab machine (2 cores, QEMU under TCG, other tests
// running beside):
//
//	build, cold        bm 1 s (9 s under -race); docker 2m26-2m29 (mmdebstrap 2m02-2m05,
//	                   ext4 7 s, disk 5 s, zstd 11 s), 2236 MiB raw, 311 MiB raw+zstd;
//	                   kvm 2m26, 2172 MiB raw, 276 MiB; bm 22 MiB raw, 13 MiB
//	build, cached      under 1 s (the agent's go build from the build cache), 2 s under -race
//	write onto a disk  bm 30 ms; docker and kvm 2 s (16-24 s under -race)
//	boot to heartbeat  bm BIOS 11-13 s, UEFI 16-20 s; docker BIOS 48-69 s (2m53 at load 8), its _ping over
//	                   mutual TLS within a second after; kvm UEFI 37-63 s, libvirtd over
//	                   TLS within a second after; a busybox container imported, started
//	                   and waited for over the API 21 s (loaded)
//
// The root file system is made with 1 GiB and 30% free and does not
// grow to the disk: the config partition follows it.
package hostimg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/imagefmt"
	"github.com/rackcloud/rackcloud/lab/bootimg"
)

// BuilderVersion is hashed into every recipe: bump it when the build
// steps change in a way the recipe's other inputs do not show.
const BuilderVersion = "hostimg-v1"

// EnvCacheDir overrides DefaultCacheDir.
const EnvCacheDir = "RACKCLOUD_IMAGE_CACHE"

// Roles are the roles Build makes images for.
var Roles = []rackcloud.HostRole{rackcloud.RoleBareMetal, rackcloud.RoleKVM, rackcloud.RoleDocker}

// DefaultCacheDir returns $RACKCLOUD_IMAGE_CACHE, else "images" beside
// bootimg.CacheDir() (/var/cache/rackcloud/images).
func DefaultCacheDir() string {
	if d := os.Getenv(EnvCacheDir); d != "" {
		return d
	}
	return filepath.Join(filepath.Dir(bootimg.CacheDir()), "images")
}

// Options says which image to build.
type Options struct {
	Role rackcloud.HostRole
	// CacheDir keeps built images, one directory per role; empty means
	// DefaultCacheDir().
	CacheDir string
	// Progress, when set, gets one line per build phase with the time
	// elapsed.
	Progress io.Writer
	// Log gets the same as structured records; nil discards them.
	Log *slog.Logger
	// Salt is mixed into the recipe: a different salt is a different
	// image (tests use it to force a build of their own).
	Salt string
}

// Image is a built host image.
type Image struct {
	Role rackcloud.HostRole `json:"role"`
	// Path is the raw+zstd image (imagefmt.Compress).
	Path string `json:"path"`
	// RawPath is the raw disk, when kept (empty otherwise).
	RawPath string `json:"raw_path,omitempty"`
	// RawSize and SHA256 ("sha256:<hex>") are the raw disk's, what an
	// installer writes and reads back.
	RawSize int64  `json:"raw_size"`
	SHA256  string `json:"sha256"`
	// Cached says Build found the image already built.
	Cached bool `json:"cached"`
	// Recipe is the hash of everything the image is built from.
	Recipe string `json:"recipe"`
	// BuildSeconds is how long the build that made the image took.
	BuildSeconds float64 `json:"build_seconds"`
	// Kernel is the kernel release in the image (uname -r).
	Kernel string `json:"kernel"`
}

// Build returns the image for o.Role, building it unless an image of
// the same recipe is in the cache. Concurrent callers, in this process or
// others, share one build (a lock file per role); a finished image is
// renamed into place, so a crashed build leaves nothing half-written.
func Build(ctx context.Context, o Options) (*Image, error) {
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r, err := newRecipe(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("host image %s: %w", o.Role, err)
	}
	dir := filepath.Join(o.CacheDir, string(o.Role))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("host image cache: %w", err)
	}
	unlock, err := bootimg.LockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	meta := filepath.Join(dir, r.hash+".json")
	if img, err := readMeta(meta); err == nil {
		img.Cached = true
		o.Log.Info("host image cached", "role", o.Role, "recipe", r.hash, "path", img.Path)
		return img, nil
	}
	p := &progress{w: o.Progress, log: o.Log, role: o.Role, start: time.Now()}
	img, err := r.build(ctx, dir, p)
	if err != nil {
		return nil, fmt.Errorf("host image %s: %w", o.Role, err)
	}
	img.BuildSeconds = time.Since(p.start).Seconds()
	if err := writeMeta(meta, img); err != nil {
		return nil, err
	}
	prune(dir, 3)
	p.phase("done: %s (%d MiB raw, sha256 %s)", img.Path, img.RawSize>>20, strings.TrimPrefix(img.SHA256, "sha256:")[:12])
	return img, nil
}

// progress reports build phases.
type progress struct {
	w     io.Writer
	log   *slog.Logger
	role  rackcloud.HostRole
	start time.Time
}

func (p *progress) phase(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	el := time.Since(p.start).Round(100 * time.Millisecond)
	if p.w != nil {
		fmt.Fprintf(p.w, "hostimg: %s: [%s] %s\n", p.role, el, msg)
	}
	p.log.Info("host image build", "role", p.role, "elapsed", el, "phase", msg)
}

// recipe is everything an image is built from.
type recipe struct {
	role    rackcloud.HostRole
	kernel  *bootimg.Kernel
	agent   []byte
	cmdline string
	// bm: the initramfs; kvm, docker: the mmdebstrap run.
	bm     *bmRecipe
	debian *debianRecipe
	hash   string
}

func newRecipe(ctx context.Context, o Options) (*recipe, error) {
	k, err := bootimg.FetchKernel(ctx, bootimg.CacheDir())
	if err != nil {
		return nil, err
	}
	agent, err := bootimg.Agent(ctx)
	if err != nil {
		return nil, err
	}
	r := &recipe{role: o.Role, kernel: k, agent: agent}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", BuilderVersion, o.Role, k.Version, o.Salt)
	fmt.Fprintf(h, "agent\x00%x\x00", sha256.Sum256(agent))
	switch o.Role {
	case rackcloud.RoleBareMetal:
		r.cmdline = "console=tty0 console=ttyS0,115200"
		r.bm, err = newBMRecipe(k, agent)
		if err != nil {
			return nil, err
		}
		r.bm.hashInto(h)
	case rackcloud.RoleKVM, rackcloud.RoleDocker:
		r.cmdline = "root=UUID=" + RootUUID + " ro console=tty0 console=ttyS0,115200"
		r.debian, err = newDebianRecipe(o.Role, agent)
		if err != nil {
			return nil, err
		}
		r.debian.hashInto(h)
	default:
		return nil, fmt.Errorf("unknown role %q (want bm, kvm or docker)", o.Role)
	}
	fmt.Fprintf(h, "cmdline\x00%s\x00", r.cmdline)
	fmt.Fprintf(h, "bootfiles\x00%s\x00%s\x00", syslinuxCfg(r.cmdline), loaderEntry(r.cmdline))
	r.hash = hex.EncodeToString(h.Sum(nil))[:20]
	return r, nil
}

// build makes the image in dir.
func (r *recipe) build(ctx context.Context, dir string, p *progress) (*Image, error) {
	work, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := removeAll(work); err != nil {
			p.log.Error("host image: build directory left behind", "dir", work, "err", err)
		}
	}()
	var d *diskSpec
	switch {
	case r.bm != nil:
		d, err = r.bm.build(ctx, work, p)
	default:
		d, err = r.debian.build(ctx, work, p)
	}
	if err != nil {
		return nil, err
	}
	d.cmdline = r.cmdline
	raw := filepath.Join(work, "disk.raw")
	p.phase("disk: boot partition, partition table, boot loaders...")
	if err := d.assemble(ctx, work, raw); err != nil {
		return nil, err
	}
	p.phase("compress (raw+zstd)...")
	final := filepath.Join(dir, r.hash+".img.zst")
	n, sum, err := compressFile(raw, final)
	if err != nil {
		return nil, err
	}
	return &Image{Role: r.role, Path: final, RawSize: n, SHA256: "sha256:" + hex.EncodeToString(sum[:]),
		Recipe: r.hash, Kernel: d.kernel}, nil
}

// compressFile writes raw as raw+zstd to dst, atomically.
func compressFile(raw, dst string) (int64, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	in, err := os.Open(raw)
	if err != nil {
		return 0, sum, err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return 0, sum, err
	}
	defer os.Remove(tmp.Name())
	n, sum, err := imagefmt.Compress(tmp, in)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return 0, sum, fmt.Errorf("compress %s: %w", raw, err)
	}
	return n, sum, nil
}

func readMeta(path string) (*Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, err
	}
	st, err := os.Stat(img.Path)
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 || img.SHA256 == "" {
		return nil, errors.New("incomplete image")
	}
	// Touch it: prune keeps the most recently used images.
	now := time.Now()
	_ = os.Chtimes(path, now, now)
	return &img, nil
}

func writeMeta(path string, img *Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// prune deletes all but the keep most recently used images in dir (other
// worktrees' agents make other recipes, so a few are kept).
func prune(dir string, keep int) {
	metas, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	type m struct {
		path string
		t    time.Time
	}
	var ms []m
	for _, p := range metas {
		if st, err := os.Stat(p); err == nil {
			ms = append(ms, m{p, st.ModTime()})
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].t.After(ms[j].t) })
	for i := keep; i < len(ms); i++ {
		base := strings.TrimSuffix(ms[i].path, ".json")
		_ = os.Remove(base + ".img.zst")
		_ = os.Remove(ms[i].path)
	}
}

package hostimg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostconfig"
	"github.com/rackcloud/rackcloud/imagefmt"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/stretchr/testify/require"
)

// TestBMLayout builds the bm image into a cache of its own and checks
// the disk: an active FAT p1 with the boot loaders and the kernel, the
// zeroed config partition last; a second build is cached, another recipe
// another image.
func TestBMLayout(t *testing.T) {
	labtest.Need(t, "sfdisk", "mkfs.vfat", "mcopy", "syslinux")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cache := t.TempDir()
	var prog bytes.Buffer
	start := time.Now()
	img, err := Build(ctx, Options{Role: rackcloud.RoleBareMetal, CacheDir: cache, Progress: &prog})
	require.NoError(t, err)
	t.Logf("cold bm build: %s\n%s", time.Since(start).Round(time.Millisecond), prog.String())
	require.False(t, img.Cached)
	require.Contains(t, prog.String(), "hostimg: bm: ")
	require.True(t, strings.HasPrefix(img.SHA256, "sha256:"))
	require.LessOrEqual(t, img.RawSize, int64(32<<20), "a tiny image")

	// raw+zstd: one independent frame per imagefmt.ChunkSize of disk.
	zf, err := os.Open(img.Path)
	require.NoError(t, err)
	frames := imagefmt.NewFrames(zf)
	n := 0
	for ; ; n++ {
		if _, err := frames.Next(nil); err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
	}
	zf.Close()
	require.Equal(t, int((img.RawSize+imagefmt.ChunkSize-1)/imagefmt.ChunkSize), n)

	disk := filepath.Join(t.TempDir(), "disk.raw")
	require.NoError(t, WriteDisk(img.Path, disk, 0))
	f, err := os.Open(disk)
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	require.Equal(t, img.RawSize, st.Size())
	sum := sha256.New()
	_, err = io.Copy(sum, f)
	require.NoError(t, err)
	require.Equal(t, img.SHA256, "sha256:"+hex.EncodeToString(sum.Sum(nil)), "the disk reads back as the image's checksum")
	mbr := make([]byte, 512)
	_, err = f.ReadAt(mbr, 0)
	require.NoError(t, err)
	ps, err := hostconfig.Partitions(mbr)
	require.NoError(t, err)
	require.Len(t, ps, 2)
	require.Equal(t, byte(0x0c), ps[0].Type)
	require.Equal(t, byte(0x80), mbr[446], "p1 is active")
	last := ps[len(ps)-1]
	require.Equal(t, byte(hostconfig.PartitionType), last.Type)
	require.Equal(t, int64(ConfigPartitionSize), last.Size)
	require.Equal(t, img.RawSize, last.Offset+last.Size, "the config partition ends the disk")
	cfgBytes := make([]byte, last.Size)
	_, err = f.ReadAt(cfgBytes, last.Offset)
	require.NoError(t, err)
	require.Equal(t, make([]byte, last.Size), cfgBytes, "the config partition is zero")
	_, err = hostconfig.Read(f)
	require.ErrorIs(t, err, hostconfig.ErrNone)

	// The boot partition, read with mtools from the disk itself.
	out, err := exec.Command("mdir", "-a", "-b", "-/", "-i", disk+"@@"+itoa(ps[0].Offset), "::/").CombinedOutput()
	require.NoError(t, err, string(out))
	for _, want := range []string{"::/vmlinuz", "::/initrd.img", "::/syslinux.cfg", "::/ldlinux.sys",
		"::/EFI/BOOT/BOOTX64.EFI", "::/loader/entries/rackcloud.conf"} {
		require.Contains(t, string(out), want)
	}
	cfg, err := exec.Command("mtype", "-i", disk+"@@"+itoa(ps[0].Offset), "::/syslinux.cfg").CombinedOutput()
	require.NoError(t, err, string(cfg))
	require.True(t, strings.HasSuffix(strings.TrimSpace(string(cfg)), "console=tty0 console=ttyS0,115200"), string(cfg))

	again, err := Build(ctx, Options{Role: rackcloud.RoleBareMetal, CacheDir: cache})
	require.NoError(t, err)
	require.True(t, again.Cached)
	again.Cached = false
	require.Equal(t, img, again, "a cached build returns the same image")

	other, err := Build(ctx, Options{Role: rackcloud.RoleBareMetal, CacheDir: cache, Salt: "test"})
	require.NoError(t, err)
	require.False(t, other.Cached)
	require.NotEqual(t, img.Recipe, other.Recipe)
	require.NotEqual(t, img.Path, other.Path)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestAptMirrors(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sources.list"), []byte(
		"# comment\ndeb [signed-by=/k.gpg arch=amd64] http://mirror.local/debian bookworm main contrib\n"+
			"deb-src http://mirror.local/debian bookworm main\ndeb http://other/ubuntu jammy main\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sources.list.d", "debian.sources"), []byte(
		"Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"+
			"Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sources.list.d", "x.list.disabled"), []byte(
		"deb http://disabled/debian bookworm main\n"), 0o644))
	got, err := AptMirrors(dir)
	require.NoError(t, err)
	require.Equal(t, []string{
		"deb http://mirror.local/debian bookworm main contrib",
		"deb http://deb.example/debian bookworm main",
		"deb http://deb.example/debian bookworm-updates main",
	}, got)
	got, err = AptMirrors(t.TempDir())
	require.NoError(t, err)
	require.Equal(t, []string{"deb http://deb.debian.org/debian bookworm main"}, got)
}

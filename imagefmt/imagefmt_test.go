package imagefmt_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/rackcloud/rackcloud/imagefmt"
)

// disk is 10.5 chunks of mixed data: random, zeros, text.
func disk() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, imagefmt.ChunkSize*21/2)
	for i := 0; i < len(b)/3; i++ {
		b[i] = byte(r.Uint32())
	}
	for i := len(b) * 2 / 3; i < len(b); i++ {
		b[i] = "rackcloud "[i%10]
	}
	return b
}

func split(t *testing.T, z []byte) (frames [][]byte, offsets []int64) {
	t.Helper()
	fr := imagefmt.NewFrames(bytes.NewReader(z))
	for {
		off := fr.Offset()
		f, err := fr.Next(nil)
		if errors.Is(err, io.EOF) {
			return frames, offsets
		}
		if err != nil {
			t.Fatalf("frame at %d: %v", off, err)
		}
		frames, offsets = append(frames, f), append(offsets, off)
	}
}

func TestCompressFramesRoundTrip(t *testing.T) {
	raw := disk()
	var z bytes.Buffer
	n, sum, err := imagefmt.Compress(&z, bytes.NewReader(raw))
	if err != nil || n != int64(len(raw)) || sum != sha256.Sum256(raw) {
		t.Fatalf("Compress = %d, %x, %v", n, sum, err)
	}
	frames, offsets := split(t, z.Bytes())
	if len(frames) != 11 {
		t.Fatalf("%d frames, want 11", len(frames))
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	var out []byte
	for i, f := range frames {
		if !bytes.Equal(f, z.Bytes()[offsets[i]:offsets[i]+int64(len(f))]) {
			t.Fatalf("frame %d is not the stream's bytes at its offset", i)
		}
		d, err := dec.DecodeAll(f, nil)
		if err != nil {
			t.Fatalf("frame %d alone: %v", i, err)
		}
		out = append(out, d...)
	}
	if !bytes.Equal(out, raw) {
		t.Fatal("frames decoded one by one differ from the disk")
	}
	// A stream cut inside a frame says so.
	fr := imagefmt.NewFrames(bytes.NewReader(z.Bytes()[:offsets[3]+100]))
	for i := 0; i < 3; i++ {
		if _, err := fr.Next(nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fr.Next(nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut frame: %v", err)
	}
	if _, err := imagefmt.NewFrames(bytes.NewReader([]byte("not zstd at all"))).Next(nil); !errors.Is(err, imagefmt.ErrFormat) {
		t.Fatalf("garbage: %v", err)
	}
}

// The zstd command-line tool (the reference implementation) decodes what
// Compress writes, and Frames splits what it writes (skippable frames
// included).
func TestZstdCLI(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd not installed (lab/debian-packages.txt installs it)")
	}
	dir := t.TempDir()
	raw := disk()
	var z bytes.Buffer
	if _, _, err := imagefmt.Compress(&z, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "disk.zst")
	if err := os.WriteFile(in, z.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("zstd", "-dc", in).Output()
	if err != nil || !bytes.Equal(out, raw) {
		t.Fatalf("zstd -d: %v (equal %v)", err, bytes.Equal(out, raw))
	}
	if err := os.WriteFile(filepath.Join(dir, "disk"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cli, err := exec.Command("zstd", "-3", "-c", filepath.Join(dir, "disk")).Output()
	if err != nil {
		t.Fatal(err)
	}
	skip := []byte{0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c'}
	frames, _ := split(t, append(append(skip, cli...), cli...))
	if len(frames) != 2 {
		t.Fatalf("%d frames in two zstd files after a skippable frame, want 2", len(frames))
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	d, err := dec.DecodeAll(frames[1], nil)
	if err != nil || !bytes.Equal(d, raw) {
		t.Fatalf("CLI frame: %v", err)
	}
}

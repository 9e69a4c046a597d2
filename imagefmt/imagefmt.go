// Package imagefmt is the format of host images on the wire: a raw disk,
// or a raw disk compressed as a sequence of independent zstd frames
// ("raw+zstd"), each holding ChunkSize bytes of the disk (the last one
// less). Independent frames let an installer whose download dropped
// resume at the frame it was in with an HTTP Range request, instead of
// from the start; any zstd file is still accepted (a single-frame one
// resumes from its start).
//
// An image's checksum and size are those of the raw disk: what the
// installer writes and reads back.
package imagefmt

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// ChunkSize is the disk bytes in each frame Compress writes.
const ChunkSize = 4 << 20

// Compress reads a raw disk from src and writes it to dst as independent
// zstd frames of ChunkSize disk bytes. It returns the disk's size and
// SHA-256.
func Compress(dst io.Writer, src io.Reader) (int64, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(false))
	if err != nil {
		return 0, sum, err
	}
	defer enc.Close()
	h := sha256.New()
	buf := make([]byte, ChunkSize)
	var out []byte
	var n int64
	for {
		k, rerr := io.ReadFull(src, buf)
		if k > 0 {
			h.Write(buf[:k])
			n += int64(k)
			out = enc.EncodeAll(buf[:k], out[:0])
			if _, err := dst.Write(out); err != nil {
				return n, sum, err
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return n, sum, rerr
		}
	}
	copy(sum[:], h.Sum(nil))
	return n, sum, nil
}

// Frame magic numbers (RFC 8878).
const (
	frameMagic         = 0xFD2FB528
	skippableMagicMask = 0xFFFFFFF0
	skippableMagic     = 0x184D2A50
)

// Frames splits a zstd stream into its frames, without decoding them.
type Frames struct {
	r   *bufio.Reader
	off int64
}

// NewFrames reads frames from r.
func NewFrames(r io.Reader) *Frames { return &Frames{r: bufio.NewReaderSize(r, 1<<20)} }

// Offset is the stream offset of the next frame.
func (f *Frames) Offset() int64 { return f.off }

// ErrFormat says the stream is not zstd.
var ErrFormat = errors.New("not a zstd stream")

// Next returns the next data frame's bytes (appended to buf[:0]),
// skipping skippable frames; io.EOF at the clean end of the stream, and
// io.ErrUnexpectedEOF when it ends inside a frame.
func (f *Frames) Next(buf []byte) ([]byte, error) {
	for {
		var m [4]byte
		if _, err := io.ReadFull(f.r, m[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		}
		magic := binary.LittleEndian.Uint32(m[:])
		if magic&skippableMagicMask == skippableMagic {
			var l [4]byte
			if _, err := io.ReadFull(f.r, l[:]); err != nil {
				return nil, io.ErrUnexpectedEOF
			}
			n := int64(binary.LittleEndian.Uint32(l[:]))
			if _, err := io.CopyN(io.Discard, f.r, n); err != nil {
				return nil, io.ErrUnexpectedEOF
			}
			f.off += 8 + n
			continue
		}
		if magic != frameMagic {
			return nil, fmt.Errorf("%w: bad magic %#x at offset %d", ErrFormat, magic, f.off)
		}
		out := append(buf[:0], m[:]...)
		out, err := f.frameRest(out)
		if err != nil {
			return nil, err
		}
		f.off += int64(len(out))
		return out, nil
	}
}

// frameRest reads a frame after its magic: header, blocks, checksum.
func (f *Frames) frameRest(out []byte) ([]byte, error) {
	read := func(n int) ([]byte, error) {
		start := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := io.ReadFull(f.r, out[start:]); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
		return out[start:], nil
	}
	d, err := read(1)
	if err != nil {
		return nil, err
	}
	desc := d[0]
	fcsFlag, single, checksum, dictFlag := desc>>6, desc>>5&1 == 1, desc>>2&1 == 1, desc&3
	if desc>>3&1 == 1 {
		return nil, fmt.Errorf("%w: reserved bit set in a frame header at offset %d", ErrFormat, f.off)
	}
	n := []int{0, 1, 2, 4}[dictFlag]
	if !single {
		n++ // window descriptor
	}
	switch fcsFlag {
	case 0:
		if single {
			n++
		}
	case 1:
		n += 2
	case 2:
		n += 4
	case 3:
		n += 8
	}
	if _, err := read(n); err != nil {
		return nil, err
	}
	for {
		h, err := read(3)
		if err != nil {
			return nil, err
		}
		bh := uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16
		last, typ, size := bh&1 == 1, bh>>1&3, int(bh>>3)
		switch typ {
		case 1: // RLE: one byte repeated size times
			size = 1
		case 3:
			return nil, fmt.Errorf("%w: reserved block type at offset %d", ErrFormat, f.off)
		}
		if size > 1<<17+64 {
			return nil, fmt.Errorf("%w: block of %d bytes at offset %d", ErrFormat, size, f.off)
		}
		if _, err := read(size); err != nil {
			return nil, err
		}
		if last {
			break
		}
	}
	if checksum {
		if _, err := read(4); err != nil {
			return nil, err
		}
	}
	return out, nil
}

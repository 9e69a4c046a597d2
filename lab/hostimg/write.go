package hostimg

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// WriteDisk decompresses the raw+zstd image at image onto the disk file
// disk (created when missing), skipping runs of zeros so that a disk
// file stays sparse, as an installer writing a blank disk would; size,
// when larger than the image, is the disk's size (a blank disk bigger
// than the image). It returns an error if the image is larger than size.
func WriteDisk(image, disk string, size int64) error {
	in, err := os.Open(image)
	if err != nil {
		return err
	}
	defer in.Close()
	dec, err := zstd.NewReader(in)
	if err != nil {
		return err
	}
	defer dec.Close()
	out, err := os.OpenFile(disk, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	const block = 64 << 10
	buf := make([]byte, block)
	zero := make([]byte, block)
	var off int64
	for {
		n, rerr := io.ReadFull(dec, buf)
		if n > 0 {
			if !bytes.Equal(buf[:n], zero[:n]) {
				if _, err := out.WriteAt(buf[:n], off); err != nil {
					return err
				}
			}
			off += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("decompress %s: %w", image, rerr)
		}
	}
	if size != 0 && size < off {
		return fmt.Errorf("image %s is %d bytes, more than the disk's %d", image, off, size)
	}
	if err := out.Truncate(max(size, off)); err != nil {
		return err
	}
	return out.Close()
}

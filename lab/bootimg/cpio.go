package bootimg

import (
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// CPIOWriter writes a cpio archive in the "newc" format the Linux kernel
// unpacks as an initramfs. Names are relative ("bin/busybox"); parent
// directories must be written before their children.
type CPIOWriter struct {
	w     io.Writer
	ino   uint32
	mtime time.Time
	names map[string]bool
	err   error
}

// NewCPIOWriter returns a writer that stamps every entry with mtime.
func NewCPIOWriter(w io.Writer, mtime time.Time) *CPIOWriter {
	return &CPIOWriter{w: w, ino: 1, mtime: mtime, names: map[string]bool{}}
}

// Mode bits of cpio entries (the S_IF* values of stat(2)).
const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
)

// Dir adds a directory.
func (c *CPIOWriter) Dir(name string, perm uint32) error {
	return c.entry(name, modeDir|perm&0o7777, nil, 0, 0)
}

// File adds a regular file holding data.
func (c *CPIOWriter) File(name string, perm uint32, data []byte) error {
	return c.entry(name, modeFile|perm&0o7777, data, 0, 0)
}

// Symlink adds a symbolic link name -> target.
func (c *CPIOWriter) Symlink(name, target string) error {
	return c.entry(name, modeSymlink|0o777, []byte(target), 0, 0)
}

// CharDev adds a character device node (e.g. dev/console 5:1), so that the
// kernel can open the console before devtmpfs is mounted.
func (c *CPIOWriter) CharDev(name string, perm uint32, major, minor uint32) error {
	return c.entry(name, modeChar|perm&0o7777, nil, major, minor)
}

// Has reports whether name was already written.
func (c *CPIOWriter) Has(name string) bool { return c.names[cleanName(name)] }

// Close writes the trailer. It does not close the underlying writer.
func (c *CPIOWriter) Close() error {
	if c.err != nil {
		return c.err
	}
	c.writeHeader("TRAILER!!!", 0, 0, 0, 0, 0, 1)
	return c.err
}

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func (c *CPIOWriter) entry(name string, mode uint32, data []byte, major, minor uint32) error {
	if c.err != nil {
		return c.err
	}
	n := cleanName(name)
	if n == "" || n == "." {
		return fmt.Errorf("cpio: bad entry name %q", name)
	}
	if c.names[n] {
		return fmt.Errorf("cpio: duplicate entry %q", n)
	}
	if dir := path.Dir(n); dir != "." && !c.names[dir] {
		return fmt.Errorf("cpio: entry %q before its directory %q", n, dir)
	}
	c.names[n] = true
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	c.ino++
	c.writeHeader(n, c.ino, mode, uint32(len(data)), major, minor, nlink)
	if c.err == nil && len(data) > 0 {
		_, c.err = c.w.Write(data)
		c.pad(len(data))
	}
	return c.err
}

func (c *CPIOWriter) writeHeader(name string, ino, mode, size, major, minor, nlink uint32) {
	if c.err != nil {
		return
	}
	mtime := uint32(0)
	if !c.mtime.IsZero() {
		mtime = uint32(c.mtime.Unix())
	}
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, mtime, size, 0, 0, major, minor, len(name)+1, 0)
	if _, c.err = io.WriteString(c.w, h+name+"\x00"); c.err != nil {
		return
	}
	c.pad(len(h) + len(name) + 1)
}

func (c *CPIOWriter) pad(n int) {
	if c.err != nil {
		return
	}
	if r := n % 4; r != 0 {
		_, c.err = c.w.Write(make([]byte, 4-r))
	}
}

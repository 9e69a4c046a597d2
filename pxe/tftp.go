package pxe

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path"
	"strings"
	"time"

	"github.com/pin/tftp/v3"
)

// cleanTFTPPath turns a requested file name into a path relative to the
// TFTP root, or an error. Leading slashes are dropped and backslashes are
// path separators (Windows-style clients); ".." may not leave the root and
// control characters are refused.
func cleanTFTPPath(name string) (string, error) {
	if name == "" || len(name) > 1024 {
		return "", fmt.Errorf("bad file name length %d", len(name))
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("control character in file name %q", name)
		}
	}
	n := strings.ReplaceAll(name, "\\", "/")
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("file name %q leaves the root", name)
		}
	}
	n = strings.TrimPrefix(path.Clean("/"+n), "/")
	if n == "" || n == "." {
		return "", fmt.Errorf("file name %q names the root", name)
	}
	return n, nil
}

// tftpRead serves one read request from the TFTP root (os.Root: neither
// ".." nor symlinks can leave it).
func (s *Service) tftpRead(filename string, rf io.ReaderFrom) error {
	start := time.Now()
	var peer netip.Addr
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ra := ot.RemoteAddr()
		peer, _ = netip.AddrFromSlice(ra.IP)
		peer = peer.Unmap()
	}
	mac := s.macForIP(peer)
	// The requested name and the client's error messages are the peer's
	// text: clean them before they reach an event or the log.
	ev := Event{MAC: mac, File: cleanText(filename, maxPeerText)}
	if peer.IsValid() {
		ev.IP = peer.String()
	}
	fail := func(err error) error {
		ev.Kind, ev.Error, ev.Time = EventTFTPError, cleanText(err.Error(), maxPeerText), time.Time{}
		s.m.tftpTransfers.WithLabelValues("error").Inc()
		s.record(ev)
		s.log.Info("tftp: refused", "file", ev.File, "peer", peer, "mac", mac, "err", ev.Error)
		return err
	}
	name, err := cleanTFTPPath(filename)
	if err != nil {
		return fail(err)
	}
	f, err := s.tftpRoot.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fail(fmt.Errorf("file not found: %s", name))
		}
		return fail(fmt.Errorf("cannot open %s", name))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return fail(fmt.Errorf("not a regular file: %s", name))
	}
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(st.Size())
	}
	ev.Kind, ev.Bytes = EventTFTPStart, st.Size()
	s.record(ev)
	// One read per block would be a syscall per 1.4 kB sent: buffer.
	n, err := rf.ReadFrom(bufio.NewReaderSize(f, 128<<10))
	ev.Time, ev.Bytes, ev.Duration = time.Time{}, n, time.Since(start)
	if err != nil {
		ev.Kind, ev.Error = EventTFTPError, cleanText(err.Error(), maxPeerText)
		result := "error"
		if strings.Contains(err.Error(), "code=8") {
			// RFC 2347: the client refused our options. UEFI firmware does
			// this on purpose after learning the size (tsize).
			result, ev.Detail = "aborted", "client aborted after option negotiation (UEFI size probe)"
		}
		s.m.tftpTransfers.WithLabelValues(result).Inc()
		s.record(ev)
		// The transfer is over either way; returning the error would only
		// make the library send an error packet to a client that left.
		return nil
	}
	ev.Kind = EventTFTPDone
	s.m.tftpTransfers.WithLabelValues("done").Inc()
	s.m.tftpBytes.Add(float64(n))
	s.record(ev)
	return nil
}

// newTFTPServer configures a read-only pin/tftp server.
func (s *Service) newTFTPServer() *tftp.Server {
	t := tftp.NewServer(s.tftpRead, nil)
	t.SetTimeout(s.cfg.TFTPTimeout)
	t.SetRetries(s.cfg.TFTPRetries)
	t.SetBlockSize(s.cfg.TFTPBlockSize)
	return t
}

// serveTFTP runs the TFTP server on conn. pin/tftp opens one socket per
// transfer from this goroutine, so its thread is moved into the service's
// network namespace first.
func (s *Service) serveTFTP(t *tftp.Server, conn *net.UDPConn) error {
	restore, err := lockThreadInNetns(s.cfg.Netns)
	if err != nil {
		return err
	}
	defer restore()
	return t.Serve(conn)
}

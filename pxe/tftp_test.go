package pxe

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/stretchr/testify/require"
)

func TestCleanTFTPPath(t *testing.T) {
	tests := map[string]string{
		"snponly.efi":             "snponly.efi",
		"/snponly.efi":            "snponly.efi",
		"//x//y/./z":              "x/y/z",
		"dir\\file.efi":           "dir/file.efi",
		"a/b/../c":                "",
		"../etc/passwd":           "",
		"..\\..\\etc\\passwd":     "",
		"/../etc/passwd":          "",
		"":                        "",
		"/":                       "",
		".":                       "",
		"bad\x00name":             "",
		"esc\x1b[2J":              "",
		strings.Repeat("a", 2000): "",
	}
	for in, want := range tests {
		got, err := cleanTFTPPath(in)
		if want == "" {
			require.Error(t, err, "%q", in)
			continue
		}
		require.NoError(t, err, "%q", in)
		require.Equal(t, want, got, "%q", in)
	}
}

// loopbackService serves TFTP and HTTP on 127.0.0.1 (no DHCP).
func loopbackService(t testing.TB, tftpRoot string) *Service {
	t.Helper()
	s, err := New(Config{
		DHCPMode: DHCPOff, RAInterval: -1, ServerIP: mustAddr("127.0.0.1"),
		TFTPAddr: mustAddrPort("127.0.0.1:0"), HTTPAddr: mustAddrPort("127.0.0.1:0"),
		TFTPRoot: tftpRoot, TFTPTimeout: time.Second, TFTPRetries: 2,
	}, Deps{})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, s.Stop()) })
	return s
}

// tftpRoot makes a root with a 1 MB file, a sub-directory, and a symlink
// pointing outside, next to a secret file that must never be served.
func tftpRoot(t testing.TB) (root string, content []byte, secret string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "root")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "sub"), 0o755))
	content = make([]byte, 1<<20+123)
	for i := range content {
		content[i] = byte(i*7 + i/251)
	}
	require.NoError(t, os.WriteFile(filepath.Join(root, "boot.bin"), content, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "sub", "small.txt"), []byte("hello\n"), 0o644))
	secret = filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(secret, []byte("TOP-SECRET-MARKER"), 0o644))
	require.NoError(t, os.Symlink(secret, filepath.Join(root, "escape")))
	require.NoError(t, os.Symlink("../secret", filepath.Join(root, "escape2")))
	return root, content, secret
}

func TestTFTPWithRealClients(t *testing.T) {
	requireBinaries(t, "tftp", "atftp")
	root, content, _ := tftpRoot(t)
	s := loopbackService(t, root)
	addr := s.TFTPAddr()
	port := strconv.Itoa(int(addr.Port()))
	want := sha256.Sum256(content)
	out := t.TempDir()

	// tftp-hpa: plain RFC 1350, 512-byte blocks.
	hpa := filepath.Join(out, "hpa.bin")
	cmd := exec.Command("tftp", "-m", "binary", "127.0.0.1", port, "-c", "get", "boot.bin", hpa)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	got, err := os.ReadFile(hpa)
	require.NoError(t, err)
	require.Equal(t, want, sha256.Sum256(got), "tftp-hpa copy")

	// atftp negotiating blksize and tsize (RFC 2348, 2349).
	at := filepath.Join(out, "atftp.bin")
	cmd = exec.Command("atftp", "--verbose", "--option", "blksize 1428", "--option", "tsize 0",
		"-g", "-r", "/boot.bin", "-l", at, "127.0.0.1", port)
	b, err = cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	require.Contains(t, string(b), "blksize")
	got, err = os.ReadFile(at)
	require.NoError(t, err)
	require.Equal(t, want, sha256.Sum256(got), "atftp copy")

	// pin/tftp client: the server announces the size and caps blksize.
	c, err := tftp.NewClient(addr.String())
	require.NoError(t, err)
	c.SetBlockSize(65000)
	c.RequestTSize(true)
	wt, err := c.Receive("boot.bin", "octet")
	require.NoError(t, err)
	size, ok := wt.(tftp.IncomingTransfer).Size()
	require.True(t, ok, "tsize answered")
	require.Equal(t, int64(len(content)), size)
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	require.NoError(t, err)
	require.Equal(t, content, buf.Bytes())

	// The server records "done" once the last ACK arrived.
	pollUntil(t, 10*time.Second, "3 transfers done", func() bool {
		return counterValue(s.m.tftpTransfers.WithLabelValues("done")) == 3
	})
	var kinds []EventKind
	for _, e := range s.Timeline("") { // no DHCP here: no MAC is known for 127.0.0.1
		kinds = append(kinds, e.Kind)
	}
	// Three starts and three dones: a transfer's done (after its last
	// ACK) may be recorded after the next client's start.
	require.ElementsMatch(t, []EventKind{EventTFTPStart, EventTFTPDone, EventTFTPStart, EventTFTPDone, EventTFTPStart, EventTFTPDone}, kinds)
	require.Equal(t, float64(3*len(content)), counterValue(s.m.tftpBytes))
}

func TestTFTPRefusesEscapesAndWrites(t *testing.T) {
	requireBinaries(t, "tftp")
	root, _, _ := tftpRoot(t)
	s := loopbackService(t, root)
	c, err := tftp.NewClient(s.TFTPAddr().String())
	require.NoError(t, err)
	c.SetTimeout(time.Second)
	c.SetRetries(1)
	for _, name := range []string{"../secret", "escape", "escape2", "/etc/passwd", "sub", "nope", "..\\secret", "sub/../../secret"} {
		wt, err := c.Receive(name, "octet")
		if err == nil {
			var buf bytes.Buffer
			_, err = wt.WriteTo(&buf)
			require.NotContains(t, buf.String(), "TOP-SECRET", name)
			require.NotContains(t, buf.String(), "root:", name)
		}
		require.Error(t, err, "%q must be refused", name)
	}
	wt, err := c.Receive("sub/small.txt", "octet")
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	require.NoError(t, err)
	require.Equal(t, "hello\n", buf.String())

	rf, err := c.Send("uploaded", "octet")
	if err == nil {
		_, err = rf.ReadFrom(strings.NewReader("data"))
	}
	require.Error(t, err, "read-only server")
	require.NoFileExists(t, filepath.Join(root, "uploaded"))
	pollUntil(t, 10*time.Second, "8 refusals counted", func() bool {
		return counterValue(s.m.tftpTransfers.WithLabelValues("error")) == 8
	})
}

func tftpClient(tb testing.TB, s *Service) *tftp.Client {
	tb.Helper()
	c, err := tftp.NewClient(s.TFTPAddr().String())
	require.NoError(tb, err)
	c.SetTimeout(time.Second)
	c.SetRetries(1)
	return c
}

package pxe

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/require"
)

// FuzzDHCPOptions feeds arbitrary bytes to the DHCP path: the option
// parsers, Classify, and the full and proxy handlers must never panic, and
// every reply must encode into a packet that parses back to the same
// transaction. Its seed corpus (testdata/fuzz/FuzzDHCPOptions) holds the
// packets the lab's real clients send: OVMF, iPXE, UEFI HTTP boot, udhcpc,
// a relayed discover.
func FuzzDHCPOptions(f *testing.F) {
	full := unitService(f, unitConfig(f), &StaticProfiles{})
	pcfg := unitConfig(f)
	pcfg.DHCPMode = DHCPProxy
	proxy := unitService(f, pcfg, nil)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		if sub, err := ParseEncapsulated(data); err == nil {
			var opts []EncapsulatedOption
			fits := true
			for code, v := range sub {
				fits = fits && len(v) <= 255
				opts = append(opts, EncapsulatedOption{Code: code, Value: v})
			}
			if fits {
				again, err := ParseEncapsulated(Encapsulate(opts...))
				require.NoError(t, err)
				require.Equal(t, len(sub), len(again))
				for code, v := range sub {
					require.True(t, bytes.Equal(v, again[code]), "sub-option %d", code)
				}
			}
		}
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		_ = Classify(req)
		peer := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
		for _, run := range []struct {
			s         *Service
			proxyPort bool
		}{{full, false}, {full, true}, {proxy, false}, {proxy, true}} {
			resp, dst, _ := run.s.handleDHCP(ctx, req, peer, run.proxyPort)
			if resp == nil {
				continue
			}
			require.NotNil(t, dst)
			back, err := dhcpv4.FromBytes(resp.ToBytes())
			require.NoError(t, err, "our reply must parse")
			require.Equal(t, req.TransactionID, back.TransactionID)
			require.Equal(t, dhcpv4.OpcodeBootReply, back.OpCode)
			require.Equal(t, req.ClientHWAddr.String(), back.ClientHWAddr.String())
			if yi := ipOf(back.YourIPAddr); yi.IsValid() && !yi.IsUnspecified() {
				require.True(t, run.s.cfg.Subnet.Contains(yi), "yiaddr %v outside the subnet", yi)
			}
		}
	})
}

// FuzzTFTPRequest sends arbitrary datagrams to a real TFTP server on
// loopback: it must never serve anything from outside its root (a symlink
// and ".." lead to a secret next to it), and must keep serving. Its seed
// corpus (testdata/fuzz/FuzzTFTPRequest) has option negotiation, escapes,
// a write request and malformed packets.
func FuzzTFTPRequest(f *testing.F) {
	root, _, _ := tftpRoot(f)
	s := loopbackService(f, root)
	server := net.UDPAddrFromAddrPort(s.TFTPAddr())
	var mu sync.Mutex // one exchange at a time keeps the server's state simple to reason about
	f.Fuzz(func(t *testing.T, data []byte) {
		if name, err := cleanTFTPPath(string(data)); err == nil {
			require.True(t, filepath.IsLocal(name), "%q -> %q is not local", data, name)
		}
		mu.Lock()
		defer mu.Unlock()
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		defer c.Close()
		_, err = c.WriteToUDP(data, server)
		require.NoError(t, err)
		buf := make([]byte, 70000)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return // ignored: not every datagram deserves an answer
		}
		require.GreaterOrEqual(t, n, 2)
		require.NotContains(t, string(buf[:n]), "TOP-SECRET-MARKER")
		switch op := binary.BigEndian.Uint16(buf); op {
		case 3, 5, 6: // DATA, ERROR, OACK
		default:
			t.Fatalf("unexpected reply opcode %d", op)
		}
		if op := binary.BigEndian.Uint16(buf); op == 3 || op == 6 {
			// Abort the transfer the way UEFI firmware does.
			_, _ = c.WriteToUDP(append([]byte{0, 5, 0, 8}, "fuzz done\x00"...), from)
		}
	})
	// Still serving after all that.
	pollUntil(f, 5*time.Second, "a clean request to succeed", func() bool {
		wt, err := tftpClient(f, s).Receive("sub/small.txt", "octet")
		if err != nil {
			return false
		}
		var b strings.Builder
		_, err = wt.WriteTo(&b)
		return err == nil && b.String() == "hello\n"
	})
}

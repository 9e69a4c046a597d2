package rmcp

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// response builds a Get Channel Authentication Capabilities answer the way
// a BMC does.
func response(cc byte) []byte {
	msg := []byte{0x81, 0x07 << 2, 0, 0x20, 0x00, 0x38, cc, 0x01, 0x84, 0x14, 0x00, 0x00, 0x00, 0x00, 0}
	msg[2] = checksum(msg[0:2])
	msg[len(msg)-1] = checksum(msg[3 : len(msg)-1])
	return append([]byte{0x06, 0x00, 0xff, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(msg))}, msg...)
}

func TestRequestChecksums(t *testing.T) {
	req := Request()
	msg := req[14:]
	require.Equal(t, int(req[13]), len(msg))
	var s1, s2 byte
	for _, b := range msg[0:3] {
		s1 += b
	}
	for _, b := range msg[3:] {
		s2 += b
	}
	require.Zero(t, s1)
	require.Zero(t, s2)
}

func TestParseResponse(t *testing.T) {
	data, err := ParseResponse(response(0))
	require.NoError(t, err)
	require.Equal(t, []byte{0x01, 0x84, 0x14, 0x00, 0x00, 0x00, 0x00}, data)

	_, err = ParseResponse(response(0xc1))
	require.ErrorContains(t, err, "completion code")

	bad := response(0)
	bad[len(bad)-1]++
	_, err = ParseResponse(bad)
	require.ErrorContains(t, err, "checksum")

	for _, b := range [][]byte{nil, {0x06}, {0x06, 0, 0xff, 0x06}, Request()[:10], Request()} {
		_, err = ParseResponse(b)
		require.Error(t, err, "%x", b)
	}
}

func FuzzParseResponse(f *testing.F) {
	f.Add(response(0))
	f.Add(Request())
	f.Add([]byte{0x06, 0, 0xff, 0x07, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseResponse(b) // must not panic
	})
}

func TestPing(t *testing.T) {
	// A fake BMC that answers.
	bmc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer bmc.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := bmc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n == len(Request()) {
				_, _ = bmc.WriteTo(response(0), from)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, Ping(ctx, bmc.LocalAddr().String()))

	// A socket that reads and never answers.
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer sink.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer scancel()
	err = Ping(sctx, sink.LocalAddr().String())
	require.True(t, errors.Is(err, ErrNoAnswer), "%v", err)

	// Nothing listening at all.
	addr := sink.LocalAddr().String()
	sink.Close()
	nctx, ncancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer ncancel()
	err = Ping(nctx, addr)
	require.True(t, errors.Is(err, ErrNoAnswer), "%v", err)
}

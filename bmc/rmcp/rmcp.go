// Package rmcp sends the one IPMI-over-LAN message every BMC answers before
// any login: Get Channel Authentication Capabilities (IPMI 2.0, section
// 22.13), wrapped in RMCP and an unauthenticated IPMI 1.5 session header.
//
// It answers one question cheaply and without credentials: is there a BMC
// listening at this UDP address? The bmc package uses it to tell a wrong
// password from an unreachable BMC (ipmitool prints the same message for
// both), and the lab harness uses it to wait until a simulated BMC is up.
package rmcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrNoAnswer means nothing answered at the address before the deadline.
var ErrNoAnswer = errors.New("no answer to RMCP/IPMI ping")

// DefaultTimeout bounds Ping when the context has no deadline.
const DefaultTimeout = 2 * time.Second

// Request returns the Get Channel Authentication Capabilities request for
// the current channel at the administrator privilege level, with the
// IPMI v2.0 extended-data bit set.
func Request() []byte {
	msg := []byte{
		0x20,      // responder: the BMC
		0x06 << 2, // netFn App (request), LUN 0
		0,         // header checksum, filled in below
		0x81,      // requester: remote console software ID
		0x00,      // sequence 0, LUN 0
		0x38,      // Get Channel Authentication Capabilities
		0x8e,      // v2.0 extended data + current channel (0xe)
		0x04,      // requested privilege: administrator
		0,         // data checksum, filled in below
	}
	msg[2] = checksum(msg[0:2])
	msg[8] = checksum(msg[3:8])
	pkt := []byte{
		0x06, 0x00, 0xff, 0x07, // RMCP v1.0, no ACK, class IPMI
		0x00,       // authentication type none
		0, 0, 0, 0, // session sequence
		0, 0, 0, 0, // session ID
		byte(len(msg)),
	}
	return append(pkt, msg...)
}

// checksum is the IPMI two's-complement checksum: the bytes plus it sum to 0.
func checksum(b []byte) byte {
	var s byte
	for _, x := range b {
		s += x
	}
	return -s
}

// ParseResponse checks that b is a successful Get Channel Authentication
// Capabilities response and returns its data bytes (after the completion
// code).
func ParseResponse(b []byte) ([]byte, error) {
	if len(b) < 4 || b[0] != 0x06 || b[3]&0x1f != 0x07 {
		return nil, errors.New("rmcp: not an RMCP IPMI packet")
	}
	b = b[4:]
	if len(b) < 1 {
		return nil, errors.New("rmcp: short session header")
	}
	hdr := 10 // auth type, sequence, session ID, length
	if b[0] != 0x00 {
		hdr += 16 // an authentication code follows the session ID
	}
	if len(b) < hdr {
		return nil, errors.New("rmcp: short session header")
	}
	n := int(b[hdr-1])
	msg := b[hdr:]
	if len(msg) < n || n < 8 {
		return nil, fmt.Errorf("rmcp: message length %d, have %d", n, len(msg))
	}
	msg = msg[:n]
	if checksum(msg[0:2]) != msg[2] || checksum(msg[3:n-1]) != msg[n-1] {
		return nil, errors.New("rmcp: bad checksum")
	}
	if msg[1]>>2 != 0x07 || msg[5] != 0x38 {
		return nil, fmt.Errorf("rmcp: unexpected response netfn %#x cmd %#x", msg[1]>>2, msg[5])
	}
	if cc := msg[6]; cc != 0 {
		return nil, fmt.Errorf("rmcp: completion code %#x", cc)
	}
	return msg[7 : n-1], nil
}

// Ping sends the request to addr (host:port, UDP) and waits for a valid
// answer, resending every 250 ms, until ctx ends (or DefaultTimeout when ctx
// has no deadline). It returns nil when a BMC answered, ErrNoAnswer (wrapped)
// when nothing did.
func Ping(ctx context.Context, addr string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("ping %s: %w", addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	req := Request()
	buf := make([]byte, 512)
	var last error
	for ctx.Err() == nil {
		if _, err := conn.Write(req); err != nil {
			last = err
		}
		_ = conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				// A refused port (ICMP unreachable) or the resend tick.
				if !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
					last = err
				}
				break
			}
			if _, perr := ParseResponse(buf[:n]); perr == nil {
				return nil
			} else {
				last = perr
			}
		}
		if ctx.Err() == nil && last != nil && !isTimeout(last) {
			// Keep trying until the deadline: a simulator may still be
			// starting, and a refused port must look like silence.
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	if last != nil {
		return fmt.Errorf("ping %s: %w (last error: %v)", addr, ErrNoAnswer, last)
	}
	return fmt.Errorf("ping %s: %w", addr, ErrNoAnswer)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

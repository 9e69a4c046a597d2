package ipmilan

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/binary"
	"net"
	"sync"

	"github.com/bougou/go-ipmi/pkg/crypto"
	"github.com/bougou/go-ipmi/pkg/types"
)

// go-ipmi v0.9.1 parses and decrypts a reply in a goroutine of its own,
// without checking the reply's integrity code first, and panics on some
// malformed replies (a payload shorter than the AES IV, a confidentiality
// pad longer than the payload): a panic there cannot be recovered and ends
// the whole process. A shield sits between go-ipmi and its UDP socket
// (go-ipmi's WithUDPProxy): it watches the handshake go by, derives the
// session keys from it as both ends do (SIK, K1, K2 from the RAKP
// messages and the password), and drops every datagram go-ipmi could
// choke on: anything badly framed, and, once the session is up, any
// session packet whose integrity code is not right or whose decrypted
// padding makes no sense. A dropped datagram is a lost one: go-ipmi sends
// its request again, or times out.

// RMCP+ framing (IPMI 2.0 sections 13.6, 13.8, 13.17-13.28).
const (
	rmcpHeaderLen    = 4
	session20Header  = 12 // auth type, payload type, session ID, sequence, length
	session15Header  = 10 // auth type, sequence, session ID, (code), length byte
	authTypeRMCPPlus = 0x06

	payloadIPMI        = 0x00
	payloadOpenReq     = 0x10
	payloadOpenResp    = 0x11
	payloadRAKP1       = 0x12
	payloadRAKP2       = 0x13
	payloadRAKP3       = 0x14
	payloadRAKP4       = 0x15
	payloadEncrypted   = 0x80
	payloadAuthentic   = 0x40
	payloadTypeMask    = 0x3f
	minIPMIResponseLen = 8 // rqAddr, netFn, chk, rsAddr, rqSeq, cmd, completion code, chk
)

// shield keeps what it learned of the session; it is used by go-ipmi's one
// socket, so its lock is never contended.
type shield struct {
	net.Conn
	user, password string

	mu          sync.Mutex
	consoleRand []byte
	role        uint8
	authAlg     types.AuthAlg
	integAlg    types.IntegrityAlg
	cryptAlg    types.CryptAlg
	k1, k2      []byte // set once RAKP 2 has been seen
	// expect is the reply go-ipmi waits for after an Open Session
	// Request, RAKP 1 or RAKP 3 (0 otherwise): it takes the first
	// datagram for those, so a late duplicate of an earlier reply
	// must not reach it.
	expect byte
}

// shieldDialer is the proxy.Dialer go-ipmi dials its socket with.
type shieldDialer struct{ user, password string }

func (d shieldDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	return &shield{Conn: c, user: d.user, password: d.password}, nil
}

// Write notes the console's half of the handshake and sends p.
func (s *shield) Write(p []byte) (int, error) {
	s.noteOut(p)
	return s.Conn.Write(p)
}

// Read returns the next datagram that go-ipmi can safely parse, dropping
// the others; the socket's read deadline bounds the wait.
func (s *shield) Read(p []byte) (int, error) {
	for {
		n, err := s.Conn.Read(p)
		if err != nil {
			return n, err
		}
		if s.admit(p[:n]) {
			return n, nil
		}
	}
}

// payloadOf splits an RMCP+ datagram: payload type byte, session ID, the
// payload, and the integrity trailer after it. ok is false when the
// framing is wrong.
func payloadOf(pkt []byte) (ptype byte, sid uint32, payload, trailer []byte, ok bool) {
	h := pkt[rmcpHeaderLen:]
	if len(h) < session20Header {
		return 0, 0, nil, nil, false
	}
	ptype, sid = h[1], binary.LittleEndian.Uint32(h[2:6])
	n := int(binary.LittleEndian.Uint16(h[10:12]))
	if len(h) < session20Header+n {
		return 0, 0, nil, nil, false
	}
	return ptype, sid, h[session20Header : session20Header+n], h[session20Header+n:], true
}

// noteOut records the console's Open Session Request algorithms and its
// RAKP 1 random number and role. It is pure but for s.
func (s *shield) noteOut(pkt []byte) {
	if len(pkt) < rmcpHeaderLen+1 || pkt[rmcpHeaderLen] != authTypeRMCPPlus {
		return
	}
	ptype, _, pl, _, ok := payloadOf(pkt)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expect = 0
	switch ptype & payloadTypeMask {
	case payloadOpenReq:
		s.k1, s.k2 = nil, nil // a new session
		s.expect = payloadOpenResp
	case payloadRAKP1:
		if len(pl) >= 28 {
			s.consoleRand = append([]byte(nil), pl[8:24]...)
			s.role = pl[24]
		}
		s.expect = payloadRAKP2
	case payloadRAKP3:
		s.expect = payloadRAKP4
	}
}

// admit reports whether go-ipmi may parse pkt, learning from the BMC's
// half of the handshake as it goes.
func (s *shield) admit(pkt []byte) bool {
	if len(pkt) < rmcpHeaderLen+1 || pkt[0] != 0x06 {
		return false
	}
	if pkt[3]&0x1f != 0x07 { // not IPMI: RMCP pong (ASF) and the like
		return len(pkt) >= rmcpHeaderLen+8
	}
	if pkt[rmcpHeaderLen] != authTypeRMCPPlus {
		// IPMI 1.5 framing, only before the session: the IPMI message
		// must fit in what the length byte says.
		s.mu.Lock()
		waiting := s.expect != 0
		s.mu.Unlock()
		if waiting {
			return false // a late duplicate during the handshake
		}
		h := pkt[rmcpHeaderLen:]
		hl := session15Header
		if h[0] != 0 {
			hl += 16 // an authentication code
		}
		return len(h) >= hl && int(h[hl-1]) >= minIPMIResponseLen && len(h) >= hl+int(h[hl-1])
	}
	ptype, sid, pl, trailer, ok := payloadOf(pkt)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	setup := ptype & payloadTypeMask
	if setup == payloadOpenResp || setup == payloadRAKP2 || setup == payloadRAKP4 || s.expect != 0 {
		if setup != s.expect {
			return false // not the handshake step go-ipmi waits for
		}
		s.expect = 0
	}
	switch setup {
	case payloadOpenResp:
		// tag, status: go-ipmi reads the rest only on success.
		if len(pl) >= 2 && pl[1] == 0 {
			if len(pl) < 36 {
				return false
			}
			s.authAlg, s.integAlg, s.cryptAlg = types.AuthAlg(pl[16]&0x3f), types.IntegrityAlg(pl[24]&0x3f), types.CryptAlg(pl[32]&0x3f)
		}
		return len(pl) >= 2
	case payloadRAKP2:
		if len(pl) >= 40 && pl[1] == 0 && s.consoleRand != nil {
			_, k1, k2, err := crypto.DeriveSessionKeys(s.authAlg, s.consoleRand, pl[8:24], s.role, s.user, crypto.PadPassword20([]byte(s.password)))
			if err == nil {
				s.k1, s.k2 = k1, k2
			}
		}
		return len(pl) >= 2
	case payloadIPMI:
	default:
		return len(pl) >= 2 // RAKP 4 and others: go-ipmi checks their lengths
	}
	if ptype&(payloadEncrypted|payloadAuthentic) == 0 {
		return sid == 0 && len(pl) >= minIPMIResponseLen
	}
	if sid == 0 || s.k1 == nil || ptype&payloadAuthentic == 0 {
		return false // encrypted but not authenticated, or no keys: cannot be ours
	}
	if !s.authentic(pkt, trailer) {
		return false
	}
	if ptype&payloadEncrypted != 0 {
		return s.decryptable(pl)
	}
	return len(pl) >= minIPMIResponseLen
}

// authentic checks the integrity trailer: pad, pad length, next header,
// then the integrity code over the packet from the auth type on.
func (s *shield) authentic(pkt, trailer []byte) bool {
	want, err := crypto.SessionIntegrityAuthCode(s.integAlg, []byte{0}, s.k1, s.password)
	if err != nil || len(want) == 0 {
		return false // an integrity algorithm we do not know: refuse
	}
	codeLen := len(want)
	if len(trailer) < 2+codeLen {
		return false
	}
	signed := pkt[rmcpHeaderLen : len(pkt)-codeLen]
	got, err := crypto.SessionIntegrityAuthCode(s.integAlg, signed, s.k1, s.password)
	return err == nil && hmac.Equal(got, pkt[len(pkt)-codeLen:])
}

// decryptable checks an AES-CBC-128 payload: an IV, whole blocks, and a
// confidentiality pad that fits (what go-ipmi slices without checking).
func (s *shield) decryptable(pl []byte) bool {
	if s.cryptAlg != types.CryptAlg_AES_CBC_128 {
		return s.cryptAlg == types.CryptAlg_None
	}
	if len(pl) < 2*aes.BlockSize || len(pl)%aes.BlockSize != 0 || len(s.k2) < 16 {
		return false
	}
	b, err := aes.NewCipher(s.k2[:16])
	if err != nil {
		return false
	}
	d := make([]byte, len(pl)-aes.BlockSize)
	cipher.NewCBCDecrypter(b, pl[:aes.BlockSize]).CryptBlocks(d, pl[aes.BlockSize:])
	pad := int(d[len(d)-1])
	return len(d)-pad-1 >= minIPMIResponseLen
}

package rack

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// openSession is an RMCP+ Open Session Request proposing auth, integ and
// conf (IPMI 2.0 table 13-16), message tag 0x2a, console session ID
// 0xa0a1a2a3.
func openSession(auth, integ, conf byte) []byte {
	p := []byte{0x2a, 0x04, 0, 0, 0xa3, 0xa2, 0xa1, 0xa0,
		0, 0, 0, 8, auth, 0, 0, 0,
		1, 0, 0, 8, integ, 0, 0, 0,
		2, 0, 0, 8, conf, 0, 0, 0}
	hdr := []byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint16(hdr[14:], uint16(len(p)))
	return append(hdr, p...)
}

func TestRefuseSuiteZero(t *testing.T) {
	resp := refuseSuiteZero(openSession(0, 0, 0))
	require.Equal(t, []byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0,
		0x2a, 0x11, 0, 0, 0xa3, 0xa2, 0xa1, 0xa0}, resp, "no matching cipher suite, with the tag and console session ID")
	require.Nil(t, refuseSuiteZero(openSession(1, 1, 1)), "suite 3 passes")
	require.Nil(t, refuseSuiteZero(openSession(1, 0, 0)), "suite 1 authenticates: passes")
	require.Nil(t, refuseSuiteZero(openSession(0, 0, 0)[:20]), "short: the BMC refuses it")
}

func FuzzRefuseSuiteZero(f *testing.F) {
	f.Add(openSession(0, 0, 0))
	f.Add(openSession(1, 1, 1))
	f.Add([]byte{0x06, 0x00, 0xff, 0x06, 0, 0, 0x11, 0xbe})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if resp := refuseSuiteZero(pkt); resp != nil {
			require.Len(t, resp, 24)
		}
	})
}

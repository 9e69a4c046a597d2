package vmctl

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTailKeepsTheNewestBytes(t *testing.T) {
	s, cut := tail("one\ntwo\nthree\n", 100)
	require.Equal(t, "one\ntwo\nthree\n", s)
	require.False(t, cut)
	s, cut = tail("one\ntwo\nthree\n", 9)
	require.True(t, cut)
	require.Equal(t, "three\n", s, "cut at the next line start")
	s, _ = tail(strings.Repeat("x", 1000), 10)
	require.Equal(t, strings.Repeat("x", 10), s, "no line start: the bytes as they are")

	b := &tailBuffer{max: 10}
	for i := 0; i < 10000; i++ {
		_, _ = b.Write([]byte("line\n"))
	}
	_, _ = b.Write([]byte("last\n"))
	require.Less(t, len(b.buf), 2*10+4096+10, "bounded")
	require.True(t, b.lost)
	s, _ = tail(string(b.buf), 10)
	require.Equal(t, "last\n", s)
}

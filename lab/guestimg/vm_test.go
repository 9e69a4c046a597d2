package guestimg_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab/guestimg"
)

func TestVMBuildsOnceAndIsSmall(t *testing.T) {
	dir := t.TempDir()
	path, sum, size, err := guestimg.VM(dir)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(sum, "sha256:"), sum)
	require.Less(t, size, int64(64<<20), "a tiny image")
	b := make([]byte, 512)
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.ReadAt(b, 0)
	require.NoError(t, err)
	require.Equal(t, []byte{0x55, 0xaa}, b[510:], "an MBR boot signature")
	st, err := os.Stat(path)
	require.NoError(t, err)

	path2, sum2, size2, err := guestimg.VM(dir)
	require.NoError(t, err)
	require.Equal(t, []any{path, sum, size}, []any{path2, sum2, size2})
	st2, err := os.Stat(path2)
	require.NoError(t, err)
	require.Equal(t, st.ModTime(), st2.ModTime(), "the second call reuses the build")
}

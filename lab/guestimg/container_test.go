package guestimg

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestContainerLayout checks the archive has the docker save layout (the
// manifest names a config whose diff_ids match the layer), that a second
// call is served from the cache with the same bytes, and that the layer
// holds busybox and sh.
func TestContainerLayout(t *testing.T) {
	dir := t.TempDir()
	path, sum, size, err := Container(dir)
	require.NoError(t, err)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, int64(len(b)), size)
	got := sha256.Sum256(b)
	require.Equal(t, "sha256:"+hex.EncodeToString(got[:]), sum)

	path2, sum2, _, err := Container(dir)
	require.NoError(t, err)
	require.Equal(t, path, path2)
	require.Equal(t, sum, sum2)

	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[h.Name] = data
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	require.NoError(t, json.Unmarshal(files["manifest.json"], &manifest))
	require.Len(t, manifest, 1)
	require.Empty(t, manifest[0].RepoTags)
	cfgSum := sha256.Sum256(files[manifest[0].Config])
	require.Equal(t, hex.EncodeToString(cfgSum[:])+".json", manifest[0].Config)
	var cfg struct {
		Config struct{ Cmd []string }
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	require.NoError(t, json.Unmarshal(files[manifest[0].Config], &cfg))
	require.Equal(t, []string{"/bin/sh", "-c", ContainerScript}, cfg.Config.Cmd)
	require.Len(t, manifest[0].Layers, 1)
	layer := files[manifest[0].Layers[0]]
	diff := sha256.Sum256(layer)
	require.Equal(t, []string{"sha256:" + hex.EncodeToString(diff[:])}, cfg.RootFS.DiffIDs)

	names := map[string]string{}
	lr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		names[h.Name] = h.Linkname
	}
	require.Contains(t, names, "bin/busybox")
	require.Equal(t, "busybox", names["bin/sh"])
}

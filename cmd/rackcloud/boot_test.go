package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// `rackcloud boot --api-ca-file` must name a readable PEM bundle: anything
// else stops the start with a clear error, before a socket is opened.
func TestBootAPICAFileChecked(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(empty, []byte("no certificate here\n"), 0o644))
	for file, want := range map[string]string{
		filepath.Join(t.TempDir(), "missing.pem"): "CA file",
		empty: "no PEM certificate",
	} {
		err := runBoot(context.Background(), []string{"--api-url", "https://127.0.0.1:1", "--api-ca-file", file,
			"--server-ip", "127.0.0.1", "--dhcp-mode", "off", "--state-dir", t.TempDir()})
		require.ErrorContains(t, err, want)
	}
}

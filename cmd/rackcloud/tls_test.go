package main

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The client verbs trust an https server's CA given with --ca-file, and
// refuse the server without it.
func TestClientCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"items":[{"id":"5f0c6f3e-8d0a-4f4e-9b8e-0a4b5c6d7e8f","name":"eu-west"}]}`))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644))

	out := mustRun(t, "region", "list", "--server", srv.URL, "--token", "x", "--ca-file", ca)
	require.Contains(t, out, "eu-west")
	_, _, err := run(t, "region", "list", "--server", srv.URL, "--token", "x")
	require.ErrorContains(t, err, "certificate")
	_, _, err = run(t, "region", "list", "--server", srv.URL, "--token", "x", "--ca-file", filepath.Join(t.TempDir(), "none.pem"))
	require.ErrorContains(t, err, "--ca-file")
}

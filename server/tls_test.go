package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/lab/pki"
	"github.com/rackcloud/rackcloud/server"
)

func runServer(t *testing.T, cfg server.Config, log *slog.Logger) *server.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, cfg, log)
	require.NoError(t, err)
	require.NoError(t, s.Listen())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return s
}

func TestServesHTTPS(t *testing.T) {
	p, err := pki.New(t.TempDir(), "rackcloud test API")
	require.NoError(t, err)
	var logs labtest.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s := runServer(t, server.Config{Listen: "127.0.0.1:0", DatabaseURL: pgtest.URL(t), TLSCertFile: p.CertFile, TLSKeyFile: p.KeyFile}, log)
	require.True(t, s.TLS())

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool}}}
	resp, err := c.Get("https://" + s.Addr() + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	// A client that does not trust the CA is refused by its own TLS check.
	_, err = (&http.Client{Timeout: 10 * time.Second}).Get("https://" + s.Addr() + "/healthz")
	require.ErrorContains(t, err, "certificate")
	// Plain HTTP to the TLS port gets no API answer.
	resp, err = http.Get("http://" + s.Addr() + "/healthz")
	if err == nil {
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	}
	require.NotContains(t, logs.String(), "without TLS")
}

func TestTLSFlagsAreBothOrNeither(t *testing.T) {
	p, err := pki.New(t.TempDir(), "x")
	require.NoError(t, err)
	for _, cfg := range []server.Config{{TLSCertFile: p.CertFile}, {TLSKeyFile: p.KeyFile}} {
		cfg.DatabaseURL = "postgres://u@127.0.0.1:1/db"
		_, err := server.New(context.Background(), cfg, nil)
		require.ErrorContains(t, err, "both")
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	require.NoError(t, os.WriteFile(bad, []byte("not a cert"), 0o600))
	_, err = server.New(context.Background(), server.Config{DatabaseURL: "postgres://u@127.0.0.1:1/db", TLSCertFile: bad, TLSKeyFile: p.KeyFile}, nil)
	require.ErrorContains(t, err, "TLS certificate")
}

// Only a loopback listener may go without TLS silently; the server warns
// for any other (the check, on addresses, without listening off loopback).
func TestPlainHTTPOffLoopbackWarns(t *testing.T) {
	for addr, loop := range map[string]bool{"127.0.0.1:80": true, "127.3.4.5:80": true, "[::1]:80": true,
		"0.0.0.0:80": false, "[::]:80": false, "10.0.0.1:80": false} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		require.NoError(t, err)
		require.Equal(t, loop, server.IsLoopback(a), addr)
	}
	var logs labtest.LogBuffer
	runServer(t, server.Config{Listen: "127.0.0.1:0", DatabaseURL: pgtest.URL(t)}, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NotContains(t, logs.String(), "without TLS", "loopback is fine")
}

// Without a key file the server refuses to store BMC passwords (a 503
// that says how to fix it) instead of sealing them with a key that dies
// with it; --insecure-throwaway-key says otherwise on purpose.
func TestNoSecretKeyRefusesBMCPasswords(t *testing.T) {
	for _, throwaway := range []bool{false, true} {
		t.Run(map[bool]string{false: "no key", true: "throwaway key"}[throwaway], func(t *testing.T) { noKey(t, throwaway) })
	}
}

func noKey(t *testing.T, throwaway bool) {
	dir := t.TempDir()
	var logs labtest.LogBuffer
	s := runServer(t, server.Config{Listen: "127.0.0.1:0", DatabaseURL: pgtest.URL(t), InsecureThrowawayKey: throwaway,
		BootstrapTokenFile: filepath.Join(dir, "token")}, slog.New(slog.NewTextHandler(&logs, nil)))
	base := "http://" + s.Addr()
	waitReady(t, base, 30*time.Second)
	tok, err := os.ReadFile(filepath.Join(dir, "token"))
	require.NoError(t, err)
	call := func(method, path, body string) (int, string) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	code, body := call("POST", "/v1/hosts", `{"name":"h1","macs":["52:54:00:00:00:01"]}`)
	require.Equal(t, 201, code, body)
	var h struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(body), &h))
	code, body = call("PUT", "/v1/hosts/"+h.ID+"/bmc", `{"address":"127.0.0.1:623","protocol":"ipmi","username":"u","password":"p"}`)
	if !throwaway {
		require.Nil(t, s.Sealer())
		require.Equal(t, 503, code, body)
		require.Contains(t, body, "--secret-key-file")
		require.Contains(t, logs.String(), "refuses to store BMC passwords")
		return
	}
	require.NotNil(t, s.Sealer())
	require.Contains(t, logs.String(), "insecure-throwaway-key")
	require.NotEqual(t, 503, code, body)
}

// The server's own routes answer other methods with a 405 problem
// document, as the API does.
func TestServerRoutesRefuseOtherMethods(t *testing.T) {
	_, base := start(t, pgtest.URL(t))
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Post(base+p, "application/json", strings.NewReader("{}"))
		require.NoError(t, err)
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, p)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), p)
		require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"), p)
		require.Contains(t, b.String(), "method POST is not allowed on "+p)
		resp, err = http.Head(base + p)
		require.NoError(t, err)
		resp.Body.Close()
		require.NotEqual(t, http.StatusMethodNotAllowed, resp.StatusCode, "HEAD %s", p)
	}
}

package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/lab/postgres"
	"github.com/rackcloud/rackcloud/lab/proc"
	"github.com/rackcloud/rackcloud/server"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func start(t *testing.T, dbURL string) (*server.Server, string) {
	t.Helper()
	return startWith(t, server.Config{Listen: "127.0.0.1:0", DatabaseURL: dbURL, RetryMax: 500 * time.Millisecond})
}

func startWith(t *testing.T, cfg server.Config) (*server.Server, string) {
	t.Helper()
	s := runServer(t, cfg, nil)
	return s, "http://" + s.Addr()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReady polls /readyz with a deadline (no sleeps, no timing asserts).
func waitReady(t *testing.T, base string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := get(t, base+"/readyz")
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after %s: %d %s", timeout, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestServeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	_, base := startWith(t, server.Config{Listen: "127.0.0.1:0", DatabaseURL: pgtest.URL(t), RetryMax: 500 * time.Millisecond,
		BootstrapTokenFile: tokenFile, SecretKeyFile: filepath.Join(dir, "secret.key")})
	code, body := get(t, base+"/healthz")
	require.Equal(t, 200, code, body)
	waitReady(t, base, 30*time.Second)

	// The bootstrap token file holds a working admin token, mode 0600.
	st, err := os.Stat(tokenFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	tok, err := os.ReadFile(tokenFile)
	require.NoError(t, err)
	token := strings.TrimSpace(string(tok))

	code, _ = get(t, base+"/v1/regions")
	require.Equal(t, http.StatusUnauthorized, code, "no token")
	req, err := http.NewRequest("POST", base+"/v1/regions", strings.NewReader(`{"name":"lab","labels":{"env":"test"}}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	req, err = http.NewRequest("GET", base+"/v1/regions", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, string(b), `"name":"lab"`)

	code, body = get(t, base+"/openapi.json")
	require.Equal(t, 200, code)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &doc))
	require.Equal(t, "3.1.0", doc["openapi"])

	code, body = get(t, base+"/metrics")
	require.Equal(t, 200, code)
	for _, m := range []string{"go_goroutines", "process_cpu_seconds_total", `rackcloud_api_requests_total{code="201",operation="createRegion"} 1`, "rackcloud_store_up 1"} {
		require.Contains(t, body, m)
	}
}

// A database that is down at start: /readyz says why; once the database
// comes up the server connects by itself and becomes ready.
func TestDatabaseDownAtStart(t *testing.T) {
	port, err := proc.FreePort()
	require.NoError(t, err)
	dir := t.TempDir()
	url := "postgres://rackcloud@127.0.0.1:" + itoa(port) + "/postgres?sslmode=disable"
	_, base := start(t, url)

	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get(t, base+"/readyz")
		require.Equal(t, http.StatusServiceUnavailable, code, body)
		if strings.Contains(body, "attempt") {
			require.Contains(t, body, "connect")
			break
		}
		require.False(t, time.Now().After(deadline), "readyz never explained: %s", body)
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755)) // postgres must reach it
	c, err := postgres.Start(context.Background(), postgres.Config{Dir: dir, Port: port})
	require.NoError(t, err)
	t.Cleanup(c.Stop)
	waitReady(t, base, 60*time.Second)
}

func TestBadDatabaseURLIsOneClearError(t *testing.T) {
	_, err := server.New(context.Background(), server.Config{DatabaseURL: "postgres://u:hunter2@host:port/db"}, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "database URL")
	require.NotContains(t, err.Error(), "hunter2")
}

func itoa(i int) string { return strconv.Itoa(i) }

package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/api"
)

// genclientTools installs testdata/genclient's pinned npm packages
// (openapi-typescript, openapi-fetch, typescript; package-lock.json) into
// the user's cache directory once, keyed by the lock file's hash.
func genclientTools(t *testing.T) string {
	t.Helper()
	lock, err := os.ReadFile("testdata/genclient/package-lock.json")
	require.NoError(t, err)
	sum := sha256.Sum256(lock)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "rackcloud", "genclient-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", "tsc")); err == nil {
		return dir
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm not found: Node.js and npm are needed to test a generated client (see lab/install.sh)")
	}
	tmp := dir + ".tmp"
	require.NoError(t, os.RemoveAll(tmp))
	require.NoError(t, os.MkdirAll(tmp, 0o755))
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join("testdata/genclient", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(tmp, f), b, 0o644))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", tmp, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
		// Another test process may have won the race; use its copy.
		if _, serr := os.Stat(filepath.Join(dir, "node_modules", ".bin", "tsc")); serr != nil {
			t.Fatalf("install genclient tools: %v", err)
		}
	}
	return dir
}

// TestGeneratedClientWorks generates a TypeScript client from the served
// OpenAPI document, type-checks a program using it under --strict, and
// runs it against the real server.
func TestGeneratedClientWorks(t *testing.T) {
	t.Parallel()
	tools := genclientTools(t)
	e := newEnv(t)
	work := t.TempDir()
	for _, f := range []string{"client.ts", "tsconfig.json", "package.json"} {
		b, err := os.ReadFile(filepath.Join("testdata/genclient", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(work, f), b, 0o644))
	}
	require.NoError(t, os.Symlink(filepath.Join(tools, "node_modules"), filepath.Join(work, "node_modules")))
	doc := e.do("GET", "/openapi.json", "", nil)
	require.Equal(t, 200, doc.Code)
	require.NoError(t, os.WriteFile(filepath.Join(work, "openapi.json"), doc.Body, 0o644))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(env []string, name string, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		require.NoError(t, err, "%s %v:\n%s\n%s", name, args, out, stderr)
		return out
	}
	bin := filepath.Join(tools, "node_modules", ".bin")
	run(nil, filepath.Join(bin, "openapi-typescript"), "openapi.json", "-o", "schema.d.ts")
	run(nil, filepath.Join(bin, "tsc"), "-p", ".")
	out := run([]string{"RC_URL=" + e.srv.URL, "RC_TOKEN=" + e.admin}, "node", filepath.Join("out", "client.js"))

	var got struct {
		QuotaVCPU     int      `json:"quota_vcpu"`
		CreateStatus  int      `json:"create_status"`
		Location      string   `json:"location"`
		TaskKind      string   `json:"task_kind"`
		TaskState     string   `json:"task_state"`
		Steps         []string `json:"steps"`
		Regions       []string `json:"regions"`
		MissingStatus int      `json:"missing_status"`
		MissingType   string   `json:"missing_type"`
		BadStatus     int      `json:"bad_status"`
		BadType       string   `json:"bad_type"`
	}
	require.NoError(t, json.Unmarshal(out, &got), string(out))
	require.Equal(t, 4, got.QuotaVCPU)
	require.Equal(t, 202, got.CreateStatus)
	require.Contains(t, got.Location, "/v1/tasks/")
	require.Equal(t, api.KindGuestCreate, got.TaskKind)
	require.Equal(t, "succeeded", got.TaskState)
	require.Equal(t, []string{"place", "start"}, got.Steps)
	require.Equal(t, []string{"gen", "gen-a", "gen-b"}, got.Regions)
	require.Equal(t, 404, got.MissingStatus)
	require.Equal(t, api.ProblemNotFound, got.MissingType)
	require.Equal(t, 422, got.BadStatus)
	require.Equal(t, api.ProblemValidation, got.BadType)
}

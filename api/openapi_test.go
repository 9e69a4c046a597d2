package api_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The served OpenAPI document is checked by an independent validator:
// Redocly CLI's lint (the npm package @redocly/cli, pinned), with the
// recommended ruleset and our config in testdata/redocly.yaml. The test
// installs it into the user's cache directory on first use (npm and the
// npm registry are part of this project's machines) and requires no
// errors and no warnings.
const redoclyVersion = "2.77.0"

var redoclyOnce struct {
	sync.Once
	bin string
	err error
}

func redocly(t *testing.T) string {
	t.Helper()
	redoclyOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "rackcloud", "redocly-cli-"+redoclyVersion)
		bin := filepath.Join(dir, "node_modules", ".bin", "redocly")
		if _, err := os.Stat(bin); err == nil {
			redoclyOnce.bin = bin
			return
		}
		npm, err := exec.LookPath("npm")
		if err != nil {
			redoclyOnce.err = err
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			redoclyOnce.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error",
			"@redocly/cli@"+redoclyVersion)
		out, err := cmd.CombinedOutput()
		if err != nil {
			redoclyOnce.err = &installError{out: string(out), err: err}
			return
		}
		redoclyOnce.bin = bin
	})
	if redoclyOnce.err != nil {
		t.Fatalf("cannot install @redocly/cli@%s with npm (Node.js and npm are needed; see lab/install.sh): %v", redoclyVersion, redoclyOnce.err)
	}
	return redoclyOnce.bin
}

type installError struct {
	out string
	err error
}

func (e *installError) Error() string { return e.err.Error() + ": " + e.out }

func TestOpenAPIDocumentLintsClean(t *testing.T) {
	t.Parallel()
	bin := redocly(t)
	e := newEnv(t)
	r := e.do("GET", "/openapi.json", "", nil)
	require.Equal(t, 200, r.Code)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &doc))
	require.Equal(t, "3.1.0", doc["openapi"])

	dir := t.TempDir()
	spec := filepath.Join(dir, "openapi.json")
	require.NoError(t, os.WriteFile(spec, r.Body, 0o644))
	cfg, err := filepath.Abs("testdata/redocly.yaml")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "lint", "--config", cfg, "--format", "json", spec)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var report struct {
		Totals struct {
			Errors   int `json:"errors"`
			Warnings int `json:"warnings"`
		} `json:"totals"`
		Version  string `json:"version"`
		Problems []struct {
			RuleID   string `json:"ruleId"`
			Severity string `json:"severity"`
			Message  string `json:"message"`
			Location []struct {
				Pointer string `json:"pointer"`
			} `json:"location"`
		} `json:"problems"`
	}
	require.NoError(t, json.Unmarshal(out, &report), "redocly lint output (err %v):\n%s\n%s", err, out, stderr.String())
	for _, p := range report.Problems {
		ptr := ""
		if len(p.Location) > 0 {
			ptr = p.Location[0].Pointer
		}
		t.Errorf("%s %s: %s at %s", p.Severity, p.RuleID, p.Message, ptr)
	}
	require.Equal(t, redoclyVersion, report.Version)
	require.Zero(t, report.Totals.Errors, "errors")
	require.Zero(t, report.Totals.Warnings, "warnings")
	require.NoError(t, err, stderr.String())
	t.Logf("VALIDATOR redocly lint %s: %d errors, %d warnings", report.Version, report.Totals.Errors, report.Totals.Warnings)
}

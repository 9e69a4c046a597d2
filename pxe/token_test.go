package pxe

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab/labtest"
)

var tokenRe = regexp.MustCompile(`\b` + regexp.QuoteMeta(ParamToken) + `=(\S+)`)

// scriptToken returns the boot token on a script's kernel command line.
func scriptToken(script string) string {
	if m := tokenRe.FindStringSubmatch(script); m != nil {
		return m[1]
	}
	return ""
}

// bootToken renders mac's boot script (a new netboot) and returns its token.
func bootToken(t *testing.T, base, mac string) string {
	t.Helper()
	resp, body := get(t, base+"/boot/"+mac+".ipxe")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	tok := scriptToken(body)
	require.NotEmpty(t, tok, body)
	return tok
}

// postCallback posts body to url with token as "Authorization: Bearer"
// (none when empty) and returns the status and the answer.
func postCallback(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestCallbackToken: only the current boot's token may call back; no
// token, a forged one and an earlier boot's are refused with 403 and
// counted by reason, and leave no event. A restarted boot service (a new
// Service over the same state directory) still takes the current token.
// The token itself is never in an event, a log line or a file.
func TestCallbackToken(t *testing.T) {
	const mac = "52:54:00:aa:07:01"
	cfg := unitConfig(t)
	cfg.FilesDir = t.TempDir()
	var logs labtest.LogBuffer
	start := func() (*Service, *httptest.Server, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		s, err := New(cfg, Deps{Profiles: &StaticProfiles{}, Registerer: reg,
			Logger: slogTo(&logs)})
		require.NoError(t, err)
		srv := httptest.NewServer(s.Handler())
		t.Cleanup(srv.Close)
		return s, srv, reg
	}
	s, srv, _ := start()
	url := srv.URL + "/boot/" + mac + "/callback"

	first := bootToken(t, srv.URL, mac)
	current := bootToken(t, srv.URL, mac) // the host netboots again: a new token
	require.NotEqual(t, first, current)
	forged := strings.Repeat("A", len(current))
	refusals := []struct{ token, header, reason string }{
		{reason: tokenMissing},
		{header: "Basic " + current, reason: tokenMissing},
		{token: forged, reason: tokenWrong},
		{token: first, reason: tokenReplayed},
		{token: bootTokenOtherMAC(t, srv.URL), reason: tokenWrong},
	}
	for _, r := range refusals {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"mac":"`+mac+`"}`))
		require.NoError(t, err)
		if r.token != "" {
			req.Header.Set("Authorization", "Bearer "+r.token)
		}
		if r.header != "" {
			req.Header.Set("Authorization", r.header)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode, r.reason)
		require.Contains(t, string(b), r.reason, "a short reason")
	}
	require.Equal(t, 2.0, counterValue(s.m.callbacksRefused.WithLabelValues(tokenMissing)))
	require.Equal(t, 2.0, counterValue(s.m.callbacksRefused.WithLabelValues(tokenWrong)))
	require.Equal(t, 1.0, counterValue(s.m.callbacksRefused.WithLabelValues(tokenReplayed)))
	for _, e := range s.Timeline(mac) {
		require.NotEqual(t, EventCallback, e.Kind, "a refused callback records nothing")
	}

	// The right token is taken; the command line it reports has the token
	// redacted, and the body's strings are cleaned.
	code, body := postCallback(t, url, current,
		`{"mac":"`+mac+`","cmdline":"quiet `+ParamToken+`=`+current+` rackcloud.state=discovered","x":"a\u0000b\u001b[2J"}`)
	require.Equal(t, http.StatusNoContent, code, body)
	evs := s.Timeline(mac)
	cb := evs[len(evs)-1]
	require.Equal(t, EventCallback, cb.Kind)
	require.JSONEq(t, `{"mac":"`+mac+`","cmdline":"quiet `+ParamToken+`=REDACTED rackcloud.state=discovered","x":"ab [2J"}`, string(cb.Data))
	require.Equal(t, tokenSum(current), evs[1].BootTokenSHA256, "the second script's event carries the current token's hash")
	code, _ = postCallback(t, url, current, `{"try":2}`)
	require.Equal(t, http.StatusNoContent, code, "the current token may call back again (the image retries)")

	// A restarted boot service still takes the current boot's token and
	// still knows the earlier one as a replay.
	s2, srv2, _ := start()
	url2 := srv2.URL + "/boot/" + mac + "/callback"
	code, body = postCallback(t, url2, current, `{}`)
	require.Equal(t, http.StatusNoContent, code, body)
	code, _ = postCallback(t, url2, first, `{}`)
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, 1.0, counterValue(s2.m.callbacksRefused.WithLabelValues(tokenReplayed)))

	// Secrets stay secret: only hashes on disk, none in events or logs.
	f, err := os.ReadFile(filepath.Join(cfg.StateDir, TokenFileName))
	require.NoError(t, err)
	require.Contains(t, string(f), tokenSum(current))
	all, err := json.Marshal(append(s.Timeline(mac), s2.Timeline(mac)...))
	require.NoError(t, err)
	for _, tok := range []string{first, current} {
		require.NotContains(t, string(f), tok)
		require.NotContains(t, string(all), tok)
		require.NotContains(t, logs.String(), tok)
	}
	require.Contains(t, logs.String(), "callback refused", "refusals are logged")
}

// bootTokenOtherMAC is a genuine token, of another host.
func bootTokenOtherMAC(t *testing.T, base string) string {
	return bootToken(t, base, "52:54:00:aa:07:99")
}

// TestBootTokensBounded: the token file keeps a few previous tokens per
// MAC, and forgets the oldest MAC past maxTokenMACs; a corrupt file is
// moved aside, not fatal.
func TestBootTokensBounded(t *testing.T) {
	file := filepath.Join(t.TempDir(), TokenFileName)
	bt := newBootTokens(file, slog.New(slog.DiscardHandler), nowSeq())
	var toks []string
	for range previousTokens + 3 {
		tok, _, err := bt.mint("52:54:00:00:00:01")
		require.NoError(t, err)
		toks = append(toks, tok)
	}
	require.Equal(t, "", bt.check("52:54:00:00:00:01", toks[len(toks)-1]))
	require.Equal(t, tokenReplayed, bt.check("52:54:00:00:00:01", toks[len(toks)-2]))
	require.Equal(t, tokenWrong, bt.check("52:54:00:00:00:01", toks[0]), "too old to be remembered")
	require.Len(t, bt.byMAC["52:54:00:00:00:01"], previousTokens+1)

	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Contains(t, string(b), tokenSum(toks[len(toks)-1]))

	mem := newBootTokens("", slog.New(slog.DiscardHandler), nowSeq())
	oldest, _, err := mem.mint("52:54:00:00:00:01")
	require.NoError(t, err)
	for i := range maxTokenMACs {
		_, _, err := mem.mint(fmt.Sprintf("mac-%d", i))
		require.NoError(t, err)
	}
	require.Len(t, mem.byMAC, maxTokenMACs)
	require.Equal(t, tokenWrong, mem.check("52:54:00:00:00:01", oldest), "the oldest MAC went first")

	require.NoError(t, os.WriteFile(file, []byte("{nope"), 0o600))
	bt = newBootTokens(file, slog.New(slog.DiscardHandler), nowSeq())
	require.Empty(t, bt.byMAC)
	aside, err := filepath.Glob(file + ".corrupt-*")
	require.NoError(t, err)
	require.Len(t, aside, 1)
}

// nowSeq is a clock that moves a second at every reading.
func nowSeq() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

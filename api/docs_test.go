package api_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/api"
)

// /docs renders offline: the page references no other host (no CDN), its
// policy allows none, and every asset it references is served from the
// binary with its content type.
func TestDocsAreServedOffline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do("GET", "/docs", "", nil)
	require.Equal(t, 200, r.Code, r.String())
	page := r.String()
	csp := r.Header.Get("Content-Security-Policy")
	for _, s := range []string{page, csp} {
		require.NotRegexp(t, `(?i)(https?:)?//[a-z0-9]`, s, "an absolute URL")
	}
	require.Contains(t, csp, "default-src 'none'")
	require.Equal(t, "text/html; charset=utf-8", r.Header.Get("Content-Type"))

	refs := regexp.MustCompile(`(?i)\b(src|href|apiDescriptionUrl)="([^"]*)"`).FindAllStringSubmatch(page, -1)
	want := map[string]string{".js": "text/javascript", ".css": "text/css", ".yaml": "application/openapi+yaml"}
	kinds := map[string]bool{}
	for _, m := range refs {
		url := m[2]
		require.True(t, strings.HasPrefix(url, "/"), "%s=%q is not a path on this server", m[1], url)
		ext := url[strings.LastIndexByte(url, '.'):]
		kinds[ext] = true
		got := e.do("GET", url, "", nil)
		require.Equal(t, 200, got.Code, url)
		require.True(t, strings.HasPrefix(got.Header.Get("Content-Type"), want[ext]), "%s: %s", url, got.Header.Get("Content-Type"))
		require.NotEmpty(t, got.Body, url)
	}
	require.Equal(t, map[string]bool{".js": true, ".css": true, ".yaml": true}, kinds, "the page's references")

	for _, path := range []string{"/docs/assets/nope.js", "/docs/assets/../api.go", "/docs/assets/"} {
		e.problem(e.do("GET", path, "", nil), 404, api.ProblemNotFound)
	}
}

package api

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// The API reference at /docs is Stoplight Elements, served from the
// binary so that it renders on an isolated provisioning network: the page
// and its assets reference nothing outside this server. docs/README.md
// says where the assets come from and how to update them.

//go:embed docs/assets
var docsAssets embed.FS

const (
	docsPath       = "/docs"
	docsAssetsPath = "/docs/assets/"
	// elementsDir is the embedded Stoplight Elements, by version.
	elementsDir = "elements-9.0.15"
)

// docsCSP allows the page its own scripts and styles (Elements sets
// inline styles), the OpenAPI document and "try it" requests to this
// server, and nothing else.
var docsCSP = strings.Join([]string{
	"default-src 'none'",
	"base-uri 'none'",
	"connect-src 'self'",
	"form-action 'none'",
	"frame-ancestors 'none'",
	"img-src 'self' data:",
	"font-src 'self' data:",
	"script-src 'self'",
	"style-src 'self' 'unsafe-inline'",
}, "; ")

var docsPage = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="referrer" content="no-referrer">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{{.Title}}</title>
    <link rel="stylesheet" href="{{.Assets}}/styles.min.css">
    <script src="{{.Assets}}/web-components.min.js"></script>
  </head>
  <body style="height: 100vh;">
    <elements-api apiDescriptionUrl="{{.OpenAPI}}" router="hash" layout="sidebar" tryItCredentialsPolicy="same-origin"></elements-api>
  </body>
</html>
`))

// registerDocs serves the reference page and its embedded assets.
func registerDocs(a *API, title, openAPIPath string) {
	var page bytes.Buffer
	if err := docsPage.Execute(&page, map[string]string{"Title": title, "OpenAPI": openAPIPath + ".yaml",
		"Assets": docsAssetsPath + elementsDir}); err != nil {
		panic(err)
	}
	a.mux.HandleFunc("GET "+docsPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", docsCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		http.ServeContent(w, r, "docs.html", time.Time{}, bytes.NewReader(page.Bytes()))
	})
	a.mux.HandleFunc("GET "+docsAssetsPath+"{file...}", a.serveDocsAsset)
}

// serveDocsAsset serves an embedded file; its path names its version, so
// browsers may keep it.
func (a *API) serveDocsAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	b, err := fs.ReadFile(docsAssets, path.Join("docs/assets", name))
	if !fs.ValidPath(name) || err != nil {
		a.writeProblem(w, r, http.StatusNotFound, "docs asset "+strconv.Quote(name)+" not found")
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

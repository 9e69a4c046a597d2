package pxe

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/singleflight"

	"github.com/rackcloud/rackcloud"
)

// Bounds of the JSON a booted image may post back: its callback, and the
// agent's inventory (a large server's disks and NICs fit many times).
const (
	maxCallbackBody  = 64 << 10
	maxInventoryBody = 256 << 10
)

// Handler returns the boot service's HTTP handler:
//
//	GET  /boot/{mac}.ipxe       the host's iPXE script for its state
//	POST /boot/{mac}/callback   the booted image reports in (JSON body)
//	POST /boot/{mac}/inventory  the inspection agent's inventory (JSON object)
//	GET  /boot/{mac}/install    the installer's plan (image, host config)
//	POST /boot/{mac}/install    the installer's progress (JSON object)
//	POST /boot/{mac}/heartbeat  an installed host calling in (host token)
//	GET  /boot/{mac}/events     the host's boot timeline (JSON)
//	GET  /files/{path}          kernels, initrds and images (Range, checksums)
//	GET  /ipxe/{path}           the iPXE binaries (UEFI HTTP boot)
//	GET  /healthz, /metrics
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /boot/{name}", s.instrument("script", http.HandlerFunc(s.handleScript)))
	mux.Handle("POST /boot/{mac}/callback", s.instrument("callback", http.HandlerFunc(s.handleCallback)))
	mux.Handle("POST /boot/{mac}/inventory", s.instrument("inventory", http.HandlerFunc(s.handleInventory)))
	mux.Handle("GET /boot/{mac}/install", s.instrument("install_plan", http.HandlerFunc(s.handleInstallPlan)))
	mux.Handle("POST /boot/{mac}/install", s.instrument("install", http.HandlerFunc(s.handleInstallReport)))
	mux.Handle("POST /boot/{mac}/heartbeat", s.instrument("heartbeat", http.HandlerFunc(s.handleHeartbeat)))
	mux.Handle("GET /boot/{mac}/events", s.instrument("events", http.HandlerFunc(s.handleEvents)))
	mux.Handle("GET /files/{path...}", s.instrument("files", s.fileHandler(s.filesRoot, "/files/")))
	mux.Handle("GET /ipxe/{path...}", s.instrument("ipxe", s.fileHandler(s.tftpRoot, "/ipxe/")))
	s.handleOps(mux)
	return mux
}

// handleOps adds GET /healthz and, with a Gatherer, GET /metrics.
func (s *Service) handleOps(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	if s.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	}
}

// metricsHandler serves the metrics listener: GET /metrics and /healthz.
func (s *Service) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	s.handleOps(mux)
	return mux
}

// statusWriter records the status code and body bytes of a response.
type statusWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom keeps sendfile for file bodies.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := io.Copy(w.ResponseWriter, r)
	w.bytes += n
	return n, err
}

func (s *Service) instrument(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		s.m.httpRequests.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
		s.m.httpBytes.WithLabelValues(name).Add(float64(sw.bytes))
	})
}

func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func httpError(w http.ResponseWriter, code int, format string, a ...any) {
	http.Error(w, fmt.Sprintf(format, a...), code)
}

// handleScript renders GET /boot/{mac}.ipxe.
func (s *Service) handleScript(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	raw, ok := strings.CutSuffix(name, ".ipxe")
	if !ok {
		httpError(w, http.StatusNotFound, "no such boot resource %q", name)
		return
	}
	mac, err := rackcloud.NormalizeMAC(raw)
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	prof, known := s.lookup(r.Context(), mac)
	ev := Event{MAC: mac, Kind: EventHTTPScript, IP: remoteIP(r).String(), File: cleanText(r.URL.Path, maxPeerText)}
	var script []byte
	if !known && !s.cfg.AutoDiscovery {
		ev.Detail = "unknown host, auto-discovery off: boot the next device"
		script = []byte("#!ipxe\necho rackcloud: " + mac + " is unknown and auto-discovery is off\nexit 1\n")
	} else {
		d := s.scriptData(mac, prof, known)
		ev.State, ev.Cached, ev.Detail = d.State, d.Cached, string(d.Action)
		if d.Action == ActionNetboot {
			// A new boot: a new callback token, minted here so that it
			// works while the control plane is down.
			token, sum, err := s.tokens.mint(mac)
			if token == "" {
				ev.Error = err.Error()
				s.record(ev)
				httpError(w, http.StatusInternalServerError, "boot token: %v", err)
				return
			}
			if err != nil {
				s.log.Error("boot token not saved: a restarted boot service will refuse this boot's callback", "mac", mac, "err", err)
			}
			d.setToken(token)
			ev.BootTokenSHA256 = sum
		}
		if !known {
			ev.Detail = "unknown host: discovery image"
		}
		tmpl := ""
		if known {
			tmpl = prof.Boot.Script
		}
		script, err = RenderScript(tmpl, d)
		if err != nil && tmpl != "" {
			// A broken profile template must not strand the host: boot it
			// with the default script and say why.
			s.log.Error("profile boot script broken, using the default", "mac", mac, "err", err)
			ev.Error = err.Error()
			script, err = RenderScript("", d)
		}
		if err != nil {
			ev.Error = err.Error()
			s.record(ev)
			httpError(w, http.StatusInternalServerError, "render boot script: %v", err)
			return
		}
	}
	s.record(ev)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(script)
}

// handleCallback records POST /boot/{mac}/callback (any JSON, or no
// body) as a callback event.
func (s *Service) handleCallback(w http.ResponseWriter, r *http.Request) {
	s.handleReport(w, r, EventCallback, maxCallbackBody, false, http.StatusNoContent)
}

// handleInventory records POST /boot/{mac}/inventory, the agent's
// rackcloud.Inventory (a JSON object), as an inventory event.
func (s *Service) handleInventory(w http.ResponseWriter, r *http.Request) {
	s.handleReport(w, r, EventInventory, maxInventoryBody, true, http.StatusAccepted)
}

// handleReport records what a booted image posts about itself as an event
// of kind, its body (at most max bytes of JSON; an object when object is
// set, else also empty) as the event's Data, and answers code. The caller
// must present the token of mac's current boot ("Authorization: Bearer");
// a missing, wrong or earlier boot's token is refused with 403, counted
// and logged (at most refusedLogBurst lines a minute), and leaves no
// event.
func (s *Service) handleReport(w http.ResponseWriter, r *http.Request, kind EventKind, max int64, object bool, code int) {
	mac, err := rackcloud.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if reason := s.tokens.check(mac, bearer(r.Header.Get("Authorization"))); reason != "" {
		s.refused(r, mac, string(kind), reason)
		httpError(w, http.StatusForbidden, "%s refused: %s boot token", kind, reason)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "%s body: %v", kind, err)
		return
	}
	switch {
	case object && !isJSONObject(body):
		httpError(w, http.StatusBadRequest, "%s body is not a JSON object", kind)
		return
	case len(body) > 0 && !json.Valid(body):
		httpError(w, http.StatusBadRequest, "%s body is not JSON", kind)
		return
	}
	ev := Event{MAC: mac, Kind: kind, IP: remoteIP(r).String()}
	if len(body) > 0 {
		// The image's own text: strings cleaned, its boot token redacted.
		ev.Data = cleanJSON(body)
	}
	s.record(ev)
	w.WriteHeader(code)
}

// isJSONObject reports whether b is one valid JSON object.
func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// handleEvents serves GET /boot/{mac}/events.
func (s *Service) handleEvents(w http.ResponseWriter, r *http.Request) {
	mac, err := rackcloud.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	evs := s.timeline.Timeline(mac)
	if evs == nil {
		evs = []Event{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(evs)
}

// fileHandler serves files under root with Range support (http.ServeContent)
// and their SHA-256 in Repr-Digest (RFC 9530), X-Checksum-Sha256 and the
// ETag; GET {file}.sha256 returns a sha256sum line. Downloads are
// recorded on the MAC's timeline, with their URL path (prefix + name).
func (s *Service) fileHandler(root *os.Root, prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if root == nil {
			httpError(w, http.StatusNotFound, "no files are served here")
			return
		}
		start := time.Now()
		name, err := cleanTFTPPath(r.PathValue("path"))
		if err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
		f, err := root.Open(name)
		sumOnly := false
		if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(name, ".sha256") {
			name, sumOnly = strings.TrimSuffix(name, ".sha256"), true
			f, err = root.Open(name)
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				httpError(w, http.StatusNotFound, "no file %s", name)
			} else {
				httpError(w, http.StatusForbidden, "cannot open %s", name)
			}
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			httpError(w, http.StatusNotFound, "not a file: %s", name)
			return
		}
		sum, err := s.sums.get(root, name, st)
		if err != nil {
			httpError(w, http.StatusInternalServerError, "checksum %s: %v", name, err)
			return
		}
		hexSum := hex.EncodeToString(sum)
		if sumOnly {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "%s  %s\n", hexSum, path.Base(name))
			return
		}
		w.Header().Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum)+":")
		w.Header().Set("X-Checksum-Sha256", hexSum)
		w.Header().Set("ETag", `"sha256-`+hexSum+`"`)
		w.Header().Set("Content-Type", "application/octet-stream")
		sw, _ := w.(*statusWriter)
		http.ServeContent(w, r, name, st.ModTime(), f)
		if sw == nil || r.Method == http.MethodHead {
			return // a HEAD is UEFI HTTP boot probing the size: no download
		}
		q := r.URL.Query()
		mac := q.Get("mac")
		if m, err := rackcloud.NormalizeMAC(mac); err == nil {
			mac = m
		} else {
			mac = s.macForIP(remoteIP(r))
		}
		if mac == "" {
			return
		}
		kind := EventHTTPFile
		switch q.Get("role") {
		case "kernel":
			kind = EventHTTPKernel
		case "initrd":
			kind = EventHTTPInitrd
		}
		ev := Event{MAC: mac, Kind: kind, IP: remoteIP(r).String(), File: cleanText(prefix+name, maxPeerText),
			Bytes: sw.bytes, Duration: time.Since(start)}
		if sw.code >= 400 {
			ev.Error = http.StatusText(sw.code)
		} else if rg := r.Header.Get("Range"); rg != "" {
			ev.Detail = "range " + cleanText(rg, maxPeerText)
		}
		s.record(ev)
	})
}

// checksums caches files' SHA-256 by name, size and modification time.
type checksums struct {
	mu     sync.Mutex
	m      map[string]sumEntry
	flight singleflight.Group
}

type sumEntry struct {
	size  int64
	mtime time.Time
	sum   []byte
}

func (c *checksums) get(root *os.Root, name string, st fs.FileInfo) ([]byte, error) {
	key := root.Name() + "\x00" + name
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && e.size == st.Size() && e.mtime.Equal(st.ModTime()) {
		return e.sum, nil
	}
	// The hosts of a rack powering on together ask for the same image at
	// once: hash each version of a file once, not once per request.
	version := fmt.Sprintf("%s\x00%d\x00%d", key, st.Size(), st.ModTime().UnixNano())
	v, err, _ := c.flight.Do(version, func() (any, error) {
		f, err := root.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return nil, err
		}
		sum := h.Sum(nil)
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string]sumEntry{}
		}
		c.m[key] = sumEntry{size: st.Size(), mtime: st.ModTime(), sum: sum}
		c.mu.Unlock()
		return sum, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

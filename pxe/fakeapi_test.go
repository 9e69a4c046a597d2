package pxe

import (
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeAPI is a control plane serving the boot wire format over real HTTP
// on loopback; it can be stopped and started again on the same address.
type fakeAPI struct {
	t        *testing.T
	mu       sync.Mutex
	profiles map[string]Profile
	events   []Event
	token    string
	lookups  int
	// stopAfter > 0 stops the API (listener closed) right after it
	// answered that many profile lookups.
	stopAfter int
	addr      string
	ln        net.Listener
	srv       *http.Server
}

func startFakeAPI(t *testing.T) *fakeAPI {
	a := &fakeAPI{t: t, profiles: map[string]Profile{}}
	a.mu.Lock()
	a.start("127.0.0.1:0")
	a.mu.Unlock()
	t.Cleanup(a.stop)
	return a
}

func (a *fakeAPI) URL() string { return "http://" + a.addr }

// start serves on addr; a.mu is held.
func (a *fakeAPI) start(addr string) {
	var ln net.Listener
	var err error
	// Re-listening on the port just closed may briefly fail: retry.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(a.t, err)
	a.addr = ln.Addr().String()
	a.ln = ln
	a.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ProfilesPath+"{mac}", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.token != "" && r.Header.Get("Authorization") != "Bearer "+a.token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		a.lookups++
		p, ok := a.profiles[r.PathValue("mac")]
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(p)
		if a.stopAfter > 0 && a.lookups >= a.stopAfter {
			// Stop taking connections, but let this answer reach the
			// client (closing the connection now could eat it).
			a.stopAfter = 0
			a.srv.SetKeepAlivesEnabled(false)
			_ = a.ln.Close()
		}
	})
	mux.HandleFunc("POST "+EventsPath, func(w http.ResponseWriter, r *http.Request) {
		var evs []Event
		if err := json.NewDecoder(r.Body).Decode(&evs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.events = append(a.events, evs...)
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	srv := &http.Server{Handler: mux}
	a.srv = srv
	go func() { _ = srv.Serve(ln) }()
}

func (a *fakeAPI) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil {
		_ = a.srv.Close()
		a.srv = nil
	}
}

func (a *fakeAPI) restart() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil {
		_ = a.srv.Close()
	}
	a.start(a.addr)
}

func (a *fakeAPI) setToken(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.token = tok
}

func (a *fakeAPI) set(p Profile) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.profiles[p.MAC] = p
}

func (a *fakeAPI) received() []Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Event(nil), a.events...)
}

// kinds returns the kinds of the events the API received for mac.
func (a *fakeAPI) kinds(mac string) []EventKind {
	var out []EventKind
	for _, e := range a.received() {
		if e.MAC == mac {
			out = append(out, e.Kind)
		}
	}
	return out
}

func containsKind(kinds []EventKind, k EventKind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

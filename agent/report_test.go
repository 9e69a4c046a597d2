package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackcloud/rackcloud"
)

// reportServer answers the agent's reports with the statuses in order
// (0: drop the connection), then 202, and keeps what it was sent.
type reportServer struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []*http.Request
	bodies   [][]byte
}

func newReportServer(t *testing.T, statuses ...int) *reportServer {
	s := &reportServer{statuses: statuses}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		s.mu.Lock()
		s.got = append(s.got, r)
		s.bodies = append(s.bodies, b.Bytes())
		code := http.StatusAccepted
		if len(s.statuses) > 0 {
			code, s.statuses = s.statuses[0], s.statuses[1:]
		}
		s.mu.Unlock()
		if code == 0 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		http.Error(w, "answer "+http.StatusText(code), code)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *reportServer) tries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

var testInventory = rackcloud.Inventory{CPUs: 2, MemoryMiB: 1024, Firmware: "bios",
	NICs: []rackcloud.InventoryNIC{{Name: "eth0", MAC: "52:54:00:aa:01:01"}}}

func quick(url string) Config {
	return Config{ReportURL: url, Token: "tok", RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}
}

// TestReportRetries: transport errors and 5xx answers are tried again,
// each try with the token and the inventory, until one is taken.
func TestReportRetries(t *testing.T) {
	srv := newReportServer(t, http.StatusServiceUnavailable, 0, http.StatusInternalServerError)
	var log bytes.Buffer
	cfg := quick(srv.URL + "/boot/52:54:00:aa:01:01/inventory")
	cfg.Log = &log
	if err := Report(context.Background(), cfg, testInventory); err != nil {
		t.Fatal(err)
	}
	if srv.tries() != 4 {
		t.Fatalf("%d tries, want 4 (3 failures, then taken)", srv.tries())
	}
	for i, r := range srv.got {
		if r.Method != http.MethodPost || r.URL.Path != "/boot/52:54:00:aa:01:01/inventory" {
			t.Errorf("try %d: %s %s", i, r.Method, r.URL.Path)
		}
		if h := r.Header.Get("Authorization"); h != "Bearer tok" {
			t.Errorf("try %d: Authorization %q", i, h)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("try %d: Content-Type %q", i, ct)
		}
		var got rackcloud.Inventory
		if err := json.Unmarshal(srv.bodies[i], &got); err != nil {
			t.Fatalf("try %d: %v", i, err)
		}
		if d := cmp.Diff(testInventory, got); d != "" {
			t.Errorf("try %d body (-want +got):\n%s", i, d)
		}
	}
	if !strings.Contains(log.String(), "try 3: ") || !strings.Contains(log.String(), "inventory reported") {
		t.Errorf("log:\n%s", log.String())
	}
	if strings.Contains(log.String(), "tok") {
		t.Error("the token is in the log")
	}
}

// TestReportStopsOn4xx: a refusal is not tried again, and says why.
func TestReportStopsOn4xx(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge} {
		srv := newReportServer(t, code)
		err := Report(context.Background(), quick(srv.URL+"/x"), testInventory)
		var refused *RefusedError
		if !errors.As(err, &refused) || refused.Status != code {
			t.Fatalf("%d: err %v, want a RefusedError", code, err)
		}
		if !strings.Contains(err.Error(), "answer "+http.StatusText(code)) {
			t.Errorf("%d: %v does not carry the server's answer", code, err)
		}
		if srv.tries() != 1 {
			t.Errorf("%d: %d tries, want 1", code, srv.tries())
		}
	}
}

// TestReportGivesUp: past RetryFor, Report stops with the last error.
func TestReportGivesUp(t *testing.T) {
	srv := newReportServer(t, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500,
		500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500)
	cfg := quick(srv.URL + "/x")
	cfg.RetryFor = 20 * time.Millisecond
	err := Report(context.Background(), cfg, testInventory)
	if err == nil || !strings.Contains(err.Error(), "not reported") || !strings.Contains(err.Error(), "500") {
		t.Fatalf("err %v", err)
	}
	if err := Report(context.Background(), Config{ReportURL: "ftp://x/"}, testInventory); err == nil {
		t.Fatal("an ftp URL was taken")
	}
}

func TestBootReportURL(t *testing.T) {
	for name, c := range map[string]struct{ cmdline, want string }{
		"netboot": {"console=ttyS0 rackcloud.mac=52:54:00:AA:01:01 rackcloud.callback=http://10.88.0.1:8080/boot/52:54:00:aa:01:01/callback rackcloud.token=T0k",
			"http://10.88.0.1:8080/boot/52:54:00:aa:01:01/inventory"},
		"https, prefix, query": {"rackcloud.mac=52-54-00-aa-01-02 rackcloud.callback=https://boot.example/x/cb?a=1",
			"https://boot.example/boot/52:54:00:aa:01:02/inventory"},
		"no mac":      {"rackcloud.callback=http://10.88.0.1/boot/x/callback", ""},
		"no callback": {"rackcloud.mac=52:54:00:aa:01:01", ""},
		"not http":    {"rackcloud.mac=52:54:00:aa:01:01 rackcloud.callback=tftp://10.88.0.1/x", ""},
	} {
		b := ParseCmdline(c.cmdline)
		got, err := b.ReportURL()
		if (err != nil) != (c.want == "") || got != c.want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, c.want)
		}
	}
	if b := ParseCmdline("rackcloud.token=T0k x"); b.Token != "T0k" {
		t.Errorf("token %q", b.Token)
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("rackcloud.mac=52:54:00:aa:01:01 rackcloud.callback=http://10.88.0.1:8080/boot/m/callback rackcloud.token=x")
	f.Add("rackcloud.callback=http://[::1 rackcloud.mac=")
	f.Fuzz(func(t *testing.T, s string) {
		b := ParseCmdline(s)
		u, err := b.ReportURL()
		if err == nil && !strings.HasSuffix(u, "/inventory") {
			t.Fatalf("%q: report URL %q", s, u)
		}
	})
}

// writeRoot makes a machine's /proc for Main's --root.
func writeRoot(t *testing.T, cmdline string) string {
	root := t.TempDir()
	for name, data := range map[string]string{
		"proc/cpuinfo": "processor\t: 0\nmodel name\t: Test CPU\n",
		"proc/meminfo": "MemTotal:        1048576 kB\n",
		"proc/cmdline": cmdline + "\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestMain*: the command line of both binaries.
func TestMainFromCmdline(t *testing.T) {
	srv := newReportServer(t)
	mac := "52:54:00:aa:01:03"
	root := writeRoot(t, "quiet rackcloud.mac="+mac+" rackcloud.callback="+srv.URL+"/boot/"+mac+"/callback rackcloud.token=T0k")
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), "rackcloud-agent", []string{"--root", root, "--from-cmdline"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if srv.tries() != 1 || srv.got[0].URL.Path != "/boot/"+mac+"/inventory" || srv.got[0].Header.Get("Authorization") != "Bearer T0k" {
		t.Fatalf("%d tries: %+v", srv.tries(), srv.got)
	}
	var got rackcloud.Inventory
	if err := json.Unmarshal(srv.bodies[0], &got); err != nil || got.CPUs != 1 || got.MemoryMiB != 1024 {
		t.Fatalf("%s: %v", srv.bodies[0], err)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q while reporting", out.String())
	}
}

func TestMainPrintsAndRefuses(t *testing.T) {
	root := writeRoot(t, "quiet")
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), "rackcloud agent", []string{"--root", root}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var got rackcloud.Inventory
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.CPUModel != "Test CPU" {
		t.Fatalf("%q: %v", out.String(), err)
	}

	srv := newReportServer(t, http.StatusForbidden)
	out.Reset()
	errOut.Reset()
	code := Main(context.Background(), "rackcloud agent", []string{"--root", root, "--report", srv.URL + "/x", "--token", "bad"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "inventory refused by "+srv.URL+"/x: 403") {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := Main(context.Background(), "rackcloud agent", []string{"--root", root, "--from-cmdline"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), ParamMAC) {
		t.Fatalf("no parameters on the command line: exit %d: %s", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := Main(context.Background(), "rackcloud agent", []string{"--help"}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "usage: rackcloud agent") || errOut.Len() != 0 {
		t.Fatalf("help: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	if code := Main(context.Background(), "rackcloud agent", []string{"--bogus"}, &out, &errOut); code != 2 {
		t.Fatalf("bad flag: exit %d", code)
	}
}

package pxe

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

func httpService(t *testing.T, mutate func(*Config)) (*Service, *StaticProfiles, *httptest.Server) {
	t.Helper()
	cfg := unitConfig(t)
	cfg.FilesDir = t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(cfg.FilesDir, "inspect"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(cfg.FilesDir, "inspect/vmlinuz"), []byte("0123456789abcdef"), 0o644))
	if mutate != nil {
		mutate(&cfg)
	}
	profiles := &StaticProfiles{}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Deps{Profiles: profiles, Registerer: reg, Gatherer: reg})
	require.NoError(t, err)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return s, profiles, srv
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestBootScripts(t *testing.T) {
	const mac = "52:54:00:aa:01:01"
	tests := map[string]struct {
		profile   *Profile
		discovery bool
		want      []string
		notWant   []string
		state     rackcloud.HostState
	}{
		"unknown host, discovery on": {discovery: true, state: rackcloud.HostDiscovered, want: []string{
			"#!ipxe", "is unknown: discovery",
			"kernel --name vmlinuz http://10.9.0.1:8080/files/inspect/vmlinuz?mac=52%3A54%3A00%3Aaa%3A01%3A01&role=kernel initrd=initrd.img console=ttyS0 quiet rackcloud.mac=52:54:00:aa:01:01 rackcloud.callback=http://10.9.0.1:8080/boot/52:54:00:aa:01:01/callback rackcloud.state=discovered rackcloud.token=",
			"initrd --name initrd.img http://10.9.0.1:8080/files/inspect/initrd.img?mac=52%3A54%3A00%3Aaa%3A01%3A01&role=initrd || goto retry",
			"chain --replace --autofree http://10.9.0.1:8080/boot/52:54:00:aa:01:01.ipxe",
		}},
		"unknown host, discovery off": {want: []string{"unknown and auto-discovery is off", "exit 1"}, notWant: []string{"kernel"}},
		"inspecting uses the discovery image": {discovery: true, state: rackcloud.HostInspecting,
			profile: &Profile{State: rackcloud.HostInspecting},
			want:    []string{"is inspecting", "/files/inspect/vmlinuz?", "rackcloud.state=inspecting"}},
		"provisioning boots the installer": {state: rackcloud.HostProvisioning,
			profile: &Profile{State: rackcloud.HostProvisioning, Boot: rackcloud.BootProfile{
				Kernel: "install/vmlinuz", Initrd: "https://images.example/initrd.img", Cmdline: "console=ttyS0 rackcloud.image=debian"}},
			want: []string{"/files/install/vmlinuz?mac=", "initrd --name initrd.img https://images.example/initrd.img ||",
				"initrd=initrd.img console=ttyS0 rackcloud.image=debian rackcloud.mac="}},
		"ready boots the disk": {state: rackcloud.HostReady, profile: &Profile{State: rackcloud.HostReady},
			want:    []string{"booting from the local disk", "iseq ${platform} efi && exit 1 ||", "exit 0"},
			notWant: []string{"kernel"}},
		"failed shows its reason and boots the disk": {state: rackcloud.HostFailed,
			profile: &Profile{State: rackcloud.HostFailed, StateReason: "step wipe: disk not found"},
			want:    []string{"echo rackcloud: step wipe: disk not found", "exit 0"}, notWant: []string{"kernel"}},
		"custom template": {state: rackcloud.HostProvisioning,
			profile: &Profile{State: rackcloud.HostProvisioning, Boot: rackcloud.BootProfile{Kernel: "k",
				Script: "#!ipxe\necho custom {{.MAC}} {{.State}}\nchain {{.KernelURL}}\n"}},
			want: []string{"echo custom 52:54:00:aa:01:01 provisioning", "chain http://10.9.0.1:8080/files/k?"}},
		"the control plane's action wins over the state's": {state: rackcloud.HostProvisioning,
			profile: &Profile{State: rackcloud.HostProvisioning, Action: ActionLocal},
			want:    []string{"booting from the local disk", "exit 0"}, notWant: []string{"kernel"}},
		"broken template falls back to the default": {state: rackcloud.HostProvisioning,
			profile: &Profile{State: rackcloud.HostProvisioning, Boot: rackcloud.BootProfile{Kernel: "k", Script: "#!ipxe\n{{.Nope"}},
			want:    []string{"kernel --name vmlinuz http://10.9.0.1:8080/files/k?"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, profiles, srv := httpService(t, func(c *Config) { c.AutoDiscovery = tc.discovery })
			if tc.profile != nil {
				p := *tc.profile
				p.MAC = mac
				require.NoError(t, profiles.Set(p))
			}
			resp, body := get(t, srv.URL+"/boot/52-54-00-AA-01-01.ipxe")
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			for _, w := range tc.want {
				require.Contains(t, body, w)
			}
			for _, w := range tc.notWant {
				require.NotContains(t, body, w)
			}
			evs := s.Timeline(mac)
			require.Len(t, evs, 1)
			require.Equal(t, EventHTTPScript, evs[0].Kind)
			require.Equal(t, tc.state, evs[0].State)
			// A netboot gets a token on its command line; the event
			// carries only its hash.
			if tok := scriptToken(body); tok != "" {
				require.Len(t, tok, 43, "32 bytes, base64url")
				require.Equal(t, tokenSum(tok), evs[0].BootTokenSHA256)
			} else if tc.profile == nil || tc.profile.Boot.Script == "" {
				require.Empty(t, evs[0].BootTokenSHA256, "no netboot, no token")
			}
		})
	}
}

func TestBootScriptBadMAC(t *testing.T) {
	_, _, srv := httpService(t, nil)
	resp, body := get(t, srv.URL+"/boot/not-a-mac.ipxe")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, "bad MAC")
	resp, _ = get(t, srv.URL+"/boot/52:54:00:aa:01:01.txt")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestCallback(t *testing.T) {
	s, _, srv := httpService(t, nil)
	token := bootToken(t, srv.URL, "52:54:00:aa:01:01")
	post := func(path, body string) int {
		code, _ := postCallback(t, srv.URL+path, token, body)
		return code
	}
	require.Equal(t, http.StatusNoContent, post("/boot/52:54:00:aa:01:01/callback", `{"mac":"52:54:00:aa:01:01","ip":"10.9.0.100"}`))
	require.Equal(t, http.StatusBadRequest, post("/boot/52:54:00:aa:01:01/callback", `{"mac":`))
	require.Equal(t, http.StatusBadRequest, post("/boot/zz/callback", `{}`))
	require.Equal(t, http.StatusRequestEntityTooLarge, post("/boot/52:54:00:aa:01:01/callback", `"`+strings.Repeat("x", maxCallbackBody)+`"`))
	evs := s.Timeline("52:54:00:aa:01:01")
	require.Len(t, evs, 2, "the script, then the callback: refused callbacks leave no event")
	require.Equal(t, EventCallback, evs[1].Kind)
	require.JSONEq(t, `{"mac":"52:54:00:aa:01:01","ip":"10.9.0.100"}`, string(evs[1].Data))

	resp, body := get(t, srv.URL+"/boot/52:54:00:aa:01:01/events")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var got []Event
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Len(t, got, 2)
	require.Equal(t, EventCallback, got[1].Kind)
	_, body = get(t, srv.URL+"/boot/52:54:00:aa:01:99/events")
	require.Equal(t, "[]\n", body)
}

func TestFilesRangeAndChecksums(t *testing.T) {
	s, _, srv := httpService(t, nil)
	content := []byte("0123456789abcdef")
	sum := sha256.Sum256(content)

	resp, body := get(t, srv.URL+"/files/inspect/vmlinuz?mac=52:54:00:aa:01:01&role=kernel", "Range", "bytes=4-9")
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.Equal(t, "456789", body)
	require.Equal(t, "bytes 4-9/16", resp.Header.Get("Content-Range"))
	require.Equal(t, hex.EncodeToString(sum[:]), resp.Header.Get("X-Checksum-Sha256"))
	require.Equal(t, "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":", resp.Header.Get("Repr-Digest"))

	resp, body = get(t, srv.URL+"/files/inspect/vmlinuz")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, string(content), body)
	etag := resp.Header.Get("ETag")
	resp, _ = get(t, srv.URL+"/files/inspect/vmlinuz", "If-None-Match", etag)
	require.Equal(t, http.StatusNotModified, resp.StatusCode)

	_, body = get(t, srv.URL+"/files/inspect/vmlinuz.sha256")
	require.Equal(t, hex.EncodeToString(sum[:])+"  vmlinuz\n", body)

	evs := s.Timeline("52:54:00:aa:01:01")
	require.Len(t, evs, 1)
	require.Equal(t, EventHTTPKernel, evs[0].Kind)
	require.Equal(t, int64(6), evs[0].Bytes)
	require.Equal(t, "range bytes=4-9", evs[0].Detail)

	// The checksum follows the file when it changes.
	require.NoError(t, os.WriteFile(filepath.Join(s.cfg.FilesDir, "inspect/vmlinuz"), []byte("new kernel, longer"), 0o644))
	resp, _ = get(t, srv.URL+"/files/inspect/vmlinuz")
	newSum := sha256.Sum256([]byte("new kernel, longer"))
	require.Equal(t, hex.EncodeToString(newSum[:]), resp.Header.Get("X-Checksum-Sha256"))
}

func TestFilesStayInTheirRoot(t *testing.T) {
	s, _, srv := httpService(t, nil)
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte("TOP SECRET"), 0o644))
	require.NoError(t, os.Symlink(secret, filepath.Join(s.cfg.FilesDir, "link")))
	for _, p := range []string{"/files/link", "/files/..%2f..%2fetc%2fpasswd", "/files/inspect", "/files/nope", "/ipxe/..%2F..%2Fetc%2Fpasswd"} {
		resp, body := get(t, srv.URL+p)
		require.GreaterOrEqual(t, resp.StatusCode, 400, "%s: %s", p, body)
		require.NotContains(t, body, "TOP SECRET")
		require.NotContains(t, body, "root:")
	}
	resp, body := get(t, srv.URL+"/ipxe/snponly.efi")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	st, err := os.Stat("/usr/lib/ipxe/snponly.efi")
	require.NoError(t, err)
	require.Equal(t, st.Size(), int64(len(body)))
}

func TestMetricsEndpoint(t *testing.T) {
	requireBinaries(t, "promtool")
	_, _, srv := httpService(t, nil)
	get(t, srv.URL+"/boot/52:54:00:aa:01:01.ipxe")
	resp, body := get(t, srv.URL+"/metrics")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, m := range []string{
		`rackcloud_boot_http_requests_total{code="200",handler="script"} 1`,
		`rackcloud_boot_events_total{kind="http.script"} 1`,
		`rackcloud_boot_profile_lookups_total{result="unknown"} 1`,
		`rackcloud_boot_control_plane_up 1`,
		`rackcloud_boot_dhcp_leases 0`,
		`rackcloud_boot_callbacks_refused_total{reason="replayed"} 0`,
	} {
		require.Contains(t, body, m)
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics: %s", out)
}

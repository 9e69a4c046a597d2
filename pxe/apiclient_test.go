package pxe

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

func newClient(t *testing.T, api *fakeAPI, cache string) *APIClient {
	t.Helper()
	c, err := NewAPIClient(APIConfig{BaseURL: api.URL(), Token: "s3cret", CacheFile: cache,
		Timeout: time.Second, Retry: 50 * time.Millisecond, Refresh: time.Hour}, testLogger(t))
	require.NoError(t, err)
	return c
}

func pollUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", d, what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestAPIClientCachesAndSurvivesOutages(t *testing.T) {
	ctx := context.Background()
	api := startFakeAPI(t)
	api.setToken("s3cret")
	const mac = "52:54:00:aa:01:01"
	api.set(Profile{MAC: mac, State: rackcloud.HostProvisioning, Version: 3,
		Boot: rackcloud.BootProfile{Kernel: "install/vmlinuz"}})
	cache := filepath.Join(t.TempDir(), "profiles.json")
	c := newClient(t, api, cache)

	p, err := c.Profile(ctx, mac)
	require.NoError(t, err)
	require.Equal(t, rackcloud.HostProvisioning, p.State)
	require.False(t, p.Cached)
	require.True(t, c.Reachable())
	_, err = c.Profile(ctx, "52:54:00:aa:01:02")
	require.ErrorIs(t, err, rackcloud.ErrNotFound)
	require.FileExists(t, cache)

	api.stop()
	p, err = c.Profile(ctx, mac)
	require.NoError(t, err)
	require.True(t, p.Cached, "answered from the cache")
	require.Equal(t, rackcloud.HostProvisioning, p.State)
	require.False(t, c.Reachable())
	_, err = c.Profile(ctx, "52:54:00:aa:01:02")
	require.ErrorIs(t, err, ErrUnavailable)

	// A restarted boot service still knows the host from the file.
	c2 := newClient(t, api, cache)
	p, err = c2.Profile(ctx, mac)
	require.NoError(t, err)
	require.True(t, p.Cached)
	require.Equal(t, int64(3), p.Version)

	// Events queue while the API is down and arrive when it is back; the
	// cache follows the state the API has meanwhile.
	c.Record(Event{Time: time.Now(), MAC: mac, Kind: EventDHCPDiscover})
	c.Record(Event{Time: time.Now(), MAC: mac, Kind: EventCallback})
	require.Equal(t, 2, c.Pending())
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- c.Run(runCtx) }()
	api.set(Profile{MAC: mac, State: rackcloud.HostReady, Version: 4})
	api.restart()
	pollUntil(t, 10*time.Second, "events delivered", func() bool { return c.Pending() == 0 })
	require.Equal(t, []EventKind{EventDHCPDiscover, EventCallback}, api.kinds(mac))
	pollUntil(t, 10*time.Second, "cache refreshed", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cache[mac].State == rackcloud.HostReady
	})
	require.True(t, c.Reachable())
	cancel()
	require.NoError(t, <-done)

	// A host deleted in the control plane is forgotten by the cache.
	api.mu.Lock()
	delete(api.profiles, mac)
	api.mu.Unlock()
	_, err = c.Profile(ctx, mac)
	require.ErrorIs(t, err, rackcloud.ErrNotFound)
	require.Equal(t, 0, c.Cached())
}

func TestAPIClientRejectsBadInput(t *testing.T) {
	_, err := NewAPIClient(APIConfig{BaseURL: "ftp://user:hunter2@api"}, nil)
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
	require.NotContains(t, err.Error(), "hunter2", "credentials never in errors")

	cache := filepath.Join(t.TempDir(), "profiles.json")
	require.NoError(t, os.WriteFile(cache, []byte("{not json"), 0o644))
	_, err = NewAPIClient(APIConfig{BaseURL: "http://127.0.0.1:1", CacheFile: cache}, nil)
	require.ErrorContains(t, err, "corrupt")
	b, _ := os.ReadFile(cache)
	require.Equal(t, "{not json", string(b), "left for the operator")
}

func TestAPIClientRejectsWrongAnswers(t *testing.T) {
	ctx := context.Background()
	api := startFakeAPI(t)
	const mac = "52:54:00:aa:01:01"
	api.set(Profile{MAC: "52:54:00:aa:01:99", State: rackcloud.HostReady}) // answers for another MAC
	api.mu.Lock()
	api.profiles[mac] = api.profiles["52:54:00:aa:01:99"]
	api.mu.Unlock()
	c := newClient(t, api, "")
	_, err := c.Profile(ctx, mac)
	require.Error(t, err)
	require.False(t, errors.Is(err, rackcloud.ErrNotFound))
	require.Equal(t, 0, c.Cached(), "a wrong answer is not cached")

	api.setToken("other")
	_, err = c.Profile(ctx, "52:54:00:aa:01:99")
	require.ErrorContains(t, err, "401")
	require.NotContains(t, err.Error(), "s3cret")
}

// TestScriptsWhileAPIDown: with the API stopped, a cached host still gets
// its own script and an unknown MAC the discovery image.
func TestScriptsWhileAPIDown(t *testing.T) {
	api := startFakeAPI(t)
	const known = "52:54:00:aa:01:01"
	api.set(Profile{MAC: known, State: rackcloud.HostReady})
	client := newClient(t, api, filepath.Join(t.TempDir(), "profiles.json"))
	_, err := client.Profile(context.Background(), known) // cached while the API was up
	require.NoError(t, err)
	api.stop()

	cfg := unitConfig(t)
	cfg.FilesDir = t.TempDir()
	s := unitService(t, cfg, client)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	_, body := get(t, srv.URL+"/boot/"+known+".ipxe")
	require.Contains(t, body, "is ready (control plane unreachable, cached profile)")
	require.Contains(t, body, "booting from the local disk")
	_, body = get(t, srv.URL+"/boot/52:54:00:aa:01:02.ipxe")
	require.Contains(t, body, "is unknown: discovery")
	require.Contains(t, body, "/files/inspect/vmlinuz?")
	require.False(t, client.Reachable())
}

// Events recorded while the API is down survive a restart of the boot
// service: they are spooled to disk and delivered, in order, by the next
// run once the API is back; the spool file then goes away.
func TestAPIClientSpoolsEventsAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	api := startFakeAPI(t)
	api.setToken("s3cret")
	const mac = "52:54:00:aa:02:01"
	cache := filepath.Join(t.TempDir(), "profiles.json")
	spool := cache + ".events"
	api.stop()

	c := newClient(t, api, cache)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- c.Run(runCtx) }()
	c.Record(Event{Time: time.Now(), MAC: mac, Kind: EventDHCPDiscover})
	c.Record(Event{Time: time.Now(), MAC: mac, Kind: EventTFTPDone, Detail: "ipxe.efi"})
	// The API is down: the first send fails, then the retry tick spools.
	pollUntil(t, 10*time.Second, "events spooled", func() bool {
		b, err := os.ReadFile(spool)
		return err == nil && strings.Contains(string(b), "ipxe.efi")
	})
	c.Record(Event{Time: time.Now(), MAC: mac, Kind: EventHTTPScript})
	cancel() // the boot service stops: the last event is spooled too
	require.NoError(t, <-done)
	require.Equal(t, 3, c.Pending())

	c2 := newClient(t, api, cache)
	require.Equal(t, 3, c2.Pending(), "the spooled events are queued again")
	api.restart()
	runCtx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() { done <- c2.Run(runCtx) }()
	c2.Record(Event{Time: time.Now(), MAC: mac, Kind: EventCallback})
	pollUntil(t, 10*time.Second, "events delivered", func() bool { return c2.Pending() == 0 })
	require.Equal(t, []EventKind{EventDHCPDiscover, EventTFTPDone, EventHTTPScript, EventCallback}, api.kinds(mac))
	pollUntil(t, 10*time.Second, "spool removed", func() bool {
		_, err := os.Stat(spool)
		return errors.Is(err, os.ErrNotExist)
	})
	cancel()
	require.NoError(t, <-done)

	// A corrupt spool does not stop the boot service: it is moved aside.
	require.NoError(t, os.WriteFile(spool, []byte("[{oops"), 0o644))
	c3 := newClient(t, api, cache)
	require.Equal(t, 0, c3.Pending())
	require.NoFileExists(t, spool)
	aside, err := filepath.Glob(spool + ".corrupt-*")
	require.NoError(t, err)
	require.Len(t, aside, 1)
	b, err := os.ReadFile(aside[0])
	require.NoError(t, err)
	require.Equal(t, "[{oops", string(b))
}

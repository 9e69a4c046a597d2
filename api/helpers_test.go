package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
	"github.com/rackcloud/rackcloud/vmctl"
)

func TestMain(m *testing.M) {
	// Streams send keep-alive comments often here, so that tests see
	// them and -race sees them written beside the events.
	api.KeepAliveInterval = 20 * time.Millisecond
	code := pgtest.Run(m)
	stopSharedAM()
	os.Exit(code)
}

// env is a real HTTP server over the API on a fresh database, with a
// running task engine.
type env struct {
	t      *testing.T
	pool   *pgxpool.Pool
	srv    *httptest.Server
	api    *api.API
	engine *tasks.Engine
	sealer *store.Sealer
	admin  string // an admin token
}

// testKinds are the guest and host task kinds as this test needs them:
// the real kinds' steps are registered by vmctl and the provisioner; these
// only move the guest through its states so the API's plumbing can be
// followed end to end.
// kindAwaitCallback is a test kind whose step waits for a host's boot
// callback.
const kindAwaitCallback = "test.await-callback"

func testKinds(pool *pgxpool.Pool) []tasks.Kind {
	setGuest := func(state rackcloud.GuestState) tasks.StepFunc {
		return func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			var p struct {
				GuestID string `json:"guest_id"`
			}
			if err := sc.Params(&p); err != nil {
				return nil, err
			}
			g, err := store.GetGuest(ctx, pool, p.GuestID)
			if err != nil {
				return nil, tasks.Permanent(err)
			}
			g.State = state
			_, err = store.UpdateGuest(ctx, pool, g)
			return map[string]string{"state": string(state)}, err
		}
	}
	deleteGuest := func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		var p struct {
			GuestID string `json:"guest_id"`
		}
		if err := sc.Params(&p); err != nil {
			return nil, err
		}
		err := store.DeleteGuest(ctx, pool, p.GuestID, 0)
		if err != nil && !strings.Contains(err.Error(), "not found") {
			return nil, err
		}
		return nil, nil
	}
	noop := func(context.Context, *tasks.StepContext) (any, error) { return nil, nil }
	return []tasks.Kind{
		{Name: api.KindGuestCreate, Steps: []tasks.Step{{Name: "place", Run: setGuest(rackcloud.GuestCreating)}, {Name: "start", Run: setGuest(rackcloud.GuestRunning)}}},
		{Name: api.KindGuestDelete, Steps: []tasks.Step{{Name: "stop", Run: setGuest(rackcloud.GuestDeleting)}, {Name: "remove", Run: deleteGuest}}},
		{Name: api.KindGuestStop, Steps: []tasks.Step{{Name: "stop", Run: setGuest(rackcloud.GuestStopped)}}},
		{Name: api.KindHostEnroll, Steps: []tasks.Step{{Name: "power-on", Run: noop}}},
		{Name: rackcloud.KindHostEvacuate, Steps: []tasks.Step{{Name: "evacuate", Run: noop}}},
		{Name: rackcloud.KindHostFence, Steps: []tasks.Step{{Name: "confirm", Run: noop}}},
		// A task that waits for the host's boot callback: it snoozes for
		// an hour, so only a Wake explains a prompt end.
		{Name: kindAwaitCallback, Steps: []tasks.Step{{Name: "await-callback", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			var n int
			err := pool.QueryRow(ctx, `SELECT count(*) FROM boot_events WHERE host_id::text = $1 AND kind = 'callback'`,
				strings.TrimPrefix(sc.Target, "host/")).Scan(&n)
			if err != nil {
				return nil, err
			}
			if n == 0 {
				return nil, tasks.Snooze(time.Hour, "boot callback")
			}
			return n, nil
		}}}},
		// A reboot that waits until it is canceled, to test cancels.
		{Name: api.KindGuestReboot, Steps: []tasks.Step{{Name: "wait", Run: func(ctx context.Context, _ *tasks.StepContext) (any, error) {
			<-ctx.Done()
			return nil, context.Cause(ctx)
		}}}},
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := pgtest.DB(t)
	engine, err := tasks.New(pool, tasks.Config{Workers: 2, PollInterval: 50 * time.Millisecond, RetryBase: 10 * time.Millisecond,
		RetryMax: 50 * time.Millisecond, LeaseTTL: 3 * time.Second, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	for _, k := range testKinds(pool) {
		require.NoError(t, engine.Register(k))
	}
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, engine.Start(ctx))
	sealer, err := store.NewSealer(bytes.Repeat([]byte{7}, 32))
	require.NoError(t, err)
	// Placement is the real one, on this database (its kinds are not
	// registered: guest tasks stay pending here).
	vm := vmctl.New(vmctl.Config{Pool: pool, Reconcile: -1})
	go func() { _ = vm.Run(ctx) }()
	a := api.New(api.Deps{Pool: pool, Logger: slog.New(slog.DiscardHandler), Tasks: engine, Sealer: sealer, Placer: vm, Consoles: vm,
		Alerts: sharedAM(t)})
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		require.NoError(t, engine.Stop(sctx))
		cancel()
	})
	_, secret, err := store.Bootstrap(context.Background(), pool, store.BootstrapOptions{})
	require.NoError(t, err)
	return &env{t: t, pool: pool, srv: srv, api: a, engine: engine, sealer: sealer, admin: secret}
}

// with returns a copy of e that reports to t (a subtest).
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// resp is an answer.
type resp struct {
	Code   int
	Header http.Header
	Body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), string(r.Body))
	return m
}

func (r resp) String() string { return string(r.Body) }

// do sends a request; body may be nil, a string (sent as is) or a value
// (marshalled).
func (e *env) do(method, path, token string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		require.NoError(e.t, err)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	require.NoError(e.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	return resp{Code: res.StatusCode, Header: res.Header, Body: b}
}

// must sends a request and requires the status code; it returns the
// decoded JSON object (nil for empty bodies).
func (e *env) must(code int, method, path, token string, body any, hdr ...string) map[string]any {
	e.t.Helper()
	r := e.do(method, path, token, body, hdr...)
	require.Equal(e.t, code, r.Code, "%s %s: %s", method, path, r.Body)
	if len(r.Body) == 0 {
		return nil
	}
	return r.json(e.t)
}

// problem requires a problem document of the status and type.
func (e *env) problem(r resp, code int, typ string) {
	e.t.Helper()
	require.Equal(e.t, code, r.Code, string(r.Body))
	require.Contains(e.t, r.Header.Get("Content-Type"), "application/problem+json", string(r.Body))
	m := r.json(e.t)
	require.Equal(e.t, typ, m["type"], string(r.Body))
	require.EqualValues(e.t, code, m["status"], string(r.Body))
	require.Equal(e.t, "urn:rackcloud:request:"+r.Header.Get("X-Request-ID"), m["instance"], string(r.Body))
}

// setHostState puts a host in a lifecycle state directly in the database
// (no provisioner runs in these tests).
func (e *env) setHostState(id string, state rackcloud.HostState) {
	e.t.Helper()
	_, err := e.pool.Exec(context.Background(), `UPDATE hosts SET state = $2 WHERE id = $1::uuid`, id, string(state))
	require.NoError(e.t, err)
}

// token creates a token (as admin) and returns its secret and ID.
func (e *env) token(name string, role rackcloud.Role, projects ...string) (string, string) {
	e.t.Helper()
	u := e.must(201, "POST", "/v1/users", e.admin, map[string]any{"name": name})
	if projects == nil {
		projects = []string{}
	}
	m := e.must(201, "POST", "/v1/tokens", e.admin, map[string]any{"name": "t", "user_id": u["id"], "role": role, "project_ids": projects})
	return m["secret"].(string), m["token"].(map[string]any)["id"].(string)
}

// waitTask follows the task's server-sent events until its last one and
// returns the event types seen.
func (e *env) waitTask(token, id string, hdr ...string) []string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id, query, _ := strings.Cut(id, "?")
	if query != "" {
		query = "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/tasks/"+id+"/events"+query, nil)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	require.Equal(e.t, 200, res.StatusCode)
	require.Equal(e.t, "text/event-stream", res.Header.Get("Content-Type"))
	var types []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			types = append(types, ev)
		}
	}
	require.NoError(e.t, sc.Err())
	return types
}

// snapshot returns every row of the API's tables (not the audit log), to
// prove that refused requests change nothing.
func (e *env) snapshot() string {
	e.t.Helper()
	var b strings.Builder
	for _, tbl := range []string{"regions", "zones", "racks", "hosts", "host_macs", "images", "projects", "quotas",
		"placement_groups", "guests", "users", "tokens", "token_projects", "alert_rules", "enroll_rules", "tasks", "task_owners"} {
		var s *string
		// watched_until is the task engine's note that someone follows
		// the task's events, not a change of the task.
		require.NoError(e.t, e.pool.QueryRow(context.Background(),
			`SELECT json_agg(to_jsonb(t) - 'watched_until' ORDER BY t::text)::text FROM `+tbl+` t`).Scan(&s))
		b.WriteString(tbl + ": ")
		if s != nil {
			b.WriteString(*s)
		}
		b.WriteString("\n")
	}
	return b.String()
}

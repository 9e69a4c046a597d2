// Command api benchmarks rackcloud's REST API (huma/v2 on net/http)
// against a plain net/http handler doing the same database work, in the
// same run, on the same PostgreSQL, with wrk (Debian's package) as the
// load generator on loopback:
//
//   - list: GET /v1/hosts?limit=100 over 10,000 hosts (token check, one
//     keyset page, JSON with a Link header);
//   - create: POST /v1/guests up to task creation (token check, body
//     validation, one transaction: project, image, guest insert charged to
//     the quota, task submit, task owner, audit event).
//
// Both servers authenticate with the same bearer token and call the same
// store and task-engine functions; the difference is huma's routing,
// validation, serialization and middleware. Rounds alternate between the
// two so that drift in the machine's load hits both.
//
// The last line is
//
//	BENCH api <scenario>_rps=<rackcloud> plain_<scenario>_rps=<peer> ratio=<rackcloud/peer>
//
// for the scenario with the lower ratio; the lines before it give both
// scenarios with their p99 latencies.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/lab/postgres"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/api:", err)
		os.Exit(1)
	}
}

type config struct {
	hosts       int
	connections int
	threads     int
	duration    time.Duration
	rounds      int
	pool        int
	sweep       bool
}

func run() error {
	var cfg config
	flag.IntVar(&cfg.hosts, "hosts", 10000, "hosts in the database")
	flag.IntVar(&cfg.connections, "c", 64, "concurrent clients (wrk -c)")
	flag.IntVar(&cfg.threads, "t", 2, "wrk threads")
	flag.DurationVar(&cfg.duration, "d", 8*time.Second, "duration of one wrk run")
	flag.IntVar(&cfg.rounds, "rounds", 2, "rounds per scenario and server (alternating)")
	flag.IntVar(&cfg.pool, "pool", 8, "database connections shared by both servers")
	flag.BoolVar(&cfg.sweep, "sweep", true, "also measure p99 at 4, 8, 16 and 32 clients")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return errors.New("wrk not found: install Debian's wrk (make deps)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	dir, err := os.MkdirTemp("", "rackcloud-bench-api-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // postgres runs as its own user
		return err
	}
	pg, err := postgres.Start(ctx, postgres.Config{Dir: filepath.Join(dir, "pg")})
	if err != nil {
		return err
	}
	defer pg.Stop()
	if err := pg.CreateDatabase(ctx, "bench"); err != nil {
		return err
	}
	pool, err := store.NewPool(ctx, pg.URL("bench")+"&pool_max_conns="+strconv.Itoa(cfg.pool))
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool); err != nil {
		return err
	}
	fx, err := seed(ctx, pool, cfg.hosts)
	if err != nil {
		return err
	}
	// An engine that only submits: the benchmark stops at task creation.
	engine, err := tasks.New(pool, tasks.Config{Workers: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	if err := engine.Register(tasks.Kind{Name: api.KindGuestCreate, Steps: []tasks.Step{{Name: "place",
		Run: func(context.Context, *tasks.StepContext) (any, error) { return nil, nil }}}}); err != nil {
		return err
	}
	sealer, err := store.NewSealer(make([]byte, store.SecretKeySize))
	if err != nil {
		return err
	}
	rc := api.New(api.Deps{Pool: pool, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(), Tasks: engine, Sealer: sealer})
	rcURL, stopRC, err := serve(rc.Handler())
	if err != nil {
		return err
	}
	defer stopRC()
	plainURL, stopPlain, err := serve(plainHandler(pool, engine))
	if err != nil {
		return err
	}
	defer stopPlain()

	// Both answer the same thing before we time them.
	if err := sameAnswers(ctx, rcURL, plainURL, fx); err != nil {
		return err
	}

	lua := filepath.Join(dir, "post.lua")
	if err := os.WriteFile(lua, []byte(postScript(fx)), 0o644); err != nil {
		return err
	}
	type scenario struct {
		name string
		args func(base, server string) []string
	}
	scenarios := []scenario{
		{"list", func(base, _ string) []string {
			return []string{"-H", "Authorization: Bearer " + fx.token, base + "/v1/hosts?limit=100"}
		}},
		{"create", func(base, server string) []string {
			return []string{"-s", lua, base + "/v1/guests", "--", server}
		}},
	}
	type result struct{ rps, p99 []float64 }
	results := map[string]*result{}
	for _, sc := range scenarios {
		for _, server := range []string{"rackcloud", "plain"} {
			results[sc.name+"/"+server] = &result{}
		}
	}
	for round := 0; round < cfg.rounds; round++ {
		for _, sc := range scenarios {
			order := []string{"rackcloud", "plain"}
			if round%2 == 1 {
				order = []string{"plain", "rackcloud"}
			}
			for _, server := range order {
				base := rcURL
				if server == "plain" {
					base = plainURL
				}
				args := append([]string{"-t", strconv.Itoa(cfg.threads), "-c", strconv.Itoa(cfg.connections),
					"-d", cfg.duration.String(), "--latency", "--timeout", "5s"}, sc.args(base, fmt.Sprintf("%s-r%d", server, round))...)
				rps, p99, non2xx, err := runWrk(ctx, wrk, args)
				if err != nil {
					return fmt.Errorf("%s %s: %w", sc.name, server, err)
				}
				if non2xx > 0 {
					return fmt.Errorf("%s %s: %d responses were not 2xx", sc.name, server, non2xx)
				}
				r := results[sc.name+"/"+server]
				r.rps, r.p99 = append(r.rps, rps), append(r.p99, p99)
				fmt.Printf("round %d %-6s %-9s %8.0f req/s  p99 %6.1f ms\n", round+1, sc.name, server, rps, p99)
			}
		}
	}
	var count int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM guests`).Scan(&count); err != nil {
		return err
	}
	fmt.Printf("guests created during the run: %d (each with its task and audit event)\n", count)

	// wrk keeps every client busy (a closed loop), so the mean latency is
	// clients / throughput: at 64 clients p99 < 50 ms needs well over 1,280
	// req/s. The sweep shows up to how many clients the target holds.
	if cfg.sweep {
		for _, sc := range scenarios {
			for i, c := range []int{4, 8, 16, 32} {
				order := []string{"rackcloud", "plain"}
				if i%2 == 1 {
					order = []string{"plain", "rackcloud"}
				}
				for _, server := range order {
					base := rcURL
					if server == "plain" {
						base = plainURL
					}
					args := append([]string{"-t", strconv.Itoa(min(cfg.threads, c)), "-c", strconv.Itoa(c),
						"-d", (cfg.duration / 2).String(), "--latency", "--timeout", "5s"}, sc.args(base, fmt.Sprintf("%s-s%d", server, c))...)
					rps, p99, non2xx, err := runWrk(ctx, wrk, args)
					if err != nil {
						return fmt.Errorf("sweep %s %s: %w", sc.name, server, err)
					}
					if non2xx > 0 {
						return fmt.Errorf("sweep %s %s: %d responses were not 2xx", sc.name, server, non2xx)
					}
					fmt.Printf("sweep  %-6s %-9s %3d clients %8.0f req/s  p99 %6.1f ms\n", sc.name, server, c, rps, p99)
				}
			}
		}
	}

	worst, worstRatio := "", 0.0
	var last string
	for _, sc := range scenarios {
		r, p := results[sc.name+"/rackcloud"], results[sc.name+"/plain"]
		rr, pr := median(r.rps), median(p.rps)
		ratio := rr / pr
		fmt.Printf("%s: rackcloud %.0f req/s p99 %.1f ms; plain net/http %.0f req/s p99 %.1f ms; ratio %.2f (target >= 0.7, p99 < 50 ms at %d clients)\n",
			sc.name, rr, median(r.p99), pr, median(p.p99), ratio, cfg.connections)
		line := fmt.Sprintf("BENCH api %s_rps=%.0f plain_%s_rps=%.0f ratio=%.2f", sc.name, rr, sc.name, pr, ratio)
		if worst == "" || ratio < worstRatio {
			worst, worstRatio, last = sc.name, ratio, line
		}
	}
	fmt.Println(last)
	return nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// fixture is what the benchmark's requests refer to.
type fixture struct {
	token, project, image string
}

func seed(ctx context.Context, pool *pgxpool.Pool, hosts int) (fixture, error) {
	var fx fixture
	err := store.InTx(ctx, pool, func(tx pgx.Tx) error {
		r, err := store.CreateRegion(ctx, tx, rackcloud.Region{Meta: rackcloud.Meta{Name: "bench"}})
		if err != nil {
			return err
		}
		z, err := store.CreateZone(ctx, tx, rackcloud.Zone{Meta: rackcloud.Meta{Name: "z1"}, RegionID: r.ID})
		if err != nil {
			return err
		}
		rk, err := store.CreateRack(ctx, tx, rackcloud.Rack{Meta: rackcloud.Meta{Name: "r1"}, ZoneID: z.ID, Positions: 42})
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO hosts (name, rack_id, state, power, cpu_cores, memory_mib, disk_gib, labels)
			SELECT format('host-%s', lpad(i::text, 5, '0')), $1, 'ready', 'on', 64, 262144, 3840,
				jsonb_build_object('row', (i % 10)::text, 'ssd', 'true')
			FROM generate_series(1, $2) i`, rk.ID, hosts); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO host_macs (mac, host_id)
			SELECT ('52:54:00:' || substr(md5(h.name), 1, 2) || ':' || substr(md5(h.name), 3, 2) || ':' || substr(md5(h.name), 5, 2))::macaddr, h.id
			FROM hosts h ON CONFLICT DO NOTHING`); err != nil {
			return err
		}
		im, err := store.CreateImage(ctx, tx, rackcloud.Image{Meta: rackcloud.Meta{Name: "debian"}, URL: "http://127.0.0.1/d.qcow2",
			Checksum: "sha256:" + strings.Repeat("ab", 32), Format: rackcloud.FormatQCOW2})
		if err != nil {
			return err
		}
		p, err := store.CreateProject(ctx, tx, rackcloud.Project{Meta: rackcloud.Meta{Name: "bench"}})
		if err != nil {
			return err
		}
		if _, err := store.SetQuota(ctx, tx, p.ID, 0, rackcloud.Resources{CPUCores: 1 << 30, MemoryMiB: 1 << 50, DiskGiB: 1 << 50}, 0); err != nil {
			return err
		}
		_, secret, err := store.Bootstrap(ctx, tx, store.BootstrapOptions{})
		fx = fixture{token: secret, project: p.ID, image: im.ID}
		return err
	})
	if err != nil {
		return fx, err
	}
	_, err = pool.Exec(ctx, `ANALYZE`)
	return fx, err
}

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	// wrk closes its connections mid-request when a run ends; huma then
	// logs a superfluous WriteHeader while answering the dead connection.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// postScript makes wrk POST guests with unique names per thread and
// request (names are unique per project).
func postScript(fx fixture) string {
	return `
local counter = 0
local threads = {}
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  prefix = args[1] .. "-t" .. tid .. "-"
  n = 0
end
request = function()
  n = n + 1
  local body = '{"project_id":"` + fx.project + `","name":"' .. prefix .. n .. '","kind":"vm","flavor":{"vcpu":1,"memory_mib":512,"disk_gib":10},"image_id":"` + fx.image + `"}'
  return wrk.format("POST", nil, {["Authorization"] = "Bearer ` + fx.token + `", ["Content-Type"] = "application/json"}, body)
end
`
}

var (
	rpsRE    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	p99RE    = regexp.MustCompile(`\n\s+99%\s+([0-9.]+)(us|ms|s)\b`)
	non2xxRE = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	errsRE   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// runWrk runs wrk and returns requests/s, the p99 latency in ms and the
// count of non-2xx answers.
func runWrk(ctx context.Context, wrk string, args []string) (float64, float64, int, error) {
	out, err := exec.CommandContext(ctx, wrk, args...).CombinedOutput()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	s := string(out)
	m := rpsRE.FindStringSubmatch(s)
	l := p99RE.FindStringSubmatch(s)
	if m == nil || l == nil {
		return 0, 0, 0, fmt.Errorf("cannot read wrk's output:\n%s", s)
	}
	if e := errsRE.FindStringSubmatch(s); e != nil && (e[1] != "0" || e[4] != "0") {
		return 0, 0, 0, fmt.Errorf("wrk socket errors: %s", e[0])
	}
	rps, _ := strconv.ParseFloat(m[1], 64)
	p99, _ := strconv.ParseFloat(l[1], 64)
	switch l[2] {
	case "us":
		p99 /= 1000
	case "s":
		p99 *= 1000
	}
	non2xx := 0
	if n := non2xxRE.FindStringSubmatch(s); n != nil {
		non2xx, _ = strconv.Atoi(n[1])
	}
	return rps, p99, non2xx, nil
}

// sameAnswers checks that both servers list the same hosts and accept a
// guest.
func sameAnswers(ctx context.Context, a, b string, fx fixture) error {
	get := func(base string) ([]string, string, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/hosts?limit=100", nil)
		req.Header.Set("Authorization", "Bearer "+fx.token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer res.Body.Close()
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		if res.StatusCode != 200 {
			return nil, "", fmt.Errorf("%s: status %d", base, res.StatusCode)
		}
		if err := json.NewDecoder(res.Body).Decode(&page); err != nil {
			return nil, "", err
		}
		ids := make([]string, len(page.Items))
		for i, it := range page.Items {
			ids[i] = it.ID
		}
		return ids, res.Header.Get("Link"), nil
	}
	x, lx, err := get(a)
	if err != nil {
		return err
	}
	y, ly, err := get(b)
	if err != nil {
		return err
	}
	if strings.Join(x, ",") != strings.Join(y, ",") || len(x) != 100 || lx != ly {
		return fmt.Errorf("the two servers disagree on the first page of hosts (%d vs %d items; %q vs %q)", len(x), len(y), lx, ly)
	}
	for i, base := range []string{a, b} {
		body := fmt.Sprintf(`{"project_id":%q,"name":"check-%d","kind":"vm","flavor":{"vcpu":1,"memory_mib":512,"disk_gib":10},"image_id":%q}`, fx.project, i, fx.image)
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/guests", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+fx.token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != 202 || !strings.HasPrefix(res.Header.Get("Location"), "/v1/tasks/") {
			return fmt.Errorf("%s: POST /v1/guests answered %d, Location %q", base, res.StatusCode, res.Header.Get("Location"))
		}
	}
	return nil
}

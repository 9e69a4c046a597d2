// Command monitor benchmarks rackcloud's Prometheus HTTP service
// discovery and fleet metrics with 10,000 hosts and 100,000 guests in
// PostgreSQL, against the real node exporter's own scrape (Debian's
// package) in the same run on the same machine: Prometheus asks both once
// per interval, so a discovery answer or a fleet scrape should cost about
// what one host's node exporter scrape costs.
//
// /metrics is what the monitor registers: the fleet counts and one
// rackcloud_host_info, rackcloud_host_heartbeat_age_seconds (every host
// heartbeats) and, for the hosts in provisioning, rackcloud_host_step_age_seconds
// series per host.
//
// Each round asks, in turn, for /v1/sd/hosts, /v1/sd/guests and /metrics
// (through the real handlers behind a loopback HTTP server, with the
// bearer token checked against the database every time) and for the node
// exporter's /metrics; rounds interleave so that drift in the machine's
// load hits all of them. The inventory snapshot behind the answers is
// reloaded in the background as it is in the server (its load time is
// printed too).
//
// The last line is
//
//	BENCH monitor sd_ms=<median of the slower SD answer> metrics_ms=<median> node_exporter_ms=<median> ratio=<sd/node exporter> goals=<met|missed>
//
// (goals: SD within 100 ms, /metrics within 250 ms) and the lines before
// it give every median with its p90.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/postgres"
	"github.com/rackcloud/rackcloud/lab/proc"
	"github.com/rackcloud/rackcloud/monitor"
	"github.com/rackcloud/rackcloud/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/monitor:", err)
		os.Exit(1)
	}
}

func run() error {
	hosts := flag.Int("hosts", 10000, "hosts in the database")
	guests := flag.Int("guests", 100000, "guests in the database, placed on the hosts")
	rounds := flag.Int("rounds", 30, "rounds (each asks every endpoint once)")
	maxAge := flag.Duration("max-age", monitor.DefaultMaxAge, "how old the inventory snapshot may get")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	dir, err := os.MkdirTemp("", "rackcloud-bench-monitor-")
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
	pool, err := store.NewPool(ctx, pg.URL("bench"))
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool); err != nil {
		return err
	}
	start := time.Now()
	token, err := seed(ctx, pool, *hosts, *guests)
	if err != nil {
		return err
	}
	fmt.Printf("seeded %d hosts and %d guests in %s\n", *hosts, *guests, time.Since(start).Round(time.Millisecond))

	reg := prometheus.NewRegistry()
	mon, err := monitor.New(monitor.Config{Pool: pool, MaxAge: *maxAge, Registerer: reg})
	if err != nil {
		return err
	}
	start = time.Now()
	if _, err := mon.Inventory.Snapshot(ctx); err != nil {
		return err
	}
	fmt.Printf("inventory load (the background reload every %s): %s\n", *maxAge, time.Since(start).Round(time.Millisecond))
	base, stop, err := serve(mon, reg)
	if err != nil {
		return err
	}
	defer stop()

	ne, neURL, err := startNodeExporter(ctx, dir)
	if err != nil {
		return err
	}
	defer ne.Stop(syscall.SIGTERM, 5*time.Second)

	type endpoint struct {
		name, url, token string
		ms               []float64
		bytes            int
	}
	eps := []*endpoint{
		{name: "sd_hosts", url: base + "/v1/sd/hosts", token: token},
		{name: "sd_guests", url: base + "/v1/sd/guests", token: token},
		{name: "fleet_metrics", url: base + "/metrics"},
		{name: "node_exporter", url: neURL},
	}
	client := &http.Client{Timeout: time.Minute}
	for r := -2; r < *rounds; r++ { // two rounds of warm-up
		for _, e := range eps {
			ms, n, err := fetch(ctx, client, e.url, e.token)
			if err != nil {
				return fmt.Errorf("%s: %w", e.name, err)
			}
			if r >= 0 {
				e.ms = append(e.ms, ms)
				e.bytes = n
			}
		}
	}
	for _, e := range eps {
		fmt.Printf("%-14s median %7.2f ms  p90 %7.2f ms  %9d bytes\n", e.name, pct(e.ms, 50), pct(e.ms, 90), e.bytes)
	}
	// The first answer from a new snapshot renders it (later ones reuse
	// the rendering): ask a fresh monitor once, after its load.
	fresh, err := monitor.New(monitor.Config{Pool: pool, MaxAge: *maxAge})
	if err != nil {
		return err
	}
	if _, err := fresh.Inventory.Snapshot(ctx); err != nil {
		return err
	}
	freshBase, stopFresh, err := serve(fresh, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer stopFresh()
	for _, kind := range []string{"hosts", "guests"} {
		ms, _, err := fetch(ctx, client, freshBase+"/v1/sd/"+kind, token)
		if err != nil {
			return err
		}
		fmt.Printf("sd_%-11s first answer from a new snapshot (rendered on load) %7.2f ms\n", kind, ms)
	}
	sd := max(pct(eps[0].ms, 50), pct(eps[1].ms, 50))
	peer := pct(eps[3].ms, 50)
	metrics := pct(eps[2].ms, 50)
	goals := "met"
	if sd > sdGoalMS || metrics > metricsGoalMS {
		goals = "missed"
	}
	fmt.Printf("BENCH monitor sd_ms=%.2f metrics_ms=%.2f node_exporter_ms=%.2f ratio=%.2f goals=%s\n", sd, metrics, peer, sd/peer, goals)
	return nil
}

// Goals of the medians: what Prometheus can ask every refresh and scrape
// without the server noticing.
const (
	sdGoalMS      = 100
	metricsGoalMS = 250
)

// serve runs mon's SD and reg's /metrics on a loopback HTTP server.
func serve(mon *monitor.Monitor, reg *prometheus.Registry) (string, func(), error) {
	mux := http.NewServeMux()
	mux.Handle(monitor.SDPath, mon.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// fetch GETs url and reads the whole answer, returning the milliseconds
// it took and its size.
func fetch(ctx context.Context, c *http.Client, url, token string) (float64, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	ms := float64(time.Since(start).Microseconds()) / 1000
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return ms, int(n), err
}

func pct(v []float64, p int) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func startNodeExporter(ctx context.Context, dir string) (*proc.Process, string, error) {
	bin, err := exec.LookPath("prometheus-node-exporter")
	if err != nil {
		return nil, "", fmt.Errorf("prometheus-node-exporter is not installed (run lab/install.sh): %w", err)
	}
	port, err := proc.FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := proc.Start(proc.Spec{Name: "node-exporter", Path: bin, Log: filepath.Join(dir, "node-exporter.log"),
		Args: []string{"--web.listen-address=" + addr, "--no-collector.systemd"}})
	if err != nil {
		return nil, "", err
	}
	if err := p.WaitTCP(ctx, addr); err != nil {
		p.Stop(syscall.SIGTERM, 5*time.Second)
		return nil, "", err
	}
	return p, "http://" + addr + "/metrics", nil
}

// seed makes 10 zones of 10 racks, hosts spread over them (half kvm, half
// docker, ready, each with a provisioning address and a BMC), guests
// placed round-robin on hosts of their kind's role (one in ten exposes
// metrics), and an admin token.
func seed(ctx context.Context, pool *pgxpool.Pool, hosts, guests int) (string, error) {
	var token string
	err := store.InTx(ctx, pool, func(tx pgx.Tx) error {
		r, err := store.CreateRegion(ctx, tx, rackcloud.Region{Meta: rackcloud.Meta{Name: "bench"}})
		if err != nil {
			return err
		}
		for z := range 10 {
			zn, err := store.CreateZone(ctx, tx, rackcloud.Zone{Meta: rackcloud.Meta{Name: fmt.Sprintf("z%d", z)}, RegionID: r.ID})
			if err != nil {
				return err
			}
			for k := range 10 {
				if _, err := store.CreateRack(ctx, tx, rackcloud.Rack{Meta: rackcloud.Meta{Name: fmt.Sprintf("r%d", k)}, ZoneID: zn.ID, Positions: 42}); err != nil {
					return err
				}
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO hosts (name, rack_id, role, state, power, cpu_cores, memory_mib, disk_gib, labels,
				provisioning_ipv4, bmc_address, bmc_protocol)
			SELECT format('host-%s', lpad(i::text, 5, '0')), racks.id, CASE WHEN i % 2 = 0 THEN 'kvm' ELSE 'docker' END,
				'ready', 'on', 64, 262144, 3840, jsonb_build_object('row', (i % 10)::text, 'ssd', 'true'),
				('10.0.0.0'::inet + i)::inet, format('10.128.%s.%s:623', i / 256, i % 256), 'ipmi'
			FROM generate_series(1, $1) i
			JOIN LATERAL (SELECT id FROM racks ORDER BY name, id OFFSET i % 100 LIMIT 1) racks ON true`, hosts); err != nil {
			return fmt.Errorf("hosts: %w", err)
		}
		im, err := store.CreateImage(ctx, tx, rackcloud.Image{Meta: rackcloud.Meta{Name: "debian"}, URL: "http://127.0.0.1/d.qcow2",
			Checksum: "sha256:" + fmt.Sprintf("%064d", 0), Format: rackcloud.FormatQCOW2})
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
		// The claim trigger would check each guest on its own (minutes for
		// 100,000); skip it and charge the hosts once, as migration 0500
		// charges guests placed before it.
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `WITH h AS (SELECT id, role, row_number() OVER (PARTITION BY role ORDER BY name) - 1 AS n,
				count(*) OVER (PARTITION BY role) AS total FROM hosts)
			INSERT INTO guests (project_id, name, kind, vcpu, memory_mib, disk_gib, image_id, state, host_id, labels)
			SELECT $1, format('guest-%s', lpad(i::text, 6, '0')), CASE WHEN i % 2 = 0 THEN 'vm' ELSE 'container' END,
				1, 1024, 10, $2, 'running', h.id,
				CASE WHEN i % 10 = 0 THEN '{"metrics_port": "9102", "app": "web"}'::jsonb ELSE '{"app": "batch"}'::jsonb END
			FROM generate_series(1, $3) i
			JOIN h ON h.role = CASE WHEN i % 2 = 0 THEN 'kvm' ELSE 'docker' END AND h.n = (i / 2) % h.total`, p.ID, im.ID, guests); err != nil {
			return fmt.Errorf("guests: %w", err)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = origin`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE host_usage u SET used_vcpu = s.vcpu, used_memory_mib = s.mem, used_disk_gib = s.disk, guests = s.n
			FROM (SELECT host_id, sum(vcpu) AS vcpu, sum(memory_mib) AS mem, sum(disk_gib) AS disk, count(*) AS n
				FROM guests WHERE host_id IS NOT NULL GROUP BY host_id) s
			WHERE u.host_id = s.host_id`); err != nil {
			return fmt.Errorf("charge guests: %w", err)
		}
		// Every host's agent called in within the last minute; one host in
		// a hundred is provisioning, in a step of a running task.
		if _, err := tx.Exec(ctx, `UPDATE hosts SET last_heartbeat = now() - (random() * interval '60 seconds')`); err != nil {
			return fmt.Errorf("heartbeats: %w", err)
		}
		if _, err := tx.Exec(ctx, `WITH p AS (UPDATE hosts SET state = 'provisioning' WHERE name LIKE '%00' RETURNING id),
				t AS (SELECT gen_random_uuid() AS id, p.id AS host FROM p)
			INSERT INTO tasks (id, root_id, kind, target, state, step, step_name, started_at)
			SELECT t.id, t.id, 'host.provision', 'host/' || t.host::text, 'running', 2, 'await-install', now() - interval '10 minutes'
			FROM t`); err != nil {
			return fmt.Errorf("provisioning tasks: %w", err)
		}
		_, token, err = store.Bootstrap(ctx, tx, store.BootstrapOptions{})
		return err
	})
	return token, err
}

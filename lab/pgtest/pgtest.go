// Package pgtest gives each test a fresh PostgreSQL database with the store
// migrations applied. With DATABASE_URL set it creates the databases there
// (the role needs CREATEDB); otherwise it starts one throwaway cluster per
// test process (lab/postgres) and stops it by PID when the tests end.
//
// A package that uses it must call Main (or Run) from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rackcloud/rackcloud/lab/postgres"
	"github.com/rackcloud/rackcloud/store"
)

var (
	mainCalled bool
	mu         sync.Mutex
	cluster    *postgres.Cluster
	clusterDir string
	adminURL   string // a URL to a database we may CREATE DATABASE from
	template   string // migrated template database, per process
	setupErr   error
	setupOnce  sync.Once
	seq        atomic.Int64
	urls       sync.Map // testing.TB -> url
)

// Main runs the tests and then stops the cluster (if one was started) and
// drops the template database. It calls os.Exit.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has more to clean up: it returns the
// tests' exit code instead of exiting.
func Run(m *testing.M) int {
	mainCalled = true
	code := m.Run()
	teardown()
	return code
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if u := os.Getenv("DATABASE_URL"); u != "" {
		adminURL = u
	} else {
		dir, err := os.MkdirTemp("", "rackcloud-pgtest-")
		if err != nil {
			return err
		}
		clusterDir = dir
		c, err := postgres.Start(ctx, postgres.Config{Dir: dir})
		if err != nil {
			return err
		}
		cluster = c
		adminURL = c.URL("postgres")
	}
	template = fmt.Sprintf("rctpl_%d", os.Getpid())
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("pgtest: connect %s: %w", store.Redact(adminURL), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+template+` WITH (FORCE)`); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+template); err != nil {
		return fmt.Errorf("pgtest: create template: %w", err)
	}
	pool, err := store.NewPool(ctx, withDB(adminURL, template))
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("pgtest: migrate template: %w", err)
	}
	return nil
}

func teardown() {
	if template != "" && setupErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if c, err := pgx.Connect(ctx, adminURL); err == nil {
			_, _ = c.Exec(ctx, `DROP DATABASE IF EXISTS `+template+` WITH (FORCE)`)
			c.Close(ctx)
		}
		cancel()
	}
	if cluster != nil {
		cluster.Stop()
	}
	if clusterDir != "" {
		_ = os.RemoveAll(clusterDir)
	}
}

func withDB(u, db string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	p.Path = "/" + db
	// Test packages run side by side on two cores with -race: a new
	// connection may wait longer than a production server's 5 s.
	if q := p.Query(); q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "30")
		p.RawQuery = q.Encode()
	}
	return p.String()
}

// URL creates (once per test) a fresh migrated database for t and returns
// its connection string; it is dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	if v, ok := urls.Load(t); ok {
		return v.(string)
	}
	if !mainCalled {
		t.Fatal("pgtest: call pgtest.Main(m) from the package's TestMain")
	}
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatalf("pgtest: %v", setupErr)
	}
	name := fmt.Sprintf("rct_%d_%d", os.Getpid(), seq.Add(1))
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer admin.Close(ctx)
	mu.Lock()
	_, err = admin.Exec(ctx, `CREATE DATABASE `+name+` TEMPLATE `+template)
	mu.Unlock()
	if err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	u := withDB(adminURL, name)
	urls.Store(t, u)
	t.Cleanup(func() {
		urls.Delete(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	return u
}

// DB returns a pool on t's fresh database (see URL), closed when t ends.
func DB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := URL(t)
	pool, err := store.NewPool(context.Background(), u)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close) // registered after URL's cleanup, so it runs first
	return pool
}

// AdminURL returns the URL of the server's maintenance database, for tests
// that create databases of their own (e.g. to test migrations).
func AdminURL(t testing.TB) string {
	t.Helper()
	URL(t)
	return adminURL
}

// Cluster returns the throwaway cluster, or nil when DATABASE_URL is used.
func Cluster() *postgres.Cluster { return cluster }

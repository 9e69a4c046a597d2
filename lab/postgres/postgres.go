// Package postgres runs a throwaway PostgreSQL cluster from Debian's
// packages for the lab and the tests: initdb as the postgres user, a server
// on a loopback port with its socket in the cluster directory, stopped by
// PID.
package postgres

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud/lab/proc"
)

// DefaultBinDir is where Debian's postgresql package puts the server.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// Config describes a cluster.
type Config struct {
	// Dir holds the data directory, the socket and the log; it is created.
	// An existing data directory is reused (the lab keeps its data).
	Dir string
	// Port on 127.0.0.1; 0 picks a free one.
	Port int
	// BinDir holds initdb and postgres; empty means DefaultBinDir.
	BinDir string
	// Durable keeps fsync on (the lab); tests turn it off for speed.
	Durable bool
}

// Cluster is a running server.
type Cluster struct {
	Config
	proc *proc.Process
}

// Start initialises the cluster if needed and starts the server; the
// superuser is "rackcloud" with trust authentication on loopback.
func Start(ctx context.Context, c Config) (*Cluster, error) {
	if c.BinDir == "" {
		c.BinDir = DefaultBinDir
	}
	if _, err := os.Stat(filepath.Join(c.BinDir, "postgres")); err != nil {
		return nil, fmt.Errorf("postgres server not installed (%v): run lab/install.sh", err)
	}
	if c.Port == 0 {
		p, err := proc.FreePort()
		if err != nil {
			return nil, err
		}
		c.Port = p
	}
	cred, err := proc.Credential("postgres")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := reachable(c.Dir, cred.Uid); err != nil {
		return nil, err
	}
	if err := os.Chown(c.Dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return nil, err
	}
	data := filepath.Join(c.Dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); os.IsNotExist(err) {
		args := []string{"-D", data, "-U", "rackcloud", "--auth=trust", "-E", "UTF8", "--locale=C"}
		if !c.Durable {
			args = append(args, "--no-sync")
		}
		cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "initdb"), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("initdb: %w: %s", err, out.String())
		}
	}
	args := []string{"-D", data, "-k", c.Dir, "-p", strconv.Itoa(c.Port),
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"}
	if !c.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	p, err := proc.Start(proc.Spec{Name: "postgres", Path: filepath.Join(c.BinDir, "postgres"),
		Args: args, Log: filepath.Join(c.Dir, "postgres.log"), User: "postgres"})
	if err != nil {
		return nil, err
	}
	cl := &Cluster{Config: c, proc: p}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	sock := filepath.Join(c.Dir, ".s.PGSQL."+strconv.Itoa(c.Port))
	if err := p.WaitFunc(wctx, func() bool {
		if _, err := os.Stat(sock); err != nil {
			return false
		}
		return exec.Command(filepath.Join(c.BinDir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port)).Run() == nil
	}); err != nil {
		p.Stop(syscall.SIGQUIT, 5*time.Second)
		return nil, err
	}
	return cl, nil
}

// URL returns a connection string for database db.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://rackcloud@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// PID is the postmaster's process ID.
func (c *Cluster) PID() int { return c.proc.PID() }

// Stop shuts the server down (fast shutdown, then immediate) by PID.
func (c *Cluster) Stop() {
	c.proc.Stop(syscall.SIGINT, 10*time.Second)
}

// CreateDatabase creates database name unless it exists.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
	return err
}

// reachable checks that user uid can traverse every ancestor of dir, which
// postgres needs and root's 0700 temporary directories do not allow.
func reachable(dir string, uid uint32) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm()&0o001 == 0 && (sys == nil || sys.Uid != uid) {
			return fmt.Errorf("postgres cannot reach %s: %s is mode %v; choose a directory whose parents are world-searchable (e.g. under /var/lib or /tmp)", dir, d, st.Mode().Perm())
		}
		if d == "/" {
			return nil
		}
	}
}

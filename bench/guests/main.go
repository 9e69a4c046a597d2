// Command guests benchmarks create-to-running of guests through rackcloud
// against the raw peer on the same daemon and image, in the same run.
//
// Containers: a dockerd (lab/dockerd) in a namespace of its own, adopted
// by an in-process task engine and vmctl controller (the real Docker
// driver) over a throwaway Postgres. A first guest loads the image (timed
// apart, not in the median); then -n times, interleaved, each guest
// deleted (untimed) before the next (the adopted host's 2 cores hold one
// 1-core guest after overhead): rackcloud times
// guest.create from Submit to the task succeeded (the container is
// running), the peer times `docker run -d --network none --memory 64m
// --cpus 1 <the same image>` with the real Docker CLI (it returns once
// the container has started).
//
// VMs: a libvirtd (lab/virtd), adopted the same way. A first guest
// uploads the base image (timed apart); then -vms times, one QEMU at a
// time: rackcloud times guest.create from Submit to succeeded (the
// overlay volume made, the domain defined and started); the peer times
// `virsh vol-create-as` of the same overlay and console volumes and
// `virsh create` of vmctl.DomainXML for the same spec. For both,
// running means libvirt reports the domain running (QEMU started), not
// that the guest has booted.
//
// The last two lines are
//
//	BENCH guests_vm vm_ms=<rackcloud> virsh_create_ms=<peer> ratio=<peer/rackcloud>
//	BENCH guests container_ms=<rackcloud> docker_run_ms=<peer> ratio=<peer/rackcloud>
//
// with medians; a ratio above 1 means rackcloud is faster.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/imagefmt"
	"github.com/rackcloud/rackcloud/lab/dockerd"
	"github.com/rackcloud/rackcloud/lab/guestimg"
	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/postgres"
	"github.com/rackcloud/rackcloud/lab/virtd"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
	"github.com/rackcloud/rackcloud/vmctl"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/guests:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 20, "container guests per side")
	vms := flag.Int("vms", 3, "VM guests per side (one QEMU at a time)")
	flag.Parse()
	for _, b := range []string{"docker", "virsh", dockerd.Binary, "nsenter"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found (make deps installs it): %w", b, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "rcbg")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // postgres runs as its own user
		return err
	}
	b, err := newBench(ctx, dir)
	if err != nil {
		return err
	}
	defer b.close()

	vm, err := b.vmRun(ctx, filepath.Join(dir, "virtd"), *vms)
	if err != nil {
		return fmt.Errorf("vms: %w", err)
	}
	ct, err := b.containerRun(ctx, filepath.Join(dir, "dk"), *n)
	if err != nil {
		return fmt.Errorf("containers: %w", err)
	}
	fmt.Printf("BENCH guests_vm vm_ms=%.0f virsh_create_ms=%.0f ratio=%.2f\n", ms(vm.rc), ms(vm.peer), ms(vm.peer)/ms(vm.rc))
	fmt.Printf("BENCH guests container_ms=%.0f docker_run_ms=%.0f ratio=%.2f\n", ms(ct.rc), ms(ct.peer), ms(ct.peer)/ms(ct.rc))
	return nil
}

// medians of one kind.
type medians struct{ rc, peer time.Duration }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// quantile is the nearest-rank q-quantile of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	if q == 0.5 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func summary(name string, ds []time.Duration) string {
	return fmt.Sprintf("%s median %.1f ms p90 %.1f ms min %.1f max %.1f (n=%d)", name,
		ms(quantile(ds, 0.5)), ms(quantile(ds, 0.9)), ms(quantile(ds, 0)), ms(quantile(ds, 1)), len(ds))
}

// bench is the rackcloud side: Postgres, a task engine and a controller
// with the real drivers.
type bench struct {
	pg      *postgres.Cluster
	pool    *pgxpool.Pool
	engine  *tasks.Engine
	stop    func()
	project string
	rack    string
	steps   map[string][]time.Duration // step name -> durations (timed guest.creates)
	pickup  []time.Duration            // submit -> task started
}

func newBench(ctx context.Context, dir string) (*bench, error) {
	pg, err := postgres.Start(ctx, postgres.Config{Dir: filepath.Join(dir, "pg")})
	if err != nil {
		return nil, err
	}
	b := &bench{pg: pg, stop: func() {}, steps: map[string][]time.Duration{}}
	if err := b.init(ctx); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *bench) init(ctx context.Context) error {
	if err := b.pg.CreateDatabase(ctx, "bench"); err != nil {
		return err
	}
	pool, err := store.NewPool(ctx, b.pg.URL("bench"))
	if err != nil {
		return err
	}
	b.pool = pool
	if _, err := store.Migrate(ctx, pool); err != nil {
		return err
	}
	// The engine's and controller's defaults, as the server runs them.
	log := slog.New(slog.DiscardHandler)
	engine, err := tasks.New(pool, tasks.Config{Logger: log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		return err
	}
	drivers := map[rackcloud.GuestKind]vmctl.Driver{rackcloud.GuestContainer: &vmctl.Docker{},
		rackcloud.GuestVM: &vmctl.Libvirt{DomainType: domType()}}
	vm := vmctl.New(vmctl.Config{Pool: pool, Drivers: drivers, Reconcile: -1, Logger: log, Registerer: prometheus.NewRegistry()})
	if err := vm.Register(engine); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = vm.Run(rctx) }()
	if err := engine.Start(rctx); err != nil {
		cancel()
		<-done
		return err
	}
	b.engine = engine
	b.stop = func() {
		cancel()
		_ = engine.Stop(context.Background())
		<-done
		for _, d := range drivers {
			if c, ok := d.(io.Closer); ok {
				_ = c.Close()
			}
		}
	}
	return store.InTx(ctx, pool, func(tx pgx.Tx) error {
		p, err := store.CreateProject(ctx, tx, rackcloud.Project{Meta: rackcloud.Meta{Name: "bench"}})
		if err != nil {
			return err
		}
		b.project = p.ID
		if _, err := store.SetQuota(ctx, tx, p.ID, 0, rackcloud.Resources{CPUCores: 1 << 20, MemoryMiB: 1 << 40, DiskGiB: 1 << 30}, 0); err != nil {
			return err
		}
		r, err := store.CreateRegion(ctx, tx, rackcloud.Region{Meta: rackcloud.Meta{Name: "bench"}})
		if err != nil {
			return err
		}
		z, err := store.CreateZone(ctx, tx, rackcloud.Zone{Meta: rackcloud.Meta{Name: "z1"}, RegionID: r.ID})
		if err != nil {
			return err
		}
		rk, err := store.CreateRack(ctx, tx, rackcloud.Rack{Meta: rackcloud.Meta{Name: "r1"}, ZoneID: z.ID, Positions: 42})
		b.rack = rk.ID
		return err
	})
}

func (b *bench) close() {
	b.stop()
	if b.pool != nil {
		b.pool.Close()
	}
	b.pg.Stop()
}

// domType is kvm when /dev/kvm can be opened, else qemu; both sides use it.
func domType() string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "qemu"
	}
	f.Close()
	return "kvm"
}

// task submits a task and polls it (every 2 ms) until it ends; it
// returns the time from Submit to the end.
func (b *bench) task(ctx context.Context, kind, target string, params any) (time.Duration, *tasks.Info, error) {
	start := time.Now()
	info, err := b.engine.Submit(ctx, b.pool, tasks.Submission{Kind: kind, Target: target, Params: params})
	if err != nil {
		return 0, nil, err
	}
	for deadline := start.Add(3 * time.Minute); ; time.Sleep(2 * time.Millisecond) {
		got, err := b.engine.Get(ctx, info.ID)
		if err != nil {
			return 0, nil, err
		}
		if got.State.Terminal() {
			d := time.Since(start)
			if got.State != rackcloud.TaskSucceeded {
				return d, got, fmt.Errorf("%s %s: %s: %s", kind, target, got.State, got.Error)
			}
			return d, got, nil
		}
		if time.Now().After(deadline) {
			return 0, nil, fmt.Errorf("%s %s: still %s after 3 minutes", kind, target, got.State)
		}
	}
}

// adopt records a host at endpoint and adopts it.
func (b *bench) adopt(ctx context.Context, name string, role rackcloud.HostRole, endpoint string) (string, error) {
	h, err := store.CreateHost(ctx, b.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: name}, Role: role, RackID: b.rack,
		Resources: rackcloud.Resources{DiskGiB: 50}})
	if err != nil {
		return "", err
	}
	if err := store.SetHostEndpoint(ctx, b.pool, h.ID, endpoint); err != nil {
		return "", err
	}
	d, _, err := b.task(ctx, rackcloud.KindHostAdopt, "host/"+h.ID, rackcloud.HostTaskParams{HostID: h.ID})
	if err != nil {
		return "", err
	}
	fmt.Printf("   host.adopt %s: %.0f ms\n", name, ms(d))
	return h.ID, nil
}

// create makes a guest record and times guest.create on it; record says
// whether its steps count in the breakdown.
func (b *bench) create(ctx context.Context, g rackcloud.Guest, record bool) (rackcloud.Guest, time.Duration, error) {
	g.ProjectID = b.project
	g, err := store.CreateGuest(ctx, b.pool, g)
	if err != nil {
		return g, 0, err
	}
	submitted := time.Now()
	d, info, err := b.task(ctx, rackcloud.KindGuestCreate, "guest/"+g.ID, rackcloud.GuestTaskParams{GuestID: g.ID})
	if err != nil {
		return g, d, err
	}
	if record {
		if info.StartedAt != nil {
			b.pickup = append(b.pickup, info.StartedAt.Sub(submitted))
		}
		for _, s := range info.Steps {
			b.steps[s.Name] = append(b.steps[s.Name], s.FinishedAt.Sub(s.StartedAt))
		}
	}
	return g, d, nil
}

func (b *bench) delete(ctx context.Context, g rackcloud.Guest) error {
	_, _, err := b.task(ctx, rackcloud.KindGuestDelete, "guest/"+g.ID, rackcloud.GuestTaskParams{GuestID: g.ID})
	return err
}

// breakdown prints where rackcloud's time went and resets it.
func (b *bench) breakdown(kind string) {
	fmt.Printf("   %s rackcloud: %s\n", kind, summary("submit->claimed", b.pickup))
	var names []string
	for k := range b.steps {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Printf("   %s rackcloud: %s\n", kind, summary("step "+k, b.steps[k]))
	}
	b.pickup, b.steps = nil, map[string][]time.Duration{}
}

// pairs runs peer once (not counted), then n interleaved pairs: a
// rackcloud guest.create of guest(prefix+i) (deleted after) and peer(i).
func (b *bench) pairs(ctx context.Context, n int, prefix string, guest func(string) rackcloud.Guest,
	peer func(int) (time.Duration, error), peerName string) (rc, pr []time.Duration, err error) {
	first, err := peer(-1)
	if err != nil {
		return nil, nil, err
	}
	fmt.Printf("   first %s (not counted): %.1f ms\n", peerName, ms(first))
	for i := range n {
		g, r, err := b.create(ctx, guest(fmt.Sprintf("%s%d", prefix, i)), true)
		if err != nil {
			return nil, nil, err
		}
		if err := b.delete(ctx, g); err != nil {
			return nil, nil, err
		}
		p, err := peer(i)
		if err != nil {
			return nil, nil, err
		}
		rc, pr = append(rc, r), append(pr, p)
		fmt.Printf("   run %2d: rackcloud guest.create %.1f ms, %s %.1f ms\n", i+1, ms(r), peerName, ms(p))
	}
	fmt.Println("   " + summary("rackcloud guest.create", rc))
	fmt.Println("   " + summary(peerName, pr))
	return rc, pr, nil
}

func (b *bench) containerRun(ctx context.Context, dir string, n int) (medians, error) {
	fmt.Println("== containers")
	nn, err := netns.New(ctx, fmt.Sprintf("rcbgd%d", os.Getpid()), netip.MustParsePrefix("10.91.0.1/24"))
	if err != nil {
		return medians{}, err
	}
	defer nn.Close()
	d, err := dockerd.Start(ctx, dockerd.Config{Dir: dir, Netns: nn})
	if err != nil {
		return medians{}, err
	}
	defer func() {
		if err := d.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench/guests: stop dockerd:", err)
		}
	}()
	fmt.Printf("   dockerd %s, storage driver %s\n", d.Endpoint, d.StorageDriver)
	path, sum, size, err := guestimg.Container("")
	if err != nil {
		return medians{}, err
	}
	im, err := store.CreateImage(ctx, b.pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "busybox"}, URL: "file://" + path,
		Checksum: sum, Format: rackcloud.FormatDockerArchive, Size: size})
	if err != nil {
		return medians{}, err
	}
	host, err := b.adopt(ctx, "docker-1", rackcloud.RoleDocker, d.Endpoint)
	if err != nil {
		return medians{}, err
	}
	guest := func(name string) rackcloud.Guest {
		return rackcloud.Guest{Meta: rackcloud.Meta{Name: name}, Kind: rackcloud.GuestContainer, ImageID: im.ID, WantHostID: host,
			Flavor: rackcloud.Resources{CPUCores: 1, MemoryMiB: 64, DiskGiB: 1}}
	}
	// The first guest loads the image (docker load, tag): timed apart.
	g, first, err := b.create(ctx, guest("warm"), false)
	if err != nil {
		return medians{}, err
	}
	fmt.Printf("   first guest.create (loads the image, not counted): %.1f ms\n", ms(first))
	if err := b.delete(ctx, g); err != nil {
		return medians{}, err
	}
	ref := "rackcloud/img-" + im.ID + ":latest" // vmctl.Docker's tag
	peer := func(i int) (time.Duration, error) {
		start := time.Now()
		out, err := exec.CommandContext(ctx, "docker", "-H", d.Endpoint, "run", "-d", "--name", fmt.Sprintf("peer-%d", i),
			"--network", "none", "--memory", "64m", "--cpus", "1", "--restart", "no", ref).CombinedOutput()
		el := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("docker run: %w: %s", err, out)
		}
		st, err := exec.CommandContext(ctx, "docker", "-H", d.Endpoint, "inspect", "-f", "{{.State.Running}}",
			strings.TrimSpace(string(out))).Output()
		if err != nil || strings.TrimSpace(string(st)) != "true" {
			return 0, fmt.Errorf("peer container not running after docker run: %v %s", err, st)
		}
		if out, err := exec.CommandContext(ctx, "docker", "-H", d.Endpoint, "rm", "-f", fmt.Sprintf("peer-%d", i)).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("docker rm: %w: %s", err, out)
		}
		return el, nil
	}
	rc, pr, err := b.pairs(ctx, n, "c", guest, peer, "docker run -d")
	if err != nil {
		return medians{}, err
	}
	b.breakdown("container")
	m := medians{quantile(rc, 0.5), quantile(pr, 0.5)}
	fmt.Printf("bench guests containers rackcloud_ms=%.1f docker_run_ms=%.1f ratio=%.2f\n", ms(m.rc), ms(m.peer), ms(m.peer)/ms(m.rc))
	return m, nil
}

func (b *bench) vmRun(ctx context.Context, dir string, n int) (medians, error) {
	fmt.Println("== VMs")
	nn, err := netns.New(ctx, fmt.Sprintf("rcbgv%d", os.Getpid()), netip.MustParsePrefix("10.92.0.1/24"))
	if err != nil {
		return medians{}, err
	}
	defer nn.Close()
	d, err := virtd.Start(ctx, virtd.Config{Dir: dir, Netns: nn})
	if err != nil {
		return medians{}, err
	}
	defer d.Stop()
	uri := d.URI()
	dt := domType()
	fmt.Printf("   libvirtd %s, domain type %s\n", uri, dt)
	file, sum, size, err := vmImageFile(filepath.Join(filepath.Dir(dir), "vm.img.zst"))
	if err != nil {
		return medians{}, err
	}
	im, err := store.CreateImage(ctx, b.pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "tiny-vm"}, URL: "file://" + file,
		Checksum: sum, Format: rackcloud.FormatRawZstd, Size: size})
	if err != nil {
		return medians{}, err
	}
	host, err := b.adopt(ctx, "kvm-1", rackcloud.RoleKVM, uri)
	if err != nil {
		return medians{}, err
	}
	flavor := rackcloud.Resources{CPUCores: 1, MemoryMiB: 128, DiskGiB: 1}
	guest := func(name string) rackcloud.Guest {
		return rackcloud.Guest{Meta: rackcloud.Meta{Name: name}, Kind: rackcloud.GuestVM, ImageID: im.ID, WantHostID: host, Flavor: flavor}
	}
	// The first guest uploads the base image: timed apart.
	g, first, err := b.create(ctx, guest("warm"), false)
	if err != nil {
		return medians{}, err
	}
	fmt.Printf("   first guest.create (uploads the base image, not counted): %.1f ms\n", ms(first))
	if err := b.delete(ctx, g); err != nil {
		return medians{}, err
	}
	virsh := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", uri}, args...)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	base, err := virsh("vol-path", "--pool", vmctl.LibvirtPool, "img-"+im.ID)
	if err != nil {
		return medians{}, err
	}
	xmlDir := filepath.Join(filepath.Dir(dir), "peer-xml")
	if err := os.MkdirAll(xmlDir, 0o755); err != nil {
		return medians{}, err
	}
	// peer makes what guest.create makes, with virsh: the overlay over
	// the same base, the console log volume, the domain started.
	peer := func(i int) (time.Duration, error) {
		id := uuid.NewString()
		s := vmctl.Spec{GuestID: id, Name: fmt.Sprintf("peer-%d", i), ProjectID: b.project, Kind: rackcloud.GuestVM, Flavor: flavor}
		x, err := vmctl.DomainXML(s, dt, vmctl.DefaultLibvirtPoolDir)
		if err != nil {
			return 0, err
		}
		xf := filepath.Join(xmlDir, id+".xml")
		if err := os.WriteFile(xf, []byte(x), 0o644); err != nil {
			return 0, err
		}
		disk, console := "rc-"+id+".qcow2", "rc-"+id+".console"
		start := time.Now()
		if _, err := virsh("vol-create-as", vmctl.LibvirtPool, disk, fmt.Sprintf("%dG", flavor.DiskGiB), "--format", "qcow2",
			"--backing-vol", base, "--backing-vol-format", "raw"); err != nil {
			return 0, err
		}
		if _, err := virsh("vol-create-as", vmctl.LibvirtPool, console, "0", "--format", "raw"); err != nil {
			return 0, err
		}
		if _, err := virsh("create", xf); err != nil {
			return 0, err
		}
		el := time.Since(start)
		st, err := virsh("domstate", "rc-"+id)
		if err != nil {
			return 0, err
		}
		if st != "running" {
			return 0, fmt.Errorf("peer domain is %q after virsh create", st)
		}
		_, err = virsh("destroy", "rc-"+id)
		for _, v := range []string{disk, console} {
			_, verr := virsh("vol-delete", "--pool", vmctl.LibvirtPool, v)
			err = errors.Join(err, verr)
		}
		return el, err
	}
	rc, pr, err := b.pairs(ctx, n, "v", guest, peer, "virsh vol-create-as x2 + create")
	if err != nil {
		return medians{}, err
	}
	b.breakdown("vm")
	return medians{quantile(rc, 0.5), quantile(pr, 0.5)}, nil
}

// vmImageFile writes the tiny VM image as raw+zstd (as the image store
// keeps it) to name and returns its checksum and size.
func vmImageFile(name string) (string, string, int64, error) {
	raw, _, _, err := guestimg.VM(filepath.Join(os.TempDir(), "rackcloud-guestimg"))
	if err != nil {
		return "", "", 0, err
	}
	in, err := os.Open(raw)
	if err != nil {
		return "", "", 0, err
	}
	defer in.Close()
	out, err := os.Create(name)
	if err != nil {
		return "", "", 0, err
	}
	defer out.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, h)}
	if _, _, err := imagefmt.Compress(cw, in); err != nil {
		return "", "", 0, err
	}
	return name, "sha256:" + hex.EncodeToString(h.Sum(nil)), cw.n, out.Close()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

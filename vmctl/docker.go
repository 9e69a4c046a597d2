package vmctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/rackcloud/rackcloud"
)

// Docker runs containers through a host's dockerd (the Engine API,
// version negotiated; 1.41 on Debian's docker.io 20.10). Containers are
// named rc-<guest ID> and labelled rackcloud.guest=<ID>, so a step run
// again finds what it made; images are loaded from rackcloud's image store
// as docker-archives (no registry) and tagged rackcloud/img-<image ID>.
// Containers get no restart policy: rackcloud owns availability.
type Docker struct {
	// NetworkMode is the containers' network mode ("" picks bridge when
	// the daemon has a bridge network, else none).
	NetworkMode string
	// TempDir is where an image is checked against its checksum before
	// it is loaded ("": the system's).
	TempDir string

	mu      sync.Mutex
	clients map[connKey]*client.Client
}

var (
	_ Driver = (*Docker)(nil)
	_ Prober = (*Docker)(nil)
	_ Lister = (*Docker)(nil)
)

// Docker labels and names.
const (
	LabelGuest   = "rackcloud.guest"
	LabelProject = "rackcloud.project"
	LabelName    = "rackcloud.name"
	// LabelPrefix prefixes the guest's own labels.
	LabelPrefix = "rackcloud.label."
)

func containerName(guestID string) string { return "rc-" + guestID }
func imageRef(imageID string) string      { return "rackcloud/img-" + imageID + ":latest" }

// client returns the cached client for t, making it on first use.
func (d *Docker) client(t Target) (*client.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := connKey{t.HostID, t.Endpoint}
	if c := d.clients[k]; c != nil {
		return c, nil
	}
	u, err := url.Parse(t.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint %q: %v", rackcloud.ErrInvalid, t.Endpoint, err)
	}
	opts := []client.Opt{client.WithAPIVersionNegotiation(), client.WithHost(t.Endpoint)}
	switch u.Scheme {
	case "unix":
	case "tcp":
		dial := t.Dial
		if dial == nil {
			dial = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
		}
		addr := u.Host
		tr := &http.Transport{TLSClientConfig: t.TLS, MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) { return dial(ctx, network, addr) }}
		opts = append(opts, client.WithHTTPClient(&http.Client{Transport: tr}))
		if t.TLS == nil {
			return nil, fmt.Errorf("%w: a tcp endpoint needs TLS: dockerd without --tlsverify is root for anyone on the network", rackcloud.ErrInvalid)
		}
	default:
		return nil, fmt.Errorf("%w: endpoint %q: dockerd answers on unix:// or tcp://", rackcloud.ErrInvalid, t.Endpoint)
	}
	c, err := client.New(opts...)
	if err != nil {
		return nil, err
	}
	if d.clients == nil {
		d.clients = map[connKey]*client.Client{}
	}
	d.clients[k] = c
	return c, nil
}

// forget drops a client after a connection error, so the next call dials
// again.
func (d *Docker) forget(t Target, err error) {
	if err == nil || !client.IsErrConnectionFailed(err) && !errors.Is(err, net.ErrClosed) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := connKey{t.HostID, t.Endpoint}
	if c := d.clients[k]; c != nil {
		_ = c.Close()
		delete(d.clients, k)
	}
}

func (d *Docker) do(ctx context.Context, t Target, what string, f func(*client.Client) error) error {
	c, err := d.client(t)
	if err != nil {
		return err
	}
	err = f(c)
	d.forget(t, err)
	if err != nil {
		if cerrdefs.IsNotFound(err) && !errors.Is(err, rackcloud.ErrNotFound) {
			err = fmt.Errorf("%w: %v", rackcloud.ErrNotFound, err)
		}
		return fmt.Errorf("dockerd at %s: %s: %w", t.Endpoint, what, err)
	}
	return nil
}

// Close closes every cached client.
func (d *Docker) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, c := range d.clients {
		_ = c.Close()
		delete(d.clients, k)
	}
	return nil
}

// Prepare loads the guest's image once per host: it is read whole from the
// image store into a temporary file and checked against its checksum
// before dockerd sees a byte, so a bad image never becomes a half-loaded
// one.
func (d *Docker) Prepare(ctx context.Context, t Target, s Spec) error {
	if s.Image.Format != rackcloud.FormatDockerArchive {
		return fmt.Errorf("%w: image %s is %s; a container needs a docker-archive", rackcloud.ErrInvalid, s.Image.Name, s.Image.Format)
	}
	ref := imageRef(s.Image.ID)
	return d.do(ctx, t, "load image "+s.Image.Name, func(c *client.Client) error {
		if _, err := c.ImageInspect(ctx, ref); err == nil {
			return nil
		} else if !cerrdefs.IsNotFound(err) {
			return err
		}
		f, err := d.spool(ctx, s.Image)
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		res, err := c.ImageLoad(ctx, f, client.ImageLoadWithQuiet(true))
		if err != nil {
			return err
		}
		defer res.Close()
		loaded, err := loadedImage(res)
		if err != nil {
			return err
		}
		_, err = c.ImageTag(ctx, client.ImageTagOptions{Source: loaded, Target: ref})
		return err
	})
}

// spool copies an image into a temporary file, checked.
func (d *Docker) spool(ctx context.Context, img Image) (*os.File, error) {
	r, err := img.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := os.CreateTemp(d.TempDir, "rackcloud-image-*.tar")
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("read image %s: %w", img.Name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// loadedImage reads dockerd's load messages and returns what it loaded.
func loadedImage(r io.Reader) (string, error) {
	var loaded, errMsg string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if m.Error != "" {
			errMsg = m.Error
		}
		for _, line := range strings.Split(m.Stream, "\n") {
			if v, ok := strings.CutPrefix(line, "Loaded image ID: "); ok {
				loaded = strings.TrimSpace(v)
			} else if v, ok := strings.CutPrefix(line, "Loaded image: "); ok && loaded == "" {
				loaded = strings.TrimSpace(v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if errMsg != "" {
		return "", fmt.Errorf("%w: dockerd refused the image: %s", rackcloud.ErrInvalid, errMsg)
	}
	if loaded == "" {
		return "", fmt.Errorf("%w: dockerd loaded no image from the archive", rackcloud.ErrInvalid)
	}
	return loaded, nil
}

// networkMode picks the containers' network.
func (d *Docker) networkMode(ctx context.Context, c *client.Client) string {
	if d.NetworkMode != "" {
		return d.NetworkMode
	}
	nets, err := c.NetworkList(ctx, client.NetworkListOptions{})
	if err == nil {
		for _, n := range nets.Items {
			if n.Name == "bridge" {
				return "bridge"
			}
		}
	}
	return "none"
}

// Create makes the container (or finds the one made before).
func (d *Docker) Create(ctx context.Context, t Target, s Spec) (string, error) {
	var id string
	err := d.do(ctx, t, "create "+containerName(s.GuestID), func(c *client.Client) error {
		if in, err := c.ContainerInspect(ctx, containerName(s.GuestID), client.ContainerInspectOptions{}); err == nil {
			id = in.Container.ID
			return nil
		} else if !cerrdefs.IsNotFound(err) {
			return err
		}
		labels := map[string]string{LabelGuest: s.GuestID, LabelProject: s.ProjectID, LabelName: s.Name}
		for k, v := range s.Labels {
			labels[LabelPrefix+k] = v
		}
		res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name:   containerName(s.GuestID),
			Config: &container.Config{Image: imageRef(s.Image.ID), Labels: labels, Hostname: s.Name},
			HostConfig: &container.HostConfig{
				NetworkMode:   container.NetworkMode(d.networkMode(ctx, c)),
				RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
				Resources: container.Resources{NanoCPUs: int64(s.Flavor.CPUCores) * 1e9,
					Memory: s.Flavor.MemoryMiB << 20},
			}})
		if cerrdefs.IsConflict(err) { // made by a run that died before it recorded it
			in, ierr := c.ContainerInspect(ctx, containerName(s.GuestID), client.ContainerInspectOptions{})
			if ierr != nil {
				return ierr
			}
			id = in.Container.ID
			return nil
		}
		if err != nil {
			return err
		}
		id = res.ID
		return nil
	})
	return id, err
}

// Start starts the container.
func (d *Docker) Start(ctx context.Context, t Target, s Spec) error {
	return d.do(ctx, t, "start "+containerName(s.GuestID), func(c *client.Client) error {
		_, err := c.ContainerStart(ctx, containerName(s.GuestID), client.ContainerStartOptions{})
		return err
	})
}

// Stop sends SIGTERM, then SIGKILL after grace.
func (d *Docker) Stop(ctx context.Context, t Target, s Spec, grace time.Duration) error {
	secs := max(0, int(grace.Seconds()))
	return d.do(ctx, t, "stop "+containerName(s.GuestID), func(c *client.Client) error {
		_, err := c.ContainerStop(ctx, containerName(s.GuestID), client.ContainerStopOptions{Timeout: &secs})
		return err
	})
}

// Reboot restarts the container.
func (d *Docker) Reboot(ctx context.Context, t Target, s Spec) error {
	secs := 10
	return d.do(ctx, t, "restart "+containerName(s.GuestID), func(c *client.Client) error {
		_, err := c.ContainerRestart(ctx, containerName(s.GuestID), client.ContainerRestartOptions{Timeout: &secs})
		return err
	})
}

// Delete removes the container (running or not) and its anonymous
// volumes; a missing one is fine. The image stays for other guests.
func (d *Docker) Delete(ctx context.Context, t Target, s Spec) error {
	err := d.do(ctx, t, "remove "+containerName(s.GuestID), func(c *client.Client) error {
		_, err := c.ContainerRemove(ctx, containerName(s.GuestID), client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		return err
	})
	if errors.Is(err, rackcloud.ErrNotFound) {
		return nil
	}
	return err
}

// Observe inspects the container. An exited container is reported
// stopped with its exit in Detail; whether that was asked for is the
// controller's to judge (it knows the guest's intended state).
func (d *Docker) Observe(ctx context.Context, t Target, s Spec) (Observed, error) {
	var o Observed
	err := d.do(ctx, t, "inspect "+containerName(s.GuestID), func(c *client.Client) error {
		in, err := c.ContainerInspect(ctx, containerName(s.GuestID), client.ContainerInspectOptions{})
		if err != nil {
			return err
		}
		o = observedContainer(in.Container.ID, in.Container.State)
		return nil
	})
	if errors.Is(err, rackcloud.ErrNotFound) {
		return Observed{State: ObservedMissing}, nil
	}
	return o, err
}

func observedContainer(id string, st *container.State) Observed {
	o := Observed{Handle: id, State: ObservedStopped}
	if st == nil {
		return o
	}
	switch {
	case st.Paused:
		o.State = ObservedPaused
	case st.Running:
		o.State = ObservedRunning
	case st.OOMKilled:
		o.Detail = "killed: out of memory"
	case st.Status == container.StateCreated:
		o.Detail = "created, never started"
	default:
		o.Detail = fmt.Sprintf("exited with code %d", st.ExitCode)
	}
	return o
}

func summaryState(s container.Summary) Observed {
	o := Observed{Handle: s.ID, State: ObservedStopped}
	switch s.State {
	case container.StateRunning:
		o.State = ObservedRunning
	case container.StatePaused:
		o.State = ObservedPaused
	case container.StateCreated:
		o.Detail = "created, never started"
	default:
		o.Detail = s.Status
		if m := exitedRE.FindStringSubmatch(s.Status); m != nil {
			o.Detail = "exited with code " + m[1]
		}
	}
	return o
}

// exitedRE reads the exit code out of a list's status ("Exited (137) 2
// seconds ago"), as inspect would give it.
var exitedRE = regexp.MustCompile(`^Exited \((-?\d+)\)`)

// List lists the containers rackcloud made on the host, in all states.
func (d *Docker) List(ctx context.Context, t Target) (map[string]Observed, error) {
	out := map[string]Observed{}
	err := d.do(ctx, t, "list containers", func(c *client.Client) error {
		res, err := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", LabelGuest)})
		if err != nil {
			return err
		}
		for _, s := range res.Items {
			if id := s.Labels[LabelGuest]; id != "" {
				out[id] = summaryState(s)
			}
		}
		return nil
	})
	return out, err
}

// Probe reads the host's CPUs and memory.
func (d *Docker) Probe(ctx context.Context, t Target) (Capacity, error) {
	var cp Capacity
	err := d.do(ctx, t, "info", func(c *client.Client) error {
		info, err := c.Info(ctx, client.InfoOptions{})
		if err != nil {
			return err
		}
		i := info.Info
		cp.Resources = rackcloud.Resources{CPUCores: i.NCPU, MemoryMiB: i.MemTotal >> 20}
		cp.Daemon = fmt.Sprintf("dockerd %s, API %s, storage %s", i.ServerVersion, c.ClientVersion(), i.Driver)
		return nil
	})
	return cp, err
}

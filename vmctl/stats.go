package vmctl

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/digitalocean/go-libvirt"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"
)

// GuestStats are a running guest's resource counters as its host's daemon
// reports them: cumulative since the guest started, except MemoryBytes.
type GuestStats struct {
	// CPUSeconds is the CPU time the guest used, all CPUs together.
	CPUSeconds float64
	// MemoryBytes is what it uses now: a VM's resident set (else its
	// balloon's current size), a container's usage less its page cache.
	MemoryBytes uint64
	// Disk and network bytes read and written, over all its disks and
	// interfaces.
	DiskReadBytes, DiskWriteBytes uint64
	NetRxBytes, NetTxBytes        uint64
}

// StatsReader reads the stats of every running guest rackcloud made on a
// host, keyed by guest ID: one call per host per interval (monitoring).
type StatsReader interface {
	Stats(ctx context.Context, t Target) (map[string]GuestStats, error)
}

var (
	_ StatsReader = (*Libvirt)(nil)
	_ StatsReader = (*Docker)(nil)
)

// Stats implements StatsReader with one ConnectGetAllDomainStats call for
// the host's active domains.
func (d *Libvirt) Stats(ctx context.Context, t Target) (map[string]GuestStats, error) {
	out := map[string]GuestStats{}
	err := d.do(ctx, t, func(l *libvirt.Libvirt) error {
		recs, err := l.ConnectGetAllDomainStats(nil,
			uint32(libvirt.DomainStatsCPUTotal|libvirt.DomainStatsBalloon|libvirt.DomainStatsInterface|libvirt.DomainStatsBlock),
			uint32(libvirt.ConnectGetAllDomainsStatsActive))
		if err != nil {
			return err
		}
		for _, r := range recs {
			id, ok := strings.CutPrefix(r.Dom.Name, "rc-")
			if !ok {
				continue
			}
			out[id] = domainStats(r.Params)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("guest stats on host %s: %w", t.HostID, err)
	}
	return out, nil
}

// domainStats reads libvirt's typed parameters (cpu.time in ns,
// balloon.* in KiB, block.N.rd.bytes, net.N.rx.bytes, ...).
func domainStats(params []libvirt.TypedParam) GuestStats {
	var s GuestStats
	var rss, current uint64
	for _, p := range params {
		v, ok := unsigned(p.Value.I)
		if !ok {
			continue
		}
		f := p.Field
		switch {
		case f == "cpu.time":
			s.CPUSeconds = float64(v) / 1e9
		case f == "balloon.rss":
			rss = v * 1024
		case f == "balloon.current":
			current = v * 1024
		case strings.HasPrefix(f, "block.") && strings.HasSuffix(f, ".rd.bytes"):
			s.DiskReadBytes += v
		case strings.HasPrefix(f, "block.") && strings.HasSuffix(f, ".wr.bytes"):
			s.DiskWriteBytes += v
		case strings.HasPrefix(f, "net.") && strings.HasSuffix(f, ".rx.bytes"):
			s.NetRxBytes += v
		case strings.HasPrefix(f, "net.") && strings.HasSuffix(f, ".tx.bytes"):
			s.NetTxBytes += v
		}
	}
	s.MemoryBytes = rss
	if s.MemoryBytes == 0 {
		s.MemoryBytes = current
	}
	return s
}

func unsigned(v any) (uint64, bool) {
	switch n := v.(type) {
	case uint64:
		return n, true
	case uint32:
		return uint64(n), true
	case int64:
		return uint64(max(n, 0)), true
	case int32:
		return uint64(max(n, 0)), true
	}
	return 0, false
}

// DockerStatsParallel bounds the one-shot stats requests in flight to one
// dockerd (its API has no call for every container at once).
const DockerStatsParallel = 8

// Stats implements StatsReader: one list of the host's running rackcloud
// containers, then a one-shot stats request per container.
func (d *Docker) Stats(ctx context.Context, t Target) (map[string]GuestStats, error) {
	out := map[string]GuestStats{}
	err := d.do(ctx, t, "guest stats", func(c *client.Client) error {
		res, err := c.ContainerList(ctx, client.ContainerListOptions{Filters: client.Filters{}.Add("label", LabelGuest)})
		if err != nil {
			return err
		}
		var mu sync.Mutex
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(DockerStatsParallel)
		for _, s := range res.Items {
			id := s.Labels[LabelGuest]
			if id == "" {
				continue
			}
			g.Go(func() error {
				st, err := containerStats(gctx, c, s.ID)
				if cerrdefs.IsNotFound(err) {
					return nil // deleted since the list
				}
				if err != nil {
					return fmt.Errorf("container %s: %w", s.ID, err)
				}
				mu.Lock()
				out[id] = st
				mu.Unlock()
				return nil
			})
		}
		return g.Wait()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func containerStats(ctx context.Context, c *client.Client, id string) (GuestStats, error) {
	res, err := c.ContainerStats(ctx, id, client.ContainerStatsOptions{})
	if err != nil {
		return GuestStats{}, err
	}
	defer res.Body.Close()
	var r container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return GuestStats{}, err
	}
	return dockerStats(r), nil
}

// dockerStats reads a one-shot stats answer as cAdvisor and docker stats
// do: memory is usage less the inactive page cache (cgroup v1
// total_inactive_file, v2 inactive_file).
func dockerStats(r container.StatsResponse) GuestStats {
	s := GuestStats{CPUSeconds: float64(r.CPUStats.CPUUsage.TotalUsage) / 1e9, MemoryBytes: r.MemoryStats.Usage}
	for _, k := range []string{"total_inactive_file", "inactive_file"} {
		if v, ok := r.MemoryStats.Stats[k]; ok && v <= s.MemoryBytes {
			s.MemoryBytes -= v
			break
		}
	}
	for _, e := range r.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			s.DiskReadBytes += e.Value
		case "write":
			s.DiskWriteBytes += e.Value
		}
	}
	for _, n := range r.Networks {
		s.NetRxBytes += n.RxBytes
		s.NetTxBytes += n.TxBytes
	}
	return s
}

package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/rackcloud/rackcloud"
)

// ErrStaleState is returned by TransitionHost when the host is no longer
// in the state the transition starts from: someone else moved it first.
// It is a rackcloud.ErrConflict.
var ErrStaleState = fmt.Errorf("%w: the host is not in the expected state", rackcloud.ErrConflict)

// Transition is one move of a host through its lifecycle, decided by
// rackcloud.NextHost.
type Transition struct {
	From, To rackcloud.HostState
	// Reason is a person's line kept in state_reason ("" clears it).
	Reason string
	// Failure is required when To is failed, and ignored otherwise (every
	// other transition clears the host's failure).
	Failure *rackcloud.HostFailure
}

// TransitionHost moves host id from t.From to t.To: a compare-and-set on
// the state, so that of two writers that read the same state only one
// moves the host (the other gets ErrStaleState). It bumps the host's
// version: a state change is a change of the host.
func TransitionHost(ctx context.Context, q Querier, id string, t Transition) (rackcloud.Host, error) {
	var f rackcloud.HostFailure
	if t.To == rackcloud.HostFailed {
		if t.Failure == nil || t.Failure.Reason == "" {
			return rackcloud.Host{}, fmt.Errorf("host %s: a move to failed needs a failure reason: %w", id, rackcloud.ErrInvalid)
		}
		f = *t.Failure
		if f.In == "" {
			f.In = t.From
		}
		if t.Reason == "" {
			t.Reason = f.Detail
		}
	}
	var task *string
	if f.TaskID != "" && ValidID(f.TaskID) {
		task = &f.TaskID
	}
	tag, err := q.Exec(ctx, `UPDATE hosts SET state = $3, state_reason = $4, failure_reason = $5, failure_step = $6,
			failure_task = $7::uuid, failed_in = $8, version = version + 1, updated_at = now()
		WHERE id = $1::uuid AND state = $2`,
		uuidArg(id), string(t.From), string(t.To), t.Reason, string(f.Reason), f.Step, task, string(f.In))
	if err != nil {
		return rackcloud.Host{}, fmt.Errorf("host %s %s -> %s: %w", id, t.From, t.To, MapError(err))
	}
	if tag.RowsAffected() == 0 {
		h, err := GetHost(ctx, q, id)
		if err != nil {
			return rackcloud.Host{}, err
		}
		return h, fmt.Errorf("host %s %s -> %s: it is %s: %w", h.Name, t.From, t.To, h.State, ErrStaleState)
	}
	return GetHost(ctx, q, id)
}

// IsStaleState reports whether err is TransitionHost's lost race.
func IsStaleState(err error) bool { return errors.Is(err, ErrStaleState) }

// SetHostInventory records what the host's agent reported, the host's
// resources derived from it and its overhead (what it keeps for itself).
// It bumps the version: placement reads the resources.
func SetHostInventory(ctx context.Context, q Querier, id string, inv rackcloud.Inventory, res, overhead rackcloud.Resources) (rackcloud.Host, error) {
	tag, err := q.Exec(ctx, `UPDATE hosts SET inventory = $2, cpu_cores = $3, memory_mib = $4, disk_gib = $5,
			network_mbps = $6, overhead_cpu_cores = $7, overhead_memory_mib = $8, overhead_disk_gib = $9,
			version = version + 1, updated_at = now()
		WHERE id = $1::uuid`, uuidArg(id), inv, res.CPUCores, res.MemoryMiB, res.DiskGiB, res.NetworkMbs,
		overhead.CPUCores, overhead.MemoryMiB, overhead.DiskGiB)
	if err != nil {
		return rackcloud.Host{}, MapError(err)
	}
	if tag.RowsAffected() == 0 {
		return rackcloud.Host{}, fmt.Errorf("host %s: %w", id, rackcloud.ErrNotFound)
	}
	return GetHost(ctx, q, id)
}

// ErrNoBMC is returned by OpenHostBMC for a host without a BMC, or whose
// password cannot be opened here (no key, another key). It is a
// rackcloud.ErrNotFound.
var ErrNoBMC = fmt.Errorf("%w: no usable BMC credentials", rackcloud.ErrNotFound)

// OpenHostBMC returns host id's BMC with its password opened by s: the
// one way from the database to a BMC's credentials (bmc.EndpointOf makes
// the endpoint).
func OpenHostBMC(ctx context.Context, q Querier, s *Sealer, id string) (rackcloud.BMC, error) {
	h, err := GetHost(ctx, q, id)
	if err != nil {
		return rackcloud.BMC{}, err
	}
	if h.BMC == nil {
		return rackcloud.BMC{}, fmt.Errorf("host %s has no BMC: %w", h.Name, ErrNoBMC)
	}
	b := *h.BMC
	sealed, err := HostBMCSecret(ctx, q, id)
	if err != nil {
		return rackcloud.BMC{}, err
	}
	if sealed == "" {
		return b, nil
	}
	if s == nil {
		return rackcloud.BMC{}, fmt.Errorf("host %s: this server has no secret key to open its BMC password: %w", h.Name, ErrNoBMC)
	}
	if b.Password, err = s.Open(sealed, []byte(id)); err != nil {
		return rackcloud.BMC{}, fmt.Errorf("host %s: BMC password: %w: %w", h.Name, err, ErrNoBMC)
	}
	return b, nil
}

// AddHostMACs gives host id the MACs it does not have yet (a BMC reported
// them). A MAC another host has is rackcloud.ErrConflict naming that host:
// the machine booted before it was enrolled and was discovered as a host of
// its own, which the operator removes (it holds nothing yet).
func AddHostMACs(ctx context.Context, q Querier, id string, macs []string) (rackcloud.Host, error) {
	h, err := GetHost(ctx, q, id)
	if err != nil {
		return h, err
	}
	next := len(h.MACs)
	for _, m := range macs {
		mac, err := rackcloud.NormalizeMAC(m)
		if err != nil {
			return h, fmt.Errorf("MAC %q: %w", m, rackcloud.ErrInvalid)
		}
		if slices.Contains(h.MACs, mac) {
			continue
		}
		if other, err := GetHostByMAC(ctx, q, mac); err == nil && other.ID != id {
			return h, fmt.Errorf("%w: MAC %s belongs to host %s (%s): the machine booted before it was enrolled; delete that host to enroll this one",
				rackcloud.ErrConflict, mac, other.Name, other.State)
		}
		if _, err := q.Exec(ctx, `INSERT INTO host_macs (mac, host_id, idx) VALUES ($1, $2::uuid, $3)`, mac, id, next); err != nil {
			return h, MapError(err)
		}
		next++
	}
	return GetHost(ctx, q, id)
}

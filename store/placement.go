package store

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rackcloud/rackcloud"
)

// Claim errors: the database refused to put a guest on a host (migration
// 0500). Each wraps rackcloud.ErrConflict: the placement was made from a
// snapshot the database no longer agrees with, and the next candidate may
// fit.
var (
	// ErrHostFull: the host cannot hold the guest's flavor any more.
	ErrHostFull = fmt.Errorf("%w: host full", rackcloud.ErrConflict)
	// ErrHostUnavailable: the host is not ready, is in maintenance, or
	// has another role.
	ErrHostUnavailable = fmt.Errorf("%w: host unavailable", rackcloud.ErrConflict)
	// ErrPlacementGroup: a hard placement group forbids the host.
	ErrPlacementGroup = fmt.Errorf("%w: placement group", rackcloud.ErrConflict)
)

func claimError(pe *pgconn.PgError) error {
	if pe.Code != "23514" {
		return nil
	}
	switch pe.ConstraintName {
	case "host_full":
		return fmt.Errorf("%w: %s", ErrHostFull, pe.Message)
	case "host_unavailable":
		return fmt.Errorf("%w: %s", ErrHostUnavailable, pe.Message)
	case "placement_group":
		return fmt.Errorf("%w: %s", ErrPlacementGroup, pe.Message)
	}
	return nil
}

// PlacementChannel is the channel every change of a host's capacity,
// usage or placement-relevant fields is notified on, with the host's ID.
const PlacementChannel = "rackcloud_placement"

// ClaimHost puts guest guestID on host hostID and records placement's
// explanation, in one statement the database judges: a host that cannot
// hold the guest is ErrHostFull, one that may not take it
// ErrHostUnavailable or ErrPlacementGroup. A guest already on hostID is
// returned as it is (a step run again); one on another host is
// rackcloud.ErrConflict.
func ClaimHost(ctx context.Context, q Querier, guestID, hostID, placement string) (rackcloud.Guest, error) {
	g, err := scanGuest(q.QueryRow(ctx, `UPDATE guests SET host_id = $2::uuid, placement = $3, state_reason = '',
		version = version + 1, updated_at = now()
		WHERE id = $1::uuid AND host_id IS NULL RETURNING `+guestCols, uuidArg(guestID), uuidArg(hostID), trimText(placement, 2000)))
	if err == nil || !isNotFound(err) {
		return g, err
	}
	g, err = GetGuest(ctx, q, guestID)
	if err != nil {
		return g, err
	}
	if g.HostID != hostID {
		return g, fmt.Errorf("%w: guest %s is already on host %s", rackcloud.ErrConflict, guestID, g.HostID)
	}
	return g, nil
}

// MoveGuest moves guest guestID's claim from host from to host to in one
// statement the database judges (the old host's share is released as the
// new one's is charged): ErrHostFull, ErrHostUnavailable or
// ErrPlacementGroup when to may not take it. A guest already on to is left
// alone; one on neither is rackcloud.ErrConflict.
func MoveGuest(ctx context.Context, q Querier, guestID, from, to, placement string) error {
	tag, err := q.Exec(ctx, `UPDATE guests SET host_id = $3::uuid, placement = $4, version = version + 1, updated_at = now()
		WHERE id = $1::uuid AND host_id = $2::uuid`, uuidArg(guestID), uuidArg(from), uuidArg(to), trimText(placement, 2000))
	if err != nil {
		return MapError(err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	g, err := GetGuest(ctx, q, guestID)
	if err != nil {
		return err
	}
	if g.HostID == to {
		return nil
	}
	return fmt.Errorf("%w: guest %s is on host %q, not %s", rackcloud.ErrConflict, guestID, g.HostID, from)
}

// ReleaseHost takes guest guestID off its host (its resources return to
// the host); a guest on no host is left alone.
func ReleaseHost(ctx context.Context, q Querier, guestID string) error {
	_, err := q.Exec(ctx, `UPDATE guests SET host_id = NULL, version = version + 1, updated_at = now()
		WHERE id = $1::uuid AND host_id IS NOT NULL`, uuidArg(guestID))
	return MapError(err)
}

// SetGuestState records a guest's state, the reason (for a failure) and,
// when handle is not nil, its driver handle.
func SetGuestState(ctx context.Context, q Querier, guestID string, state rackcloud.GuestState, reason string, handle *string) (rackcloud.Guest, error) {
	return scanGuest(q.QueryRow(ctx, `UPDATE guests SET state = $2, state_reason = $3, handle = COALESCE($4, handle),
		version = version + 1, updated_at = now() WHERE id = $1::uuid RETURNING `+guestCols,
		uuidArg(guestID), string(state), trimText(reason, 2000), handle))
}

// SetGuestPlacement records placement's explanation for a guest that
// could not be placed.
func SetGuestPlacement(ctx context.Context, q Querier, guestID, placement string) error {
	_, err := q.Exec(ctx, `UPDATE guests SET placement = $2 WHERE id = $1::uuid`, uuidArg(guestID), trimText(placement, 2000))
	return MapError(err)
}

// RecordGuestObserved records what a guest's driver saw; it does not bump
// the guest's version. A change of the observed state also appends a
// guest event (kind "observed") and reports changed.
func RecordGuestObserved(ctx context.Context, q Querier, guestID, state, detail string) (changed bool, err error) {
	detail = trimText(detail, 500)
	var prev string
	err = q.QueryRow(ctx, `WITH old AS (SELECT observed_state FROM guests WHERE id = $1::uuid FOR UPDATE)
		UPDATE guests g SET observed_state = $2, observed_detail = $3, observed_at = now()
		FROM old WHERE g.id = $1::uuid RETURNING old.observed_state`, uuidArg(guestID), state, detail).Scan(&prev)
	if err != nil {
		return false, MapError(err)
	}
	if prev == state {
		return false, nil
	}
	msg := state
	if detail != "" {
		msg += ": " + detail
	}
	if prev != "" {
		msg = prev + " -> " + msg
	}
	return true, AddGuestEvent(ctx, q, guestID, "observed", msg)
}

// GuestEvent is one line of a guest's timeline.
type GuestEvent struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
}

// AddGuestEvent appends to a guest's timeline.
func AddGuestEvent(ctx context.Context, q Querier, guestID, kind, detail string) error {
	_, err := q.Exec(ctx, `INSERT INTO guest_events (guest_id, kind, detail) VALUES ($1::uuid, $2, $3)`,
		uuidArg(guestID), kind, trimText(detail, 2000))
	return MapError(err)
}

// ListGuestEvents returns a guest's timeline after event ID after, oldest
// first, at most limit.
func ListGuestEvents(ctx context.Context, q Querier, guestID string, after int64, limit int) ([]GuestEvent, error) {
	rows, err := q.Query(ctx, `SELECT id, at, kind, detail FROM guest_events WHERE guest_id = $1::uuid AND id > $2
		ORDER BY id LIMIT $3`, uuidArg(guestID), after, limit)
	if err != nil {
		return nil, MapError(err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (GuestEvent, error) {
		var e GuestEvent
		return e, r.Scan(&e.ID, &e.At, &e.Kind, &e.Detail)
	})
}

// PlacementHost is a host as placement sees it: where it is, what it can
// sell (capacity after overhead and overcommit) and what its guests use,
// and how many guests of each placement group it runs.
type PlacementHost struct {
	ID, Name                 string
	RegionID, ZoneID, RackID string
	ZoneName, RackName       string
	Role                     rackcloud.HostRole
	State                    rackcloud.HostState
	Maintenance              bool
	Labels                   rackcloud.Labels
	Total, Overhead          rackcloud.Resources
	Ratio                    rackcloud.Overcommit
	Capacity, Used           rackcloud.Resources
	Guests, MaxGuests        int
	Endpoint                 string
	Groups                   map[string]int
}

// PlacementHosts reads the hosts with a role (every one when ids is
// empty, else those named) for placement's snapshot; a host that is gone
// is simply absent.
func PlacementHosts(ctx context.Context, q Querier, ids []string) ([]PlacementHost, error) {
	where := "h.role <> ''"
	args := []any{}
	if len(ids) > 0 {
		where = "h.id = ANY($1::uuid[])"
		args = append(args, ids)
	}
	rows, err := q.Query(ctx, `SELECT h.id::text, h.name, COALESCE(z.region_id::text, ''), COALESCE(z.id::text, ''),
		COALESCE(r.id::text, ''), COALESCE(z.name, ''), COALESCE(r.name, ''), h.role, h.state, h.maintenance, h.labels,
		h.cpu_cores, h.memory_mib, h.disk_gib, h.overhead_cpu_cores, h.overhead_memory_mib, h.overhead_disk_gib,
		COALESCE(h.overcommit_cpu, z.overcommit_cpu, 1), COALESCE(h.overcommit_memory, z.overcommit_memory, 1),
		COALESCE(h.overcommit_disk, z.overcommit_disk, 1),
		u.cap_vcpu, u.cap_memory_mib, u.cap_disk_gib, u.used_vcpu, u.used_memory_mib, u.used_disk_gib, u.guests,
		COALESCE(u.cap_guests, 0), h.endpoint,
		COALESCE((SELECT jsonb_object_agg(gc.pg, gc.n) FROM (SELECT placement_group_id::text AS pg, count(*) AS n
			FROM guests g WHERE g.host_id = h.id AND g.placement_group_id IS NOT NULL GROUP BY 1) gc), '{}')
		FROM hosts h JOIN host_usage u ON u.host_id = h.id
		LEFT JOIN racks r ON r.id = h.rack_id LEFT JOIN zones z ON z.id = r.zone_id
		WHERE `+where, args...)
	if err != nil {
		return nil, MapError(err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (PlacementHost, error) {
		var h PlacementHost
		err := row.Scan(&h.ID, &h.Name, &h.RegionID, &h.ZoneID, &h.RackID, &h.ZoneName, &h.RackName, &h.Role, &h.State,
			&h.Maintenance, &h.Labels, &h.Total.CPUCores, &h.Total.MemoryMiB, &h.Total.DiskGiB, &h.Overhead.CPUCores,
			&h.Overhead.MemoryMiB, &h.Overhead.DiskGiB, &h.Ratio.CPU, &h.Ratio.Memory, &h.Ratio.Disk,
			&h.Capacity.CPUCores, &h.Capacity.MemoryMiB, &h.Capacity.DiskGiB, &h.Used.CPUCores, &h.Used.MemoryMiB,
			&h.Used.DiskGiB, &h.Guests, &h.MaxGuests, &h.Endpoint, &h.Groups)
		return h, err
	})
}

// OverbookedHosts returns the names of hosts whose guests use more than
// they can sell (a test's check that claims never over-book).
func OverbookedHosts(ctx context.Context, q Querier) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT h.name FROM hosts h JOIN host_usage u ON u.host_id = h.id,
		LATERAL (SELECT COALESCE(sum(vcpu), 0) AS vcpu, COALESCE(sum(memory_mib), 0) AS mem,
			COALESCE(sum(disk_gib), 0) AS disk, count(*) AS n FROM guests g WHERE g.host_id = h.id) s
		WHERE s.vcpu > u.cap_vcpu OR s.mem > u.cap_memory_mib OR s.disk > u.cap_disk_gib
			OR (u.cap_guests IS NOT NULL AND s.n > u.cap_guests)
			OR s.vcpu <> u.used_vcpu OR s.mem <> u.used_memory_mib OR s.disk <> u.used_disk_gib OR s.n <> u.guests
		ORDER BY h.name`)
	if err != nil {
		return nil, MapError(err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// HostCredentials are the TLS credentials an operator gave for an adopted
// host's daemon.
type HostCredentials struct {
	CAPEM, CertPEM, KeyPEM, ServerName string
}

const aadHostCredentials = "host_credentials/"

// SaveHostCredentials stores (replacing) an adopted host's credentials,
// the key sealed.
func SaveHostCredentials(ctx context.Context, q Querier, s interface {
	Seal(plaintext string, aad []byte) (string, error)
}, hostID string, c HostCredentials) error {
	if s == nil {
		return ErrNoSealer
	}
	sealed := ""
	if c.KeyPEM != "" {
		var err error
		if sealed, err = s.Seal(c.KeyPEM, []byte(aadHostCredentials+hostID)); err != nil {
			return err
		}
	}
	_, err := q.Exec(ctx, `INSERT INTO host_credentials (host_id, ca_pem, cert_pem, key_sealed, server_name)
		VALUES ($1::uuid, $2, $3, $4, $5) ON CONFLICT (host_id) DO UPDATE SET ca_pem = EXCLUDED.ca_pem,
		cert_pem = EXCLUDED.cert_pem, key_sealed = EXCLUDED.key_sealed, server_name = EXCLUDED.server_name`,
		uuidArg(hostID), c.CAPEM, c.CertPEM, sealed, c.ServerName)
	return MapError(err)
}

// GetHostCredentials returns an adopted host's credentials, or
// rackcloud.ErrNotFound when it has none of its own.
func GetHostCredentials(ctx context.Context, q Querier, s *Sealer, hostID string) (HostCredentials, error) {
	var c HostCredentials
	var sealed string
	err := q.QueryRow(ctx, `SELECT ca_pem, cert_pem, key_sealed, server_name FROM host_credentials WHERE host_id = $1::uuid`,
		uuidArg(hostID)).Scan(&c.CAPEM, &c.CertPEM, &sealed, &c.ServerName)
	if err != nil {
		return c, MapError(err)
	}
	if sealed != "" {
		if s == nil {
			return c, ErrNoSealer
		}
		if c.KeyPEM, err = s.Open(sealed, []byte(aadHostCredentials+hostID)); err != nil {
			return c, err
		}
	}
	return c, nil
}

// trimText cuts s to at most n bytes at a rune boundary.
func trimText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// SettledGuests returns the guests placed on a host that no task is
// changing (running, stopped or failed), for the reconciler.
func SettledGuests(ctx context.Context, q Querier) ([]rackcloud.Guest, error) {
	rows, err := q.Query(ctx, `SELECT `+guestCols+` FROM guests WHERE host_id IS NOT NULL
		AND state IN ('running', 'stopped', 'failed') ORDER BY host_id, id`)
	if err != nil {
		return nil, MapError(err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (rackcloud.Guest, error) { return scanGuest(r) })
}

package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

// BootEvent is one stored step of a network boot (a pxe.Event as the boot
// service reported it).
type BootEvent struct {
	ID int64
	// MAC is the client's MAC in lower-case colon form, "" when the boot
	// service could not tell it.
	MAC string
	// HostID is the host that owns MAC, "" for none.
	HostID   string
	Kind     string
	Client   string
	IP       string
	File     string
	Bytes    int64
	Duration time.Duration
	State    string
	Cached   bool
	Detail   string
	Error    string
	// Data is the JSON the booted image sent back (callback events).
	Data json.RawMessage
	// At is when the boot service saw the step (microsecond precision
	// once stored); ReceivedAt is when the API stored it.
	At         time.Time
	ReceivedAt time.Time
}

// BootEventFilter narrows ListBootEvents: HostID or MAC (or neither),
// events after the ID After, at most Limit (100 when 0), oldest first.
type BootEventFilter struct {
	HostID string
	MAC    string
	// Kind keeps only events of this kind; ReceivedSince those the API
	// stored at or after it (the database's clock, not the boot
	// service's).
	Kind          string
	ReceivedSince time.Time
	After         int64
	Limit         int
	// Newest lists newest first (After is then ignored).
	Newest bool
}

// InsertBootEvents stores events, skipping those already stored (the same
// MAC, kind and time: a batch the boot service sent again), and returns
// how many it stored. Concurrent inserts of the same events store each
// once.
func InsertBootEvents(ctx context.Context, q Querier, evs []BootEvent) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	n := len(evs)
	macs, hosts, datas := make([]*string, n), make([]*string, n), make([]*string, n)
	kinds, clients, ips, files := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	states, details, errs := make([]string, n), make([]string, n), make([]string, n)
	bytes, durs := make([]int64, n), make([]int64, n)
	cached := make([]bool, n)
	ats := make([]time.Time, n)
	for i, e := range evs {
		if e.MAC != "" {
			mac, err := rackcloud.NormalizeMAC(e.MAC)
			if err != nil {
				return 0, fmt.Errorf("boot event %d: %w", i, err)
			}
			macs[i] = &mac
		}
		if e.HostID != "" {
			if !ValidID(e.HostID) {
				return 0, fmt.Errorf("boot event %d: host %q: %w", i, e.HostID, rackcloud.ErrInvalid)
			}
			hosts[i] = &e.HostID
		}
		if len(e.Data) > 0 {
			if !json.Valid(e.Data) {
				return 0, fmt.Errorf("boot event %d: data is not JSON: %w", i, rackcloud.ErrInvalid)
			}
			d := string(e.Data)
			datas[i] = &d
		}
		if e.At.IsZero() {
			return 0, fmt.Errorf("boot event %d: no time: %w", i, rackcloud.ErrInvalid)
		}
		kinds[i], clients[i], ips[i], files[i] = e.Kind, e.Client, e.IP, e.File
		states[i], details[i], errs[i] = e.State, e.Detail, e.Error
		bytes[i], durs[i], cached[i], ats[i] = e.Bytes, int64(e.Duration), e.Cached, e.At
	}
	// One statement for the whole batch, in the batch's order (ids follow
	// the order the boot service saw the steps).
	tag, err := q.Exec(ctx, `INSERT INTO boot_events (mac, host_id, kind, client, ip, file, bytes, duration_ns, state,
		cached, detail, error, data, at)
		SELECT mac, host_id, kind, client, ip, file, bytes, duration_ns, state, cached, detail, error, data, at
		FROM unnest($1::macaddr[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
			$8::bigint[], $9::text[], $10::boolean[], $11::text[], $12::text[], $13::jsonb[], $14::timestamptz[])
			WITH ORDINALITY AS e(mac, host_id, kind, client, ip, file, bytes, duration_ns, state, cached, detail, error, data, at, n)
		ORDER BY n
		ON CONFLICT (mac, kind, at) DO NOTHING`,
		macs, hosts, kinds, clients, ips, files, bytes, durs, states, cached, details, errs, datas, ats)
	if err != nil {
		return 0, fmt.Errorf("boot events: %w", MapError(err))
	}
	return int(tag.RowsAffected()), nil
}

const bootEventCols = `id, COALESCE(mac::text, ''), COALESCE(host_id::text, ''), kind, client, ip, file, bytes, duration_ns,
	state, cached, detail, error, data, at, received_at`

func scanBootEvent(row pgx.Row) (BootEvent, error) {
	var e BootEvent
	var dur int64
	var data []byte
	err := row.Scan(&e.ID, &e.MAC, &e.HostID, &e.Kind, &e.Client, &e.IP, &e.File, &e.Bytes, &dur, &e.State, &e.Cached,
		&e.Detail, &e.Error, &data, &e.At, &e.ReceivedAt)
	e.Duration = time.Duration(dur)
	if len(data) > 0 {
		e.Data = data
	}
	return e, MapError(err)
}

// ListBootEvents lists boot events oldest first (by ID), keyset-paginated
// by f.After.
func ListBootEvents(ctx context.Context, q Querier, f BootEventFilter) ([]BootEvent, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	w := &where{}
	order := "id"
	if f.Newest {
		order = "id DESC"
	} else {
		w.add("id > $?", f.After)
	}
	if f.Kind != "" {
		w.add("kind = $?", f.Kind)
	}
	if !f.ReceivedSince.IsZero() {
		w.add("received_at >= $?", f.ReceivedSince)
	}
	if f.HostID != "" {
		if !ValidID(f.HostID) {
			return []BootEvent{}, nil
		}
		w.add("host_id = $?", f.HostID)
	}
	if f.MAC != "" {
		mac, err := rackcloud.NormalizeMAC(f.MAC)
		if err != nil {
			return nil, err
		}
		w.add("mac = $?::macaddr", mac)
	}
	rows, err := q.Query(ctx, `SELECT `+bootEventCols+` FROM boot_events`+w.sql()+
		fmt.Sprintf(` ORDER BY %s LIMIT %d`, order, f.Limit), w.args...)
	if err != nil {
		return nil, MapError(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (BootEvent, error) { return scanBootEvent(r) })
	if err != nil {
		return nil, MapError(err)
	}
	return out, nil
}

// bootDiscoveryLock namespaces the advisory locks of DiscoverHost.
const bootDiscoveryLock = "rackcloud.discover:"

// DiscoverHost returns the host that owns mac or, when no host does,
// creates one in state discovered named name with that MAC; created says
// whether it did. Call it in a transaction: discoveries of the same MAC
// wait for each other (a transaction-scoped advisory lock), and a host
// registered with the MAC meanwhile is returned instead of a new one. Call
// it for several MACs in sorted order, so that two batches cannot wait for
// each other.
func DiscoverHost(ctx context.Context, tx pgx.Tx, mac, name string) (h rackcloud.Host, created bool, err error) {
	mac, err = rackcloud.NormalizeMAC(mac)
	if err != nil {
		return h, false, err
	}
	h, err = GetHostByMAC(ctx, tx, mac)
	if !errors.Is(err, rackcloud.ErrNotFound) {
		return h, false, err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, bootDiscoveryLock+mac); err != nil {
		return h, false, fmt.Errorf("discover %s: %w", mac, MapError(err))
	}
	// Once the lock is ours, a discovery of mac that held it is committed
	// (or rolled back) and visible to this statement.
	h, err = GetHostByMAC(ctx, tx, mac)
	if !errors.Is(err, rackcloud.ErrNotFound) {
		return h, false, err
	}
	id, err := insertDiscovered(ctx, tx, mac, name)
	if err != nil {
		return h, false, err
	}
	if id == "" {
		// Someone registered the MAC meanwhile (POST /v1/hosts does not
		// take the lock): that host is the one.
		h, err = GetHostByMAC(ctx, tx, mac)
		return h, false, err
	}
	h, err = GetHost(ctx, tx, id)
	return h, err == nil, err
}

// insertDiscovered creates the discovered host of mac in a savepoint and
// returns its ID, or "" when another host got the MAC first. A name taken
// by another host gets a suffix.
func insertDiscovered(ctx context.Context, tx pgx.Tx, mac, name string) (string, error) {
	for attempt := 0; attempt < 4; attempt++ {
		try := name
		if attempt > 0 {
			try = fmt.Sprintf("%s-%d", name, attempt+1)
		}
		var id string
		err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			err := sp.QueryRow(ctx, `INSERT INTO hosts (name, state, state_reason) VALUES ($1, 'discovered', $2)
				ON CONFLICT (name) DO NOTHING RETURNING id::text`, try, "seen network-booting by the boot service").Scan(&id)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // name taken: try the next one
			}
			if err != nil {
				return err
			}
			var owner string
			err = sp.QueryRow(ctx, `INSERT INTO host_macs (mac, host_id, idx) VALUES ($1::macaddr, $2, 0)
				ON CONFLICT (mac) DO NOTHING RETURNING host_id::text`, mac, id).Scan(&owner)
			if errors.Is(err, pgx.ErrNoRows) {
				id = ""
				return errMACTaken // roll the host back
			}
			return err
		})
		switch {
		case errors.Is(err, errMACTaken):
			return "", nil
		case err != nil:
			return "", fmt.Errorf("discover %s: %w", mac, MapError(err))
		case id != "":
			return id, nil
		}
	}
	return "", fmt.Errorf("discover %s: names %s and the next ones are taken: %w", mac, name, rackcloud.ErrConflict)
}

var errMACTaken = errors.New("MAC taken")

// RecordBootToken keeps sum (the SHA-256 of a host's per-boot token) as
// the host's current boot token when issuedAt is newer than the one it
// has. It reports whether it replaced it.
func RecordBootToken(ctx context.Context, q Querier, hostID string, sum []byte, issuedAt time.Time) (bool, error) {
	if !ValidID(hostID) || len(sum) != sha256.Size {
		return false, fmt.Errorf("boot token of host %q: %w", hostID, rackcloud.ErrInvalid)
	}
	tag, err := q.Exec(ctx, `INSERT INTO boot_tokens (host_id, sha256, issued_at) VALUES ($1::uuid, $2, $3)
		ON CONFLICT (host_id) DO UPDATE SET sha256 = EXCLUDED.sha256, issued_at = EXCLUDED.issued_at
		WHERE boot_tokens.issued_at < EXCLUDED.issued_at`, hostID, sum, issuedAt)
	if err != nil {
		return false, MapError(err)
	}
	return tag.RowsAffected() == 1, nil
}

// CheckBootToken reports whether token is hostID's current boot token
// (compared in constant time). A host without one accepts none.
func CheckBootToken(ctx context.Context, q Querier, hostID, token string) (bool, error) {
	if !ValidID(hostID) || token == "" {
		return false, nil
	}
	var want []byte
	err := q.QueryRow(ctx, `SELECT sha256 FROM boot_tokens WHERE host_id = $1::uuid`, hostID).Scan(&want)
	if errors.Is(MapError(err), rackcloud.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, MapError(err)
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want) == 1, nil
}

// LatestBootEvent returns the newest event of kind for host hostID that
// the API stored at or after since (on the database's clock: see Now), or
// rackcloud.ErrNotFound.
func LatestBootEvent(ctx context.Context, q Querier, hostID, kind string, since time.Time) (BootEvent, error) {
	if !ValidID(hostID) {
		return BootEvent{}, rackcloud.ErrNotFound
	}
	rows, err := ListBootEvents(ctx, q, BootEventFilter{HostID: hostID, Kind: kind, ReceivedSince: since, Newest: true, Limit: 1})
	if err != nil {
		return BootEvent{}, err
	}
	if len(rows) == 0 {
		return BootEvent{}, fmt.Errorf("%s event of host %s since %s: %w", kind, hostID, since.Format(time.RFC3339), rackcloud.ErrNotFound)
	}
	return rows[0], nil
}

// Now is the database's clock: compare it with the times the database
// stamps (received_at), not the caller's.
func Now(ctx context.Context, q Querier) (time.Time, error) {
	var t time.Time
	err := q.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t)
	return t, MapError(err)
}

package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

func TestBootEventsStoredOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 678000000, time.UTC)
	evs := []store.BootEvent{
		{MAC: "52:54:00:AA:01:01", Kind: "dhcp.discover", Client: "ipxe", At: at},
		{MAC: "52:54:00:aa:01:01", Kind: "tftp.done", File: "undionly.kpxe", Bytes: 70000, Duration: time.Second, At: at.Add(time.Millisecond)},
		{MAC: "", Kind: "tftp.error", IP: "10.0.0.9", Error: "unknown peer", At: at},
		{MAC: "52:54:00:aa:01:01", Kind: "callback", Data: []byte(`{"ok":true}`), At: at.Add(2 * time.Millisecond)},
	}
	n, err := store.InsertBootEvents(ctx, pool, evs)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	// The same batch again (a retry), and a batch that repeats an event
	// inside itself: nothing new.
	n, err = store.InsertBootEvents(ctx, pool, evs)
	require.NoError(t, err)
	require.Equal(t, 0, n)
	n, err = store.InsertBootEvents(ctx, pool, []store.BootEvent{evs[0], evs[0], {MAC: evs[0].MAC, Kind: "dhcp.offer", At: at}})
	require.NoError(t, err)
	require.Equal(t, 1, n)

	all, err := store.ListBootEvents(ctx, pool, store.BootEventFilter{})
	require.NoError(t, err)
	require.Len(t, all, 5)
	require.Equal(t, "52:54:00:aa:01:01", all[0].MAC)
	require.True(t, all[0].At.Equal(at))
	require.Equal(t, time.Second, all[1].Duration)
	require.Equal(t, "", all[2].MAC)
	require.JSONEq(t, `{"ok":true}`, string(all[3].Data))

	byMAC, err := store.ListBootEvents(ctx, pool, store.BootEventFilter{MAC: "52-54-00-aa-01-01", After: all[0].ID, Limit: 2})
	require.NoError(t, err)
	require.Len(t, byMAC, 2)
	require.Equal(t, all[1].ID, byMAC[0].ID)
	require.Equal(t, all[3].ID, byMAC[1].ID)

	_, err = store.InsertBootEvents(ctx, pool, []store.BootEvent{{MAC: "nope", Kind: "dhcp.ack", At: at}})
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
	_, err = store.InsertBootEvents(ctx, pool, []store.BootEvent{{MAC: "52:54:00:aa:01:02", Kind: "Bad Kind", At: at}})
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
	all2, err := store.ListBootEvents(ctx, pool, store.BootEventFilter{})
	require.NoError(t, err)
	require.Len(t, all2, 5, "refused batches store nothing")
}

func TestDiscoverHostOnceUnderRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	const mac = "52:54:00:bb:00:01"

	// A host already named like the discovered one (without the MAC) makes
	// discovery pick another name instead of failing.
	_, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "discovered-525400bb0001"}})
	require.NoError(t, err)

	const racers = 6
	var wg sync.WaitGroup
	ids := make([]string, racers)
	created := make([]bool, racers)
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() {
			errs[i] = store.InTx(ctx, pool, func(tx pgx.Tx) error {
				h, c, err := store.DiscoverHost(ctx, tx, mac, "discovered-525400bb0001")
				ids[i], created[i] = h.ID, c
				return err
			})
		})
	}
	wg.Wait()
	n := 0
	for i := range racers {
		require.NoError(t, errs[i])
		require.Equal(t, ids[0], ids[i])
		if created[i] {
			n++
		}
	}
	require.Equal(t, 1, n, "exactly one discovery creates the host")
	h, err := store.GetHostByMAC(ctx, pool, mac)
	require.NoError(t, err)
	require.Equal(t, ids[0], h.ID)
	require.Equal(t, rackcloud.HostDiscovered, h.State)
	require.Equal(t, "discovered-525400bb0001-2", h.Name)
	require.Equal(t, []string{mac}, h.MACs)

	// A MAC registered by an operator is found, not discovered again.
	reg, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "node7"}, MACs: []string{"52:54:00:bb:00:07"}})
	require.NoError(t, err)
	require.NoError(t, store.InTx(ctx, pool, func(tx pgx.Tx) error {
		h, c, err := store.DiscoverHost(ctx, tx, "52:54:00:BB:00:07", "discovered-525400bb0007")
		require.False(t, c)
		require.Equal(t, reg.ID, h.ID)
		return err
	}))
	var hosts int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM hosts`).Scan(&hosts))
	require.Equal(t, 3, hosts)
}

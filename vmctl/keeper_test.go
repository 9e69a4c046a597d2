package vmctl

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

// TestKeeperReserve checks that a reservation holds its share from the
// decision to its end, that a failed claim gives it back, and that a
// refresh from the database (which does not know the claims in flight)
// charges the reservations again.
func TestKeeperReserve(t *testing.T) {
	k := NewKeeper(nil, 0, slog.New(slog.DiscardHandler))
	k.snap = NewSnapshot([]*HostInfo{host("h1", rackcloud.RoleKVM, "a", "r1")}) // 14 cores to sell
	g := rackcloud.Guest{Kind: rackcloud.GuestVM, Flavor: flavor(7, 1024, 10), PlacementGroupID: "grp"}
	r := Request{Kind: g.Kind, Flavor: g.Flavor}
	_, a, err := k.Reserve(r, g)
	require.NoError(t, err)
	_, b, err := k.Reserve(r, g)
	require.NoError(t, err)
	_, _, err = k.Reserve(r, g)
	require.True(t, errors.Is(err, ErrNoFit), "two reservations fill the host: %v", err)

	// A refresh reads the host as the database has it: empty.
	k.snap.Upsert(host("h1", rackcloud.RoleKVM, "a", "r1"))
	k.recharge("h1")
	require.Equal(t, 14, k.host("h1").Used.CPUCores)
	require.Equal(t, 2, k.host("h1").Groups["grp"])

	b.End(false) // lost its race: the share is free again
	b.End(false) // ending twice does nothing
	require.Equal(t, 7, k.host("h1").Used.CPUCores)
	require.Equal(t, 1, k.host("h1").Groups["grp"])
	a.End(true) // committed: stays charged until a refresh reads it
	require.Equal(t, 7, k.host("h1").Used.CPUCores)
	require.Empty(t, k.pending)
	_, c, err := k.Reserve(r, g)
	require.NoError(t, err)
	c.End(false)
	require.Equal(t, 7, k.host("h1").Used.CPUCores)
}

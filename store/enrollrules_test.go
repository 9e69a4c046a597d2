package store_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

func TestEnrollRulesInPriorityOrderAndMatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	reg, err := store.CreateRegion(ctx, pool, rackcloud.Region{Meta: rackcloud.Meta{Name: "r"}})
	require.NoError(t, err)
	zone, err := store.CreateZone(ctx, pool, rackcloud.Zone{Meta: rackcloud.Meta{Name: "z"}, RegionID: reg.ID})
	require.NoError(t, err)
	rack, err := store.CreateRack(ctx, pool, rackcloud.Rack{Meta: rackcloud.Meta{Name: "k"}, ZoneID: zone.ID, Positions: 42})
	require.NoError(t, err)
	im, err := store.CreateImage(ctx, pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "i"}, URL: "http://x/i", Checksum: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Format: rackcloud.FormatRaw, Size: 1 << 20, Roles: []rackcloud.HostRole{rackcloud.RoleKVM}})
	require.NoError(t, err)

	big, err := store.CreateEnrollRule(ctx, pool, rackcloud.EnrollRule{Meta: rackcloud.Meta{Name: "big", Labels: rackcloud.Labels{"team": "infra"}}, Priority: 20,
		Match: rackcloud.EnrollMatch{MinMemoryMiB: 4096, RackID: rack.ID, Vendor: "QEMU*"},
		Set:   rackcloud.EnrollSet{Role: rackcloud.RoleKVM, ImageID: im.ID, Labels: rackcloud.Labels{"ssd": "true"}, RackID: rack.ID}, Provision: true})
	require.NoError(t, err)
	require.Equal(t, rack.ID, big.Match.RackID)
	require.Equal(t, "QEMU*", big.Match.Vendor)
	require.Equal(t, rackcloud.EnrollSet{Role: rackcloud.RoleKVM, ImageID: im.ID, Labels: rackcloud.Labels{"ssd": "true"}, RackID: rack.ID}, big.Set)
	small, err := store.CreateEnrollRule(ctx, pool, rackcloud.EnrollRule{Meta: rackcloud.Meta{Name: "small"}, Priority: 10,
		Match: rackcloud.EnrollMatch{MACPrefix: "52:54:00:bb"}})
	require.NoError(t, err)
	catchAll, err := store.CreateEnrollRule(ctx, pool, rackcloud.EnrollRule{Meta: rackcloud.Meta{Name: "rest"}, Priority: 30})
	require.NoError(t, err)

	_, err = store.CreateEnrollRule(ctx, pool, rackcloud.EnrollRule{Meta: rackcloud.Meta{Name: "other"}, Priority: 10})
	require.ErrorIs(t, err, rackcloud.ErrConflict, "a priority has one rule")
	_, err = store.CreateEnrollRule(ctx, pool, rackcloud.EnrollRule{Meta: rackcloud.Meta{Name: "big"}, Priority: 11})
	require.ErrorIs(t, err, rackcloud.ErrConflict, "a name has one rule")

	// Listed in priority order, a page at a time.
	all, err := store.ListEnrollRules(ctx, pool, store.Filter{})
	require.NoError(t, err)
	require.Equal(t, []string{"small", "big", "rest"}, names(all))
	page, err := store.ListEnrollRules(ctx, pool, store.Filter{Limit: 2, After: store.EnrollRuleCursor(small)})
	require.NoError(t, err)
	require.Equal(t, []string{"big", "rest"}, names(page))

	// Stale updates and deletes are refused; an image or rack in use stays.
	big.Priority = 5
	upd, err := store.UpdateEnrollRule(ctx, pool, big)
	require.NoError(t, err)
	require.Equal(t, int64(2), upd.Version)
	_, err = store.UpdateEnrollRule(ctx, pool, big)
	require.ErrorIs(t, err, store.ErrStaleVersion)
	require.ErrorIs(t, store.DeleteEnrollRule(ctx, pool, small.ID, 7), store.ErrStaleVersion)
	require.ErrorIs(t, store.DeleteImage(ctx, pool, im.ID, 0), rackcloud.ErrConflict)

	// The match of a host as it is now.
	h, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "h"}, MACs: []string{"52:54:00:aa:00:01"}, RackID: rack.ID})
	require.NoError(t, err)
	matched, why, err := store.EnrollRuleMatch(ctx, pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, catchAll.ID, matched.ID)
	require.Equal(t, []rackcloud.RuleVerdict{
		{RuleID: big.ID, RuleName: "big", Reason: "no inventory yet"},
		{RuleID: small.ID, RuleName: "small", Reason: "mac 52:54:00:aa:00:01 does not start with 52:54:00:bb"},
		{RuleID: catchAll.ID, RuleName: "rest", Matched: true, Reason: "matches"},
	}, why)
	h, err = store.SetHostInventory(ctx, pool, h.ID, rackcloud.Inventory{Vendor: "QEMU", CPUs: 2, MemoryMiB: 8192}, rackcloud.Resources{}, rackcloud.Resources{})
	require.NoError(t, err)
	matched, why, err = store.EnrollRuleMatch(ctx, pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, big.ID, matched.ID)
	require.Len(t, why, 1)

	// What matched is recorded without moving the host's version, and
	// forgotten with the rule.
	_, _, err = store.HostEnrollMatch(ctx, pool, h.ID)
	require.NoError(t, err)
	require.NoError(t, store.RecordEnrollMatch(ctx, pool, h.ID, matched.ID, why))
	rule, verdicts, err := store.HostEnrollMatch(ctx, pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, big.ID, rule)
	require.Equal(t, why, verdicts)
	again, err := store.GetHost(ctx, pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, h.Version, again.Version)
	require.NoError(t, store.DeleteEnrollRule(ctx, pool, big.ID, 0))
	rule, verdicts, err = store.HostEnrollMatch(ctx, pool, h.ID)
	require.NoError(t, err)
	require.Empty(t, rule)
	require.Equal(t, why, verdicts)
	require.NoError(t, store.DeleteImage(ctx, pool, im.ID, 0), "no rule uses the image any more")

	_, _, err = store.EnrollRuleMatch(ctx, pool, "00000000-0000-4000-8000-000000000000")
	require.ErrorIs(t, err, rackcloud.ErrNotFound)
	require.ErrorIs(t, store.RecordEnrollMatch(ctx, pool, "nope", "", nil), rackcloud.ErrNotFound)
	_, _, err = store.HostEnrollMatch(ctx, pool, "nope")
	require.ErrorIs(t, err, rackcloud.ErrNotFound)
}

func names(rs []rackcloud.EnrollRule) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

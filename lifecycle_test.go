package rackcloud_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

func TestHostTableIsWellFormed(t *testing.T) {
	states := rackcloud.HostStates()
	seen := map[[2]string]bool{}
	for _, tr := range rackcloud.HostTransitions() {
		key := [2]string{string(tr.From), string(tr.Event)}
		require.False(t, seen[key], "(%s, %s) twice", tr.From, tr.Event)
		seen[key] = true
		require.Contains(t, states, tr.From)
		if tr.Event != rackcloud.HostEvRetry {
			require.Contains(t, states, tr.To, "%s --%s--> %q", tr.From, tr.Event, tr.To)
			require.NotEqual(t, tr.From, tr.To, "%s --%s--> itself", tr.From, tr.Event)
		}
	}
}

// Every state is reachable from discovered, and from every state the host
// can get back to ready or available: no state is a dead end.
func TestHostLifecycleHasNoDeadEnds(t *testing.T) {
	next := map[rackcloud.HostState][]rackcloud.HostState{}
	for _, tr := range rackcloud.HostTransitions() {
		to := tr.To
		if tr.Event == rackcloud.HostEvRetry {
			for _, s := range []rackcloud.HostState{rackcloud.HostInspecting, rackcloud.HostProvisioning, rackcloud.HostDeprovisioning, rackcloud.HostDraining} {
				next[tr.From] = append(next[tr.From], s)
			}
			continue
		}
		next[tr.From] = append(next[tr.From], to)
	}
	reach := func(from rackcloud.HostState) map[rackcloud.HostState]bool {
		seen := map[rackcloud.HostState]bool{from: true}
		todo := []rackcloud.HostState{from}
		for len(todo) > 0 {
			s := todo[0]
			todo = todo[1:]
			for _, n := range next[s] {
				if !seen[n] {
					seen[n] = true
					todo = append(todo, n)
				}
			}
		}
		return seen
	}
	fromDiscovered := reach(rackcloud.HostDiscovered)
	for _, s := range rackcloud.HostStates() {
		require.True(t, fromDiscovered[s], "%s is unreachable from discovered", s)
		r := reach(s)
		require.True(t, r[rackcloud.HostAvailable] || r[rackcloud.HostReady], "%s can never be used again", s)
	}
}

func TestNextHost(t *testing.T) {
	life := func(s rackcloud.HostState) rackcloud.HostLife { return rackcloud.HostLife{State: s} }
	for _, c := range []struct {
		from rackcloud.HostLife
		ev   rackcloud.HostEvent
		to   rackcloud.HostState
		task string
	}{
		{life(rackcloud.HostDiscovered), rackcloud.HostEvInspect, rackcloud.HostInspecting, rackcloud.KindHostEnroll},
		{life(rackcloud.HostInspecting), rackcloud.HostEvInspected, rackcloud.HostAvailable, ""},
		{life(rackcloud.HostAvailable), rackcloud.HostEvProvision, rackcloud.HostProvisioning, rackcloud.KindHostProvision},
		{life(rackcloud.HostProvisioning), rackcloud.HostEvProvisioned, rackcloud.HostReady, ""},
		{life(rackcloud.HostProvisioning), rackcloud.HostEvFail, rackcloud.HostFailed, ""},
		{rackcloud.HostLife{State: rackcloud.HostFailed, FailedIn: rackcloud.HostProvisioning}, rackcloud.HostEvRetry, rackcloud.HostProvisioning, rackcloud.KindHostProvision},
		{rackcloud.HostLife{State: rackcloud.HostFailed, FailedIn: rackcloud.HostInspecting}, rackcloud.HostEvRetry, rackcloud.HostInspecting, rackcloud.KindHostEnroll},
		{rackcloud.HostLife{State: rackcloud.HostFailed, FailedIn: rackcloud.HostInspecting}, rackcloud.HostEvReset, rackcloud.HostDeprovisioning, rackcloud.KindHostDeprovision},
		{life(rackcloud.HostReady), rackcloud.HostEvDrain, rackcloud.HostDraining, rackcloud.KindHostDrain},
		{life(rackcloud.HostDraining), rackcloud.HostEvDrained, rackcloud.HostMaintenance, ""},
		{life(rackcloud.HostMaintenance), rackcloud.HostEvActivate, rackcloud.HostReady, rackcloud.KindHostActivate},
		{life(rackcloud.HostReady), rackcloud.HostEvDeprovision, rackcloud.HostDeprovisioning, rackcloud.KindHostDeprovision},
		{life(rackcloud.HostDeprovisioning), rackcloud.HostEvDeprovisioned, rackcloud.HostAvailable, ""},
	} {
		tr, err := rackcloud.NextHost(c.from, c.ev)
		require.NoError(t, err, "%+v %s", c.from, c.ev)
		require.Equal(t, c.to, tr.To, "%+v %s", c.from, c.ev)
		require.Equal(t, c.task, tr.Task, "%+v %s", c.from, c.ev)
	}

	_, err := rackcloud.NextHost(life(rackcloud.HostReady), rackcloud.HostEvProvision)
	require.True(t, errors.Is(err, rackcloud.ErrConflict))
	require.ErrorContains(t, err, "a host that is ready cannot provision (it can: drain, deprovision, install_guest, fence)")
	_, err = rackcloud.NextHost(rackcloud.HostLife{State: rackcloud.HostFailed}, rackcloud.HostEvRetry)
	require.ErrorIs(t, err, rackcloud.ErrConflict, "a failure without a recorded state cannot be retried")
	require.False(t, rackcloud.HostCan(rackcloud.HostDiscovered, rackcloud.HostEvProvision), "inspect first")

	// The table is handed out as a copy.
	tr := rackcloud.HostTransitions()
	tr[0].Actions[0] = "mangled"
	require.False(t, slices.Contains(rackcloud.HostTransitions()[0].Actions, "mangled"))
}

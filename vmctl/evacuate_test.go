package vmctl_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
	"github.com/rackcloud/rackcloud/vmctl"
)

// evacuate runs host.evacuate on host and returns the task and its report
// (the report step's output, or the evacuate step's compensation's).
func (e *venv) evacuate(host string, fenced bool) (*tasks.Info, vmctl.EvacuationReport) {
	e.t.Helper()
	info := e.run(rackcloud.KindHostEvacuate, rackcloud.HostEvacuateParams{HostID: host, Fenced: fenced}, "host/"+host+"/evacuate")
	full, err := e.engine.Get(context.Background(), info.ID)
	require.NoError(e.t, err)
	var rep vmctl.EvacuationReport
	for _, s := range full.Steps {
		if s.Name == vmctl.StepReport || (s.Name == vmctl.StepEvacuate && s.Phase == tasks.PhaseUndo) {
			require.NoError(e.t, json.Unmarshal(s.Output, &rep), string(s.Output))
		}
	}
	return info, rep
}

// setHost changes a host the way an operator or the BMC watcher would.
func (e *venv) setHost(id, set string) {
	e.t.Helper()
	_, err := e.pool.Exec(context.Background(), `UPDATE hosts SET `+set+` WHERE id = $1`, id)
	require.NoError(e.t, err)
}

func (e *venv) created(name string, cpus int, mod func(*rackcloud.Guest)) rackcloud.Guest {
	e.t.Helper()
	g := e.guest(name, cpus, 512, mod)
	info := e.guestTask(rackcloud.KindGuestCreate, g)
	require.Equal(e.t, rackcloud.TaskSucceeded, info.State, info.Error)
	return e.get(g.ID)
}

func outcomes(r vmctl.EvacuationReport) map[string]string {
	m := map[string]string{}
	for _, g := range r.Guests {
		m[g.Name] = g.Outcome
	}
	return m
}

func TestEvacuateLiveMigratesEveryGuestAndKeepsTheirState(t *testing.T) {
	t.Parallel()
	e := newVenv(t, 1)
	h1 := e.host("d1", 0, 4, 4096, nil)
	e.waitSnapshot(1)
	a := e.created("a", 1, nil)
	b := e.created("b", 1, func(g *rackcloud.Guest) { g.HA = rackcloud.HANone })
	require.Equal(t, rackcloud.TaskSucceeded, e.guestTask(rackcloud.KindGuestStop, b).State)

	info, _ := e.evacuate(h1, false)
	require.Equal(t, rackcloud.TaskFailed, info.State, "a ready host is not evacuated live")
	require.Contains(t, info.Error, "put it in maintenance first")

	h2 := e.host("d2", 0, 4, 4096, nil)
	e.waitSnapshot(2)
	e.setHost(h1, "state = 'maintenance', maintenance = true")
	info, rep := e.evacuate(h1, false)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	require.Equal(t, 2, rep.Moved)
	require.Equal(t, map[string]string{"a": "moved", "b": "moved"}, outcomes(rep))
	require.Equal(t, h2, e.get(a.ID).HostID)
	require.Equal(t, rackcloud.GuestRunning, e.get(a.ID).State)
	require.Equal(t, h2, e.get(b.ID).HostID)
	require.Equal(t, rackcloud.GuestStopped, e.get(b.ID).State, "a stopped guest moves stopped")
	require.Contains(t, e.drv.Calls(), "stop "+h1[:4]+" a", "a live source is asked to stop")
	require.Contains(t, e.drv.Calls(), "delete "+h1[:4]+" a", "and cleaned")
	n, err := store.CountGuestsOnHost(context.Background(), e.pool, h1)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestEvacuateFencedRecreatesHAGuestsWithoutTouchingTheSource(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVenv(t, 1)
	h1 := e.host("d1", 0, 8, 8192, nil)
	e.waitSnapshot(1)
	ha := e.created("ha", 2, func(g *rackcloud.Guest) { g.HA = rackcloud.HARestart })
	none := e.created("plain", 1, func(g *rackcloud.Guest) { g.HA = rackcloud.HANone })
	h2 := e.host("d2", 0, 4, 4096, nil)
	e.waitSnapshot(2)

	info, _ := e.evacuate(h1, true)
	require.Equal(t, rackcloud.TaskFailed, info.State, "not fenced: power is not off")
	require.Contains(t, info.Error, "not fenced")
	require.Equal(t, h1, e.get(ha.ID).HostID)

	// The availability loop fenced it: powered off, confirmed; a ready
	// host must also take no new guests.
	e.setHost(h1, "power = 'off'")
	info, _ = e.evacuate(h1, true)
	require.Equal(t, rackcloud.TaskFailed, info.State)
	require.Contains(t, info.Error, "put it in maintenance first")
	e.setHost(h1, "state = 'draining', maintenance = true")
	before := len(e.drv.Calls())
	info, rep := e.evacuate(h1, true)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	require.Equal(t, map[string]string{"ha": "moved", "plain": "left"}, outcomes(rep))
	require.Equal(t, 1, rep.Moved)
	require.Equal(t, 1, rep.Left)

	got := e.get(ha.ID)
	require.Equal(t, h2, got.HostID)
	require.Equal(t, rackcloud.GuestRunning, got.State)
	require.Equal(t, "h-"+ha.ID[:8], got.Handle)
	if diff := cmp.Diff([]string{"prepare " + h2[:4] + " ha", "create " + h2[:4] + " ha", "start " + h2[:4] + " ha"},
		e.drv.Calls()[before:]); diff != "" {
		t.Fatalf("calls (-want +got):\n%s", diff)
	}
	evs, err := store.ListGuestEvents(ctx, e.pool, ha.ID, 0, 100)
	require.NoError(t, err)
	kinds := []string{}
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
	}
	require.Contains(t, kinds, "evacuated")

	p := e.get(none.ID)
	require.Equal(t, h1, p.HostID, "ha none stays on the fenced host")
	require.Equal(t, rackcloud.GuestFailed, p.State)
	require.Contains(t, p.StateReason, "ha policy none")
	h, err := store.GetHost(ctx, e.pool, h1)
	require.NoError(t, err)
	require.Equal(t, rackcloud.Resources{CPUCores: 1, MemoryMiB: 512, DiskGiB: 1}, h.Used, "only plain's claim stays")
}

func TestEvacuateFencedWithoutRoomFailsThatGuestOnlyAndExplains(t *testing.T) {
	t.Parallel()
	e := newVenv(t, 1)
	h1 := e.host("d1", 0, 8, 8192, nil)
	e.waitSnapshot(1)
	small := e.created("small", 1, func(g *rackcloud.Guest) { g.HA = rackcloud.HARestart })
	big := e.created("big", 4, func(g *rackcloud.Guest) { g.HA = rackcloud.HARestart })
	stopped := e.created("idle", 1, func(g *rackcloud.Guest) { g.HA = rackcloud.HARestart })
	require.Equal(t, rackcloud.TaskSucceeded, e.guestTask(rackcloud.KindGuestStop, stopped).State)
	h2 := e.host("d2", 0, 3, 4096, nil)
	e.waitSnapshot(2)
	e.setHost(h1, "power = 'off', state = 'maintenance', maintenance = true")

	info, rep := e.evacuate(h1, true)
	require.Equal(t, rackcloud.TaskFailed, info.State, "the host is not empty")
	require.Contains(t, info.Error, "no host to restart big on")
	require.Equal(t, map[string]string{"small": "moved", "big": "failed", "idle": "moved"}, outcomes(rep))
	require.Equal(t, 2, rep.Moved)
	require.Equal(t, 1, rep.Failed)

	require.Equal(t, h2, e.get(small.ID).HostID)
	require.Equal(t, rackcloud.GuestRunning, e.get(small.ID).State)
	require.Equal(t, rackcloud.GuestStopped, e.get(stopped.ID).State, "a stopped guest is recreated, not started")
	g := e.get(big.ID)
	require.Equal(t, h1, g.HostID, "the guest row and its claim are kept")
	require.Equal(t, rackcloud.GuestFailed, g.State)
	require.Contains(t, g.StateReason, "found no other host")
	require.Contains(t, g.Placement, "CPU cores", "placement says which filter refused")
	t.Log(g.Placement)

	// Room appears: evacuating again restarts the one that was left.
	e.host("d3", 0, 8, 8192, nil)
	e.waitSnapshot(3)
	info, rep = e.evacuate(h1, true)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	require.Equal(t, map[string]string{"big": "moved"}, outcomes(rep))
	require.Equal(t, rackcloud.GuestRunning, e.get(big.ID).State)
}

func TestEvacuationFor(t *testing.T) {
	for name, tc := range map[string]struct {
		g      rackcloud.Guest
		fenced bool
		want   rackcloud.EvacuationAction
	}{
		"live running":       {rackcloud.Guest{State: rackcloud.GuestRunning, HA: rackcloud.HANone}, false, rackcloud.EvacMigrate},
		"live failed":        {rackcloud.Guest{State: rackcloud.GuestFailed}, false, rackcloud.EvacMigrate},
		"live creating":      {rackcloud.Guest{State: rackcloud.GuestCreating}, false, rackcloud.EvacLeave},
		"live exact":         {rackcloud.Guest{State: rackcloud.GuestRunning, WantHostID: "h"}, false, rackcloud.EvacLeave},
		"fenced restart":     {rackcloud.Guest{State: rackcloud.GuestRunning, HA: rackcloud.HARestart}, true, rackcloud.EvacRecreate},
		"fenced stopped":     {rackcloud.Guest{State: rackcloud.GuestStopped, HA: rackcloud.HARestart}, true, rackcloud.EvacRecreate},
		"fenced none":        {rackcloud.Guest{State: rackcloud.GuestRunning, HA: rackcloud.HANone}, true, rackcloud.EvacLeave},
		"fenced deleting":    {rackcloud.Guest{State: rackcloud.GuestDeleting, HA: rackcloud.HARestart}, true, rackcloud.EvacLeave},
		"fenced exact":       {rackcloud.Guest{State: rackcloud.GuestRunning, HA: rackcloud.HARestart, WantHostID: "h"}, true, rackcloud.EvacLeave},
		"live bare metal":    {rackcloud.Guest{State: rackcloud.GuestRunning, Kind: rackcloud.GuestBareMetal}, false, rackcloud.EvacLeave},
		"fenced bare metal":  {rackcloud.Guest{State: rackcloud.GuestRunning, Kind: rackcloud.GuestBareMetal, HA: rackcloud.HARestart}, true, rackcloud.EvacLeave},
		"fenced ha is empty": {rackcloud.Guest{State: rackcloud.GuestRunning}, true, rackcloud.EvacLeave},
	} {
		t.Run(name, func(t *testing.T) {
			got, why := rackcloud.EvacuationFor(tc.g, tc.fenced)
			require.Equal(t, tc.want, got, why)
			require.NotEmpty(t, why)
		})
	}
}

func TestCanEvacuate(t *testing.T) {
	for name, tc := range map[string]struct {
		h      rackcloud.Host
		fenced bool
		ok     bool
	}{
		"ready live":         {rackcloud.Host{State: rackcloud.HostReady}, false, false},
		"draining live":      {rackcloud.Host{State: rackcloud.HostDraining}, false, true},
		"maintenance live":   {rackcloud.Host{State: rackcloud.HostMaintenance}, false, true},
		"failed live":        {rackcloud.Host{State: rackcloud.HostFailed}, false, true},
		"ready fenced off":   {rackcloud.Host{State: rackcloud.HostReady, Power: rackcloud.PowerOff}, true, false},
		"kept off fenced":    {rackcloud.Host{State: rackcloud.HostReady, Maintenance: true, Power: rackcloud.PowerOff}, true, true},
		"draining fenced":    {rackcloud.Host{State: rackcloud.HostDraining, Power: rackcloud.PowerOff}, true, true},
		"ready fenced on":    {rackcloud.Host{State: rackcloud.HostReady, Power: rackcloud.PowerOn}, true, false},
		"failed fenced unkn": {rackcloud.Host{State: rackcloud.HostFailed, Power: rackcloud.PowerUnknown}, true, false},
	} {
		t.Run(name, func(t *testing.T) {
			err := rackcloud.CanEvacuate(tc.h, tc.fenced)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, rackcloud.ErrConflict)
		})
	}
}

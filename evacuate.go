package rackcloud

import "fmt"

// This file is when a host may be evacuated and what happens to each of
// its guests: pure rules the api's guard and vmctl's host.evacuate task
// both ask.

// CanEvacuate says whether host h may be evacuated, live or fenced; an
// error wrapping ErrConflict says why not.
//
// A live evacuation (the operator drains a host) migrates guests cold, so
// the host must still answer, and no new guest may land on it meanwhile:
// it is draining, in maintenance, or failed (a failed host whose daemon
// still answers). A fenced evacuation recreates guests elsewhere without
// touching the host, which is safe only once the host cannot run them any
// more: its BMC confirmed it powered off (an HA guest has at most one
// instance running at any time); and no new guest may be placed on it
// either: a ready host must be put in maintenance first (it drains while
// the evacuation moves its guests, and comes back with maintenance off).
func CanEvacuate(h Host, fenced bool) error {
	if fenced {
		if h.Power != PowerOff {
			return fmt.Errorf("%w: host %s is not fenced (its BMC reports power %q, not off): power it off through its BMC first, or evacuate it live",
				ErrConflict, h.Name, h.Power)
		}
		if h.State == HostReady && !h.Maintenance {
			return fmt.Errorf("%w: host %s is ready and would take new guests: put it in maintenance first (it drains while the evacuation moves its guests)",
				ErrConflict, h.Name)
		}
		return nil
	}
	switch h.State {
	case HostDraining, HostMaintenance, HostFailed:
		return nil
	}
	return fmt.Errorf("%w: host %s is %s: a live evacuation needs a host that is draining, in maintenance or failed (put it in maintenance first, so that no new guest lands on it)",
		ErrConflict, h.Name, h.State)
}

// EvacuationAction is what host.evacuate does with one guest.
type EvacuationAction string

// Evacuation actions.
const (
	// EvacMigrate: cold migration (guest.migrate) from a live host.
	EvacMigrate EvacuationAction = "migrate"
	// EvacRecreate: recreate from the image elsewhere (guest.recreate),
	// from a fenced host.
	EvacRecreate EvacuationAction = "recreate"
	// EvacLeave: the guest stays where it is, for the reason given.
	EvacLeave EvacuationAction = "leave"
)

// EvacuationFor decides what evacuating its host does with guest g:
//
//   - a guest another task is changing (pending, creating, deleting) is
//     left alone: that task owns it;
//   - a guest with exact placement (WantHostID) may run on its host only,
//     so it is left;
//   - from a live host every other guest is migrated, whatever its HA
//     policy: the operator asked for the host to be emptied, and a cold
//     migration keeps the guest's disk and its running or stopped state;
//   - from a fenced host a guest with HA policy restart is recreated
//     elsewhere from its image (its disk on the dead host is lost to it),
//     and a guest with HA policy none is left on the fenced host (and
//     failed, with the reason): its owner did not ask for a restart, and
//     its disk may come back with the host; evacuate the host live once it
//     answers again, or delete the guest.
//
// The reason says why, for people.
func EvacuationFor(g Guest, fenced bool) (EvacuationAction, string) {
	switch g.State {
	case GuestRunning, GuestStopped, GuestFailed:
	default:
		return EvacLeave, fmt.Sprintf("guest is %s: the task at work on it decides", g.State)
	}
	if g.WantHostID != "" {
		return EvacLeave, "exact placement: the guest may run on this host only"
	}
	if g.Kind == GuestBareMetal {
		return EvacLeave, "bare metal: the guest is its host and does not move (delete it and create it again on another bm host)"
	}
	if !fenced {
		return EvacMigrate, "cold migration"
	}
	if g.HA != HARestart {
		return EvacLeave, "ha policy none: not restarted elsewhere; its disk stays on the fenced host (evacuate the host live once it is back, or delete the guest)"
	}
	return EvacRecreate, "ha policy restart: recreated elsewhere from its image"
}

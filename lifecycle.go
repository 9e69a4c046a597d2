package rackcloud

import (
	"fmt"
	"slices"
)

// This file is the host lifecycle (DESIGN.md section 3) as one pure table:
// (state, event) -> (state, actions). The api's guards ask it whether an
// operation may start; the provisioner's tasks ask it where a host goes
// next and store.TransitionHost applies the answer as a compare-and-set.
//
//	discovered -> inspecting -> available -> provisioning -> ready
//	                  |             ^             |            |
//	                  v             |             v            v
//	               failed <---------+---------- failed     draining -> maintenance
//	                                |                          |
//	                          deprovisioning <-----------------+

// HostEvent is what happens to a host: an operator's request, or the end of
// a task's work.
type HostEvent string

// Host events.
const (
	// HostEvInspect starts inspection: the host netboots the inspection
	// image and its agent reports the inventory (enroll, or inspect again).
	HostEvInspect HostEvent = "inspect"
	// HostEvInspected: the inventory arrived; the host can be provisioned.
	HostEvInspected HostEvent = "inspected"
	// HostEvProvision starts installing an image and a role.
	HostEvProvision HostEvent = "provision"
	// HostEvProvisioned: the installed OS booted and answered for its role.
	HostEvProvisioned HostEvent = "provisioned"
	// HostEvAdopt makes an already-running host ready without installing
	// it (its role's daemon answered).
	HostEvAdopt HostEvent = "adopt"
	// HostEvInstallGuest installs a bare-metal guest's image on the ready
	// bm host the guest claimed; the host is provisioning meanwhile and
	// ready again (HostEvProvisioned), still the guest's, once its disk
	// boots.
	HostEvInstallGuest HostEvent = "install_guest"
	// HostEvDrain starts moving guests off a ready host.
	HostEvDrain HostEvent = "drain"
	// HostEvDrained: no guest is left; the host is in maintenance.
	HostEvDrained HostEvent = "drained"
	// HostEvActivate returns a host in maintenance to service.
	HostEvActivate HostEvent = "activate"
	// HostEvDeprovision starts wiping a host that runs no guests.
	HostEvDeprovision HostEvent = "deprovision"
	// HostEvDeprovisioned: the disks are wiped; the host is available.
	HostEvDeprovisioned HostEvent = "deprovisioned"
	// HostEvFail: a step of the host's task failed for good.
	HostEvFail HostEvent = "fail"
	// HostEvRetry resumes a failed host at its failed step (the state
	// recorded in HostLife.FailedIn).
	HostEvRetry HostEvent = "retry"
	// HostEvReset wipes a failed host and returns it to available.
	HostEvReset HostEvent = "reset"
	// HostEvFence: the availability controller found the host dead and
	// powered it off through its BMC (confirmed off); the host is failed
	// (reason fenced) so that nothing is placed on it, and its HA guests
	// are recreated elsewhere.
	HostEvFence HostEvent = "fence"
)

// HostAction is what rackcloud does to the machine on a transition.
type HostAction string

// Host actions.
const (
	// ActNetbootInspection: the next netboot loads the inspection image.
	ActNetbootInspection HostAction = "netboot_inspection"
	// ActNetbootInstaller: the next netboot loads the installer with the
	// host's image.
	ActNetbootInstaller HostAction = "netboot_installer"
	// ActBootLocal: the host boots its local disk (iPXE exits).
	ActBootLocal HostAction = "boot_local"
	// ActPXEPowerCycle: set the next boot to PXE through the BMC and power
	// the machine on (or cycle it).
	ActPXEPowerCycle HostAction = "pxe_power_cycle"
	// ActKeepGuestsOff: no new guests are placed on the host.
	ActKeepGuestsOff HostAction = "keep_guests_off"
	// ActEvacuate: move the host's guests elsewhere.
	ActEvacuate HostAction = "evacuate"
	// ActWipe: wipe the partition tables and the ends of every disk.
	ActWipe HostAction = "wipe"
	// ActRecordFailure: keep the reason and the failed step.
	ActRecordFailure HostAction = "record_failure"
)

// FailureReason says, in one word a script can match, why a host failed.
type FailureReason string

// Failure reasons.
const (
	FailBMCUnreachable   FailureReason = "bmc_unreachable"
	FailBMCRefused       FailureReason = "bmc_refused"
	FailNoDHCP           FailureReason = "no_dhcp"
	FailNoTFTP           FailureReason = "no_tftp"
	FailNoCallback       FailureReason = "no_callback"
	FailAgentTimeout     FailureReason = "agent_timeout"
	FailNoDisk           FailureReason = "no_disk"
	FailDiskTooSmall     FailureReason = "disk_too_small"
	FailDownload         FailureReason = "download_failed"
	FailChecksumMismatch FailureReason = "checksum_mismatch"
	FailDiskWrite        FailureReason = "disk_write"
	FailFirstBootTimeout FailureReason = "first_boot_timeout"
	FailRoleUnreachable  FailureReason = "role_unreachable"
	// FailFenced: the host stopped answering and the availability
	// controller powered it off through its BMC (HostEvFence).
	FailFenced FailureReason = "fenced"
	// FailInternal is a failure of rackcloud itself (a bug, a database
	// error past its retries), not of the machine.
	FailInternal FailureReason = "internal"
)

// FailureReasons lists every failure reason.
func FailureReasons() []FailureReason {
	return []FailureReason{FailBMCUnreachable, FailBMCRefused, FailNoDHCP, FailNoTFTP, FailNoCallback, FailAgentTimeout,
		FailNoDisk, FailDiskTooSmall, FailDownload, FailChecksumMismatch, FailDiskWrite, FailFirstBootTimeout,
		FailRoleUnreachable, FailFenced, FailInternal}
}

// HostFailure is why a failed host failed: a typed reason, the step of
// the task that failed, and the state it was in (where a retry resumes).
type HostFailure struct {
	Reason FailureReason `json:"reason"`
	Step   string        `json:"step,omitempty"`
	In     HostState     `json:"in"`
	// Detail is the error, one line for a person.
	Detail string `json:"detail,omitempty"`
	// TaskID is the task whose step failed.
	TaskID string `json:"task_id,omitempty"`
}

// HostLife is the part of a host the lifecycle reads.
type HostLife struct {
	State HostState
	// FailedIn is the state a failed host failed in (inspecting,
	// provisioning, deprovisioning or draining): where HostEvRetry goes.
	FailedIn HostState
}

// HostTransition is one row of the lifecycle table.
type HostTransition struct {
	From  HostState
	Event HostEvent
	// To is the state the event leads to; for HostEvRetry it is the
	// host's FailedIn (To is then empty in the table).
	To HostState
	// Actions are done to the machine, in order, on the way.
	Actions []HostAction
	// Task is the task kind that carries the transition out, for events
	// that start work ("" for those that end it).
	Task string
}

// working are the states a task is moving the host through; a failure
// there leaves the host failed.
var working = []HostState{HostInspecting, HostProvisioning, HostDeprovisioning, HostDraining}

// hostTable is the lifecycle. Order does not matter: (From, Event) is unique.
var hostTable = func() []HostTransition {
	t := []HostTransition{
		{From: HostDiscovered, Event: HostEvInspect, To: HostInspecting, Task: KindHostEnroll,
			Actions: []HostAction{ActNetbootInspection, ActPXEPowerCycle}},
		{From: HostAvailable, Event: HostEvInspect, To: HostInspecting, Task: KindHostEnroll,
			Actions: []HostAction{ActNetbootInspection, ActPXEPowerCycle}},
		{From: HostInspecting, Event: HostEvInspected, To: HostAvailable},

		{From: HostAvailable, Event: HostEvProvision, To: HostProvisioning, Task: KindHostProvision,
			Actions: []HostAction{ActNetbootInstaller, ActPXEPowerCycle}},
		{From: HostProvisioning, Event: HostEvProvisioned, To: HostReady, Actions: []HostAction{ActBootLocal}},

		{From: HostDiscovered, Event: HostEvAdopt, To: HostReady, Task: KindHostAdopt, Actions: []HostAction{ActBootLocal}},
		{From: HostAvailable, Event: HostEvAdopt, To: HostReady, Task: KindHostAdopt, Actions: []HostAction{ActBootLocal}},

		{From: HostReady, Event: HostEvDrain, To: HostDraining, Task: KindHostDrain,
			Actions: []HostAction{ActKeepGuestsOff, ActEvacuate}},
		{From: HostDraining, Event: HostEvDrained, To: HostMaintenance},
		{From: HostMaintenance, Event: HostEvActivate, To: HostReady, Task: KindHostActivate},

		// Task: the kind of the state it failed in (RetryKind).
		{From: HostFailed, Event: HostEvRetry},
		{From: HostFailed, Event: HostEvReset, To: HostDeprovisioning, Task: KindHostDeprovision,
			Actions: []HostAction{ActNetbootInstaller, ActPXEPowerCycle, ActWipe}},
		{From: HostDeprovisioning, Event: HostEvDeprovisioned, To: HostAvailable, Actions: []HostAction{ActNetbootInspection}},
	}
	for _, from := range []HostState{HostAvailable, HostReady, HostMaintenance} {
		t = append(t, HostTransition{From: from, Event: HostEvDeprovision, To: HostDeprovisioning, Task: KindHostDeprovision,
			Actions: []HostAction{ActKeepGuestsOff, ActNetbootInstaller, ActPXEPowerCycle, ActWipe}})
	}
	// A bare-metal guest's image is installed on the ready host it
	// claimed (after the operator's events, in the table's order).
	t = append(t, HostTransition{From: HostReady, Event: HostEvInstallGuest, To: HostProvisioning, Task: KindHostInstallGuest,
		Actions: []HostAction{ActNetbootInstaller, ActPXEPowerCycle}})
	for _, from := range working {
		t = append(t, HostTransition{From: from, Event: HostEvFail, To: HostFailed, Actions: []HostAction{ActRecordFailure, ActBootLocal}})
	}
	// A host in service that died is fenced: powered off, failed, its HA
	// guests restarted elsewhere (the availability controller's host.fence).
	for _, from := range []HostState{HostReady, HostDraining, HostMaintenance} {
		t = append(t, HostTransition{From: from, Event: HostEvFence, To: HostFailed, Task: KindHostFence,
			Actions: []HostAction{ActRecordFailure, ActKeepGuestsOff, ActEvacuate}})
	}
	return t
}()

// RetryKind is the task kind that resumes a host failed in state: the
// kind that moves hosts through that state, whose steps are idempotent,
// so it goes on from where the failed task stopped.
func RetryKind(failedIn HostState) string {
	switch failedIn {
	case HostInspecting:
		return KindHostEnroll
	case HostProvisioning:
		return KindHostProvision
	case HostDeprovisioning:
		return KindHostDeprovision
	case HostDraining:
		return KindHostDrain
	}
	return ""
}

// HostTransitions returns a copy of the lifecycle table.
func HostTransitions() []HostTransition {
	out := make([]HostTransition, len(hostTable))
	for i, t := range hostTable {
		t.Actions = slices.Clone(t.Actions)
		out[i] = t
	}
	return out
}

// NextHost returns the transition that event makes from h, with To filled
// (for a retry, the state the host failed in). An event the state does
// not allow is an error wrapping ErrConflict that says which events it
// allows.
func NextHost(h HostLife, ev HostEvent) (HostTransition, error) {
	for _, t := range hostTable {
		if t.From != h.State || t.Event != ev {
			continue
		}
		t.Actions = slices.Clone(t.Actions)
		if ev == HostEvRetry {
			if !slices.Contains(working, h.FailedIn) {
				return HostTransition{}, fmt.Errorf("%w: host failed outside a step (in %q): reset it instead of retrying", ErrConflict, h.FailedIn)
			}
			t.To, t.Task = h.FailedIn, RetryKind(h.FailedIn)
		}
		return t, nil
	}
	return HostTransition{}, fmt.Errorf("%w: a host that is %s cannot %s (it can: %s)", ErrConflict, h.State, ev, joinEvents(HostEventsFrom(h.State)))
}

// HostCan reports whether event is allowed from state.
func HostCan(state HostState, ev HostEvent) bool {
	for _, t := range hostTable {
		if t.From == state && t.Event == ev {
			return true
		}
	}
	return false
}

// HostEventsFrom lists the events allowed from state, in table order.
func HostEventsFrom(state HostState) []HostEvent {
	var out []HostEvent
	for _, t := range hostTable {
		if t.From == state {
			out = append(out, t.Event)
		}
	}
	return out
}

// HostStates lists every lifecycle state, in lifecycle order.
func HostStates() []HostState {
	return []HostState{HostDiscovered, HostInspecting, HostAvailable, HostProvisioning, HostReady, HostDraining,
		HostMaintenance, HostDeprovisioning, HostFailed}
}

func joinEvents(evs []HostEvent) string {
	if len(evs) == 0 {
		return "nothing"
	}
	s := ""
	for i, e := range evs {
		if i > 0 {
			s += ", "
		}
		s += string(e)
	}
	return s
}

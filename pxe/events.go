package pxe

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/rackcloud/rackcloud"
)

// EventKind names one step of a network boot; the kinds are listed once,
// in package rackcloud, for the boot service and the API.
type EventKind = rackcloud.BootEventKind

// Boot events, in the order a boot produces them (rackcloud.BootEventKinds).
const (
	EventDHCPDiscover = rackcloud.BootEventDHCPDiscover
	EventDHCPOffer    = rackcloud.BootEventDHCPOffer
	EventDHCPRequest  = rackcloud.BootEventDHCPRequest
	EventDHCPAck      = rackcloud.BootEventDHCPAck
	EventDHCPNak      = rackcloud.BootEventDHCPNak
	EventDHCPInform   = rackcloud.BootEventDHCPInform
	EventDHCPDecline  = rackcloud.BootEventDHCPDecline
	EventDHCPRelease  = rackcloud.BootEventDHCPRelease
	EventTFTPStart    = rackcloud.BootEventTFTPStart
	EventTFTPDone     = rackcloud.BootEventTFTPDone
	// EventTFTPError is a transfer that did not complete; Detail says
	// whether the client aborted it on purpose (UEFI firmware asks for the
	// size first, then aborts with TFTP error 8).
	EventTFTPError  = rackcloud.BootEventTFTPError
	EventHTTPScript = rackcloud.BootEventHTTPScript
	EventHTTPKernel = rackcloud.BootEventHTTPKernel
	EventHTTPInitrd = rackcloud.BootEventHTTPInitrd
	EventHTTPFile   = rackcloud.BootEventHTTPFile
	// EventCallback is the booted image calling back (POST
	// /boot/{mac}/callback); Data holds its JSON body.
	EventCallback = rackcloud.BootEventCallback
	// EventInventory is the inspection agent's report (POST
	// /boot/{mac}/inventory); Data holds its rackcloud.Inventory JSON.
	EventInventory = rackcloud.BootEventInventory
	// EventInstall is the installer's report (POST /boot/{mac}/install);
	// Data holds its rackcloud.InstallReport JSON.
	EventInstall = rackcloud.BootEventInstall
	// EventHeartbeat is an installed host calling in (POST
	// /boot/{mac}/heartbeat, with the host's token); Data holds its
	// rackcloud.Heartbeat JSON.
	EventHeartbeat = rackcloud.BootEventHeartbeat
)

// Event is one recorded boot step of one MAC.
type Event struct {
	Time time.Time `json:"time"`
	MAC  string    `json:"mac"`
	Kind EventKind `json:"kind"`
	// Client is the boot client as classified from DHCP: bios, uefi,
	// uefi-http, ipxe or dhcp (a plain DHCP client).
	Client ClientKind `json:"client,omitempty"`
	// IP is the client's address (offered, leased, or the peer's).
	IP string `json:"ip,omitempty"`
	// File is the boot file, TFTP path or URL path involved.
	File string `json:"file,omitempty"`
	// Bytes and Duration (nanoseconds) describe a finished transfer.
	Bytes    int64         `json:"bytes,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	// State is the lifecycle state the boot script was rendered for;
	// Cached says the profile came from the local cache because the
	// control plane did not answer.
	State  rackcloud.HostState `json:"state,omitempty"`
	Cached bool                `json:"cached,omitempty"`
	Detail string              `json:"detail,omitempty"`
	Error  string              `json:"error,omitempty"`
	Data   json.RawMessage     `json:"data,omitempty"`
	// BootTokenSHA256 is, on an http.script event of a netboot, the
	// SHA-256 (hex) of the boot token the script put on the kernel
	// command line, so that the control plane can check what the booted
	// host presents later. The token itself is never recorded.
	BootTokenSHA256 string `json:"boot_token_sha256,omitempty"`
}

// EventSink receives boot events. Record must not block for long: the
// boot path calls it inline.
type EventSink interface {
	Record(Event)
}

// EventSinkFunc adapts a function to EventSink.
type EventSinkFunc func(Event)

// Record calls f(e).
func (f EventSinkFunc) Record(e Event) { f(e) }

var _ EventSink = EventSinkFunc(nil)

// EventLog keeps the latest events of the latest MACs in memory, so that a
// host's boot timeline can be shown. It is safe for concurrent use.
type EventLog struct {
	mu     sync.Mutex
	perMAC int
	maxMAC int
	byMAC  map[string][]Event
	order  []string // MACs, oldest first, for eviction
}

var _ EventSink = (*EventLog)(nil)

// NewEventLog keeps up to perMAC events for each of up to maxMACs MACs;
// the MAC first seen longest ago is forgotten first.
func NewEventLog(perMAC, maxMACs int) *EventLog {
	return &EventLog{perMAC: max(perMAC, 1), maxMAC: max(maxMACs, 1), byMAC: map[string][]Event{}}
}

// Record appends e to its MAC's timeline.
func (l *EventLog) Record(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs, ok := l.byMAC[e.MAC]
	if !ok {
		if len(l.order) >= l.maxMAC {
			delete(l.byMAC, l.order[0])
			l.order = l.order[1:]
		}
		l.order = append(l.order, e.MAC)
	}
	if len(evs) >= l.perMAC {
		// Shift in place: Timeline hands out copies only.
		evs = evs[:copy(evs, evs[len(evs)-l.perMAC+1:])]
	}
	l.byMAC[e.MAC] = append(evs, e)
}

// Timeline returns a copy of mac's events, oldest first.
func (l *EventLog) Timeline(mac string) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.byMAC[mac]...)
}

// multiSink records to every sink in order.
type multiSink []EventSink

func (m multiSink) Record(e Event) {
	for _, s := range m {
		if s != nil {
			s.Record(e)
		}
	}
}

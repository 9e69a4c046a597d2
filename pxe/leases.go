package pxe

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Lease is one address bound to one MAC.
type Lease struct {
	MAC      string     `json:"mac"`
	IP       netip.Addr `json:"ip"`
	Expires  time.Time  `json:"expires"`
	Hostname string     `json:"hostname,omitempty"`
}

// leaseFile is the on-disk format of StateDir/leases.json (a snapshot).
type leaseFile struct {
	Version int     `json:"version"`
	Leases  []Lease `json:"leases"`
}

const leaseFileVersion = 1

// journalEntry is one line of StateDir/leases.journal: the changes made
// since the snapshot, replayed over it in order.
type journalEntry struct {
	Op string `json:"op"`
	Lease
}

// Journal operations.
const (
	opBind   = "bind"
	opDelete = "delete"
)

// errPoolExhausted: no free address is left in the pool.
var errPoolExhausted = errors.New("address pool exhausted")

// leases allocates addresses of one subnet. Bound leases are persisted;
// offers and declines live in memory only.
type leases struct {
	mu       sync.Mutex
	now      func() time.Time
	subnet   netip.Prefix
	start    uint32
	end      uint32
	cursor   uint32
	exclude  map[netip.Addr]bool   // server, network, broadcast, router
	reserved map[netip.Addr]string // config reservations: IP -> MAC
	byMAC    map[string]*Lease
	byIP     map[netip.Addr]*Lease
	offers   map[string]offer
	offered  map[netip.Addr]string
	declined map[netip.Addr]time.Time
	hold     time.Duration
	decline  time.Duration
	dirty    chan struct{}

	// Persistence (see leasestore.go): every change is a journal line
	// with a sequence number; pending lines wait for the next flush.
	seq     uint64
	pending []byte
	lines   int // lines in the journal file since the last snapshot
	files   *leaseFiles
}

type offer struct {
	ip      netip.Addr
	expires time.Time
}

func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }
func addr(u uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], u)
	return netip.AddrFrom4(b)
}

func newLeases(cfg Config, now func() time.Time) *leases {
	l := &leases{
		now: now, subnet: cfg.Subnet,
		start: u32(cfg.RangeStart), end: u32(cfg.RangeEnd),
		exclude:  map[netip.Addr]bool{cfg.ServerIP: true},
		reserved: map[netip.Addr]string{},
		byMAC:    map[string]*Lease{}, byIP: map[netip.Addr]*Lease{},
		offers: map[string]offer{}, offered: map[netip.Addr]string{},
		declined: map[netip.Addr]time.Time{},
		hold:     cfg.OfferHold, decline: cfg.DeclineHold,
		dirty: make(chan struct{}, 1),
	}
	l.cursor = l.start
	// Neither the network nor the broadcast address is ever handed out.
	l.exclude[cfg.Subnet.Addr()] = true
	l.exclude[lastAddr(cfg.Subnet)] = true
	if cfg.Router.IsValid() {
		l.exclude[cfg.Router] = true
	}
	for mac, ip := range cfg.Reservations {
		l.reserved[ip] = mac
	}
	return l
}

// setLocked records ls as mac's lease, dropping whatever it replaces.
func (l *leases) setLocked(ls Lease) {
	if other, ok := l.byIP[ls.IP]; ok && other.MAC != ls.MAC {
		delete(l.byMAC, other.MAC)
	}
	if old, ok := l.byMAC[ls.MAC]; ok && old.IP != ls.IP {
		delete(l.byIP, old.IP)
	}
	lc := ls
	l.byMAC[ls.MAC] = &lc
	l.byIP[ls.IP] = &lc
}

// deleteLocked forgets mac's lease on ip.
func (l *leases) deleteLocked(mac string, ip netip.Addr) {
	if ls, ok := l.byIP[ip]; ok && ls.MAC == mac {
		delete(l.byIP, ip)
		delete(l.byMAC, mac)
	}
}

// poke wakes the flusher.
func (l *leases) poke() {
	select {
	case l.dirty <- struct{}{}:
	default:
	}
}

// logLocked journals a change and wakes the flusher; it returns the
// change's sequence number.
func (l *leases) logLocked(op string, ls Lease) uint64 {
	b, _ := json.Marshal(journalEntry{Op: op, Lease: ls})
	l.pending = append(append(l.pending, b...), '\n')
	l.seq++
	l.poke()
	return l.seq
}

// all returns the bound leases, ordered by address.
func (l *leases) all() []Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Lease, 0, len(l.byMAC))
	for _, ls := range l.byMAC {
		out = append(out, *ls)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}

// active counts unexpired leases.
func (l *leases) active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	n := 0
	for _, ls := range l.byMAC {
		if ls.Expires.After(now) {
			n++
		}
	}
	return n
}

// pool returns how many addresses of the dynamic range can be handed out
// to any MAC (the range less excluded addresses and reservations) and how
// many of those are taken now (an unexpired lease or a live offer).
func (l *leases) pool() (size, used int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	dynamic := func(ip netip.Addr) bool {
		_, reserved := l.reserved[ip]
		return l.inPool(ip) && l.subnet.Contains(ip) && !l.exclude[ip] && !reserved
	}
	size = int(l.end - l.start + 1)
	for ip := range l.exclude {
		if l.inPool(ip) {
			size--
		}
	}
	for ip := range l.reserved {
		if l.inPool(ip) && !l.exclude[ip] {
			size--
		}
	}
	taken := map[netip.Addr]bool{}
	for ip, ls := range l.byIP {
		if ls.Expires.After(now) && dynamic(ip) {
			taken[ip] = true
		}
	}
	for _, o := range l.offers {
		if o.expires.After(now) && dynamic(o.ip) {
			taken[o.ip] = true
		}
	}
	return max(0, size), len(taken)
}

// macOf returns the MAC holding ip (bound or offered).
func (l *leases) macOf(ip netip.Addr) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ls, ok := l.byIP[ip]; ok {
		return ls.MAC, true
	}
	mac, ok := l.offered[ip]
	return mac, ok
}

// freeForLocked reports whether ip may be given to mac now.
func (l *leases) freeForLocked(ip netip.Addr, mac string, now time.Time) bool {
	if !ip.Is4() || !l.subnet.Contains(ip) || l.exclude[ip] {
		return false
	}
	if owner, ok := l.reserved[ip]; ok && owner != mac {
		return false
	}
	if until, ok := l.declined[ip]; ok {
		if now.Before(until) {
			return false
		}
		delete(l.declined, ip)
	}
	if ls, ok := l.byIP[ip]; ok && ls.MAC != mac && ls.Expires.After(now) {
		return false
	}
	if owner, ok := l.offered[ip]; ok && owner != mac {
		if o := l.offers[owner]; o.ip == ip && o.expires.After(now) {
			return false
		}
		delete(l.offered, ip)
		delete(l.offers, owner)
	}
	return true
}

func (l *leases) inPool(ip netip.Addr) bool {
	return ip.Is4() && u32(ip) >= l.start && u32(ip) <= l.end
}

// Offer picks an address for mac: its reservation (want, when valid and
// free), its current or last lease, the address it asks for (requested, if
// in the pool and free), or the next free address of the pool. The
// address is held for the offer time.
func (l *leases) Offer(mac string, want, requested netip.Addr) (netip.Addr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	ip, err := l.pickLocked(mac, want, requested, now)
	if err != nil {
		return netip.Addr{}, err
	}
	if o, ok := l.offers[mac]; ok && o.ip != ip {
		delete(l.offered, o.ip)
	}
	l.offers[mac] = offer{ip: ip, expires: now.Add(l.hold)}
	l.offered[ip] = mac
	return ip, nil
}

func (l *leases) pickLocked(mac string, want, requested netip.Addr, now time.Time) (netip.Addr, error) {
	if want.IsValid() && l.freeForLocked(want, mac, now) {
		return want, nil
	}
	if o, ok := l.offers[mac]; ok && o.expires.After(now) && l.freeForLocked(o.ip, mac, now) {
		return o.ip, nil
	}
	if ls, ok := l.byMAC[mac]; ok && l.freeForLocked(ls.IP, mac, now) {
		return ls.IP, nil
	}
	if requested.IsValid() && l.inPool(requested) && l.freeForLocked(requested, mac, now) {
		return requested, nil
	}
	size := l.end - l.start + 1
	for i := uint32(0); i < size; i++ {
		c := l.cursor
		l.cursor++
		if l.cursor > l.end || l.cursor < l.start {
			l.cursor = l.start
		}
		if ip := addr(c); l.freeForLocked(ip, mac, now) {
			// An expired lease of another MAC on this address is gone now.
			if ls, ok := l.byIP[ip]; ok && ls.MAC != mac {
				l.logLocked(opDelete, *ls)
				l.deleteLocked(ls.MAC, ip)
			}
			return ip, nil
		}
	}
	return netip.Addr{}, errPoolExhausted
}

// Bind confirms ip for mac (DHCPREQUEST) for d. ip must be in the pool,
// mac's reservation (config or want) or mac's current lease; it fails when
// ip is outside the subnet, reserved for or leased to another MAC. The
// returned sequence number is durable once the lease store flushed it.
func (l *leases) Bind(mac string, ip, want netip.Addr, hostname string, d time.Duration) (Lease, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	mine := ip == want || l.reserved[ip] == mac
	if ls, ok := l.byMAC[mac]; ok && ls.IP == ip {
		mine = true
	}
	if !mine && !l.inPool(ip) {
		return Lease{}, 0, fmt.Errorf("address %v is outside the pool and not reserved for %s", ip, mac)
	}
	if !l.freeForLocked(ip, mac, now) {
		return Lease{}, 0, fmt.Errorf("address %v is not available to %s", ip, mac)
	}
	ls := Lease{MAC: mac, IP: ip, Expires: now.Add(d).Truncate(time.Second).UTC(), Hostname: hostname}
	l.setLocked(ls)
	if o, ok := l.offers[mac]; ok {
		delete(l.offered, o.ip)
		delete(l.offers, mac)
	}
	return ls, l.logLocked(opBind, ls), nil
}

// Owns reports whether mac holds an unexpired lease on ip.
func (l *leases) Owns(mac string, ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, ok := l.byIP[ip]
	return ok && ls.MAC == mac && ls.Expires.After(l.now())
}

// Release ends mac's lease on ip.
func (l *leases) Release(mac string, ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ls, ok := l.byIP[ip]; ok && ls.MAC == mac {
		// Keep the binding (expired) so the MAC gets the same address
		// back next time, unless someone else needs it.
		ls.Expires = l.now().Truncate(time.Second).UTC()
		l.logLocked(opBind, *ls)
	}
}

// Decline marks ip as in use by someone else for the decline hold.
func (l *leases) Decline(mac string, ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ls, ok := l.byIP[ip]; ok && ls.MAC == mac {
		l.logLocked(opDelete, *ls)
		l.deleteLocked(mac, ip)
	}
	if o, ok := l.offers[mac]; ok && o.ip == ip {
		delete(l.offers, mac)
		delete(l.offered, ip)
	}
	l.declined[ip] = l.now().Add(l.decline)
}

// Forget drops mac's pending offer (it chose another server).
func (l *leases) Forget(mac string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if o, ok := l.offers[mac]; ok {
		delete(l.offered, o.ip)
		delete(l.offers, mac)
	}
}

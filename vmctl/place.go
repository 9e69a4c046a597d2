package vmctl

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/rackcloud/rackcloud"
)

// Placement is a pure decision (STYLE.md "Decisions are pure"): Place takes
// a Snapshot and a Request and returns a Decision; it does no I/O and keeps
// no state. The caller claims the chosen host's capacity in one
// transaction and, when the claim loses a race, places again with the host
// in Request.Exclude.
//
// It works like Nomad's scheduler: feasibility filters, cheapest first,
// then scorers, over hosts visited in a random order. To stay fast on a
// large fleet it does not look at every host: candidates come from an index
// by role and zone (and, for a group with affinity, by rack or the group's
// hosts), are visited in a random order, and the walk stops once enough
// feasible hosts were scored (PlaceConfig.Sample). The trade-off: a success is
// chosen among a sample, not the whole fleet, so the chosen host is a good
// fit, not always the best one (as in Nomad, where a service job scores
// log2(n) hosts); a refusal, though, has walked every candidate, so "no
// host fits" is exact and its explanation counts every host.

// ErrNoFit is what a refused placement's error wraps (a *NoFitError).
var ErrNoFit = errors.New("no host fits")

// NoFitError is a refusal with its explanation; errors.Is(err, ErrNoFit)
// holds, and errors.As gives the explanation.
type NoFitError struct {
	Explanation Explanation
}

func (e *NoFitError) Error() string { return e.Explanation.Summary }

// Unwrap returns ErrNoFit.
func (e *NoFitError) Unwrap() error { return ErrNoFit }

// Overcommit holds per-resource overcommit ratios: 1.5 sells 150% of a
// resource. A ratio of 0 counts as 1.
type Overcommit struct{ CPU, Memory, Disk float64 }

// HostInfo is what placement knows of one host. A HostInfo in a Snapshot
// is read-only: to change it, Upsert a new one.
type HostInfo struct {
	ID, Name                                     string
	RegionID, ZoneID, ZoneName, RackID, RackName string
	Role                                         rackcloud.HostRole
	State                                        rackcloud.HostState
	Maintenance                                  bool
	Labels                                       map[string]string
	// Total and Overhead are the host's resources and what it keeps for
	// itself (CPUCores, MemoryMiB and DiskGiB are used).
	Total, Overhead rackcloud.Resources
	// Ratio holds the overcommit ratios, already resolved (host, else
	// zone, else 1).
	Ratio Overcommit
	// Used is what the guests placed on the host use; Guests counts them.
	Used   rackcloud.Resources
	Guests int
	// MaxGuests limits Guests (0: no limit); a bare-metal host takes
	// exactly one guest whatever MaxGuests says.
	MaxGuests int
	// Groups counts the host's guests per placement group ID.
	Groups map[string]int
}

// Capacity returns what the host can sell in all: floor((Total-Overhead) *
// Ratio) per resource, never below zero.
func (h *HostInfo) Capacity() rackcloud.Resources {
	sell := func(total, overhead int64, ratio float64) int64 {
		if ratio == 0 {
			ratio = 1
		}
		return max(0, int64(math.Floor(float64(total-overhead)*ratio)))
	}
	return rackcloud.Resources{
		CPUCores:  int(sell(int64(h.Total.CPUCores), int64(h.Overhead.CPUCores), h.Ratio.CPU)),
		MemoryMiB: sell(h.Total.MemoryMiB, h.Overhead.MemoryMiB, h.Ratio.Memory),
		DiskGiB:   sell(h.Total.DiskGiB, h.Overhead.DiskGiB, h.Ratio.Disk),
	}
}

// Free returns what can still be sold: Capacity minus Used, per resource
// (negative when the host is oversold).
func (h *HostInfo) Free() rackcloud.Resources {
	c := h.Capacity()
	return rackcloud.Resources{
		CPUCores:  c.CPUCores - h.Used.CPUCores,
		MemoryMiB: c.MemoryMiB - h.Used.MemoryMiB,
		DiskGiB:   c.DiskGiB - h.Used.DiskGiB,
	}
}

// guestLimit is the most guests the host takes (0: no limit).
func (h *HostInfo) guestLimit() int {
	if h.Role == rackcloud.RoleBareMetal {
		return 1
	}
	return h.MaxGuests
}

// hostSet is a set of hosts with O(1) put and delete (swap with the last).
type hostSet struct {
	hosts []*HostInfo
	at    map[string]int
}

func (hs *hostSet) put(h *HostInfo) {
	if i, ok := hs.at[h.ID]; ok {
		hs.hosts[i] = h
		return
	}
	if hs.at == nil {
		hs.at = make(map[string]int)
	}
	hs.at[h.ID] = len(hs.hosts)
	hs.hosts = append(hs.hosts, h)
}

func (hs *hostSet) del(id string) {
	i, ok := hs.at[id]
	if !ok {
		return
	}
	last := len(hs.hosts) - 1
	moved := hs.hosts[last]
	hs.hosts[i] = moved
	hs.at[moved.ID] = i
	hs.hosts[last] = nil
	hs.hosts = hs.hosts[:last]
	delete(hs.at, id)
}

func (hs *hostSet) len() int {
	if hs == nil {
		return 0
	}
	return len(hs.hosts)
}

func (hs *hostSet) list() []*HostInfo {
	if hs == nil {
		return nil
	}
	return hs.hosts
}

type roleZone struct {
	role rackcloud.HostRole
	zone string
}

// Snapshot is what placement decides on: every host that could take
// guests, with its usage, and indexes by role, by role and zone, by rack
// and by placement group. It is not safe for concurrent change; Place only
// reads it, so many Place calls may share a snapshot nobody changes.
type Snapshot struct {
	// Hosts lists every host, in no particular order. Read it; change it
	// only through Upsert and Remove.
	Hosts []*HostInfo

	all    hostSet
	byRole map[rackcloud.HostRole]*hostSet
	byZone map[roleZone]*hostSet
	byRack map[string]*hostSet
	groups map[string]*hostSet // group ID -> hosts with guests of the group
}

// NewSnapshot indexes hosts; of two with the same ID the last one counts.
func NewSnapshot(hosts []*HostInfo) *Snapshot {
	s := &Snapshot{
		byRole: make(map[rackcloud.HostRole]*hostSet),
		byZone: make(map[roleZone]*hostSet),
		byRack: make(map[string]*hostSet),
		groups: make(map[string]*hostSet),
	}
	for _, h := range hosts {
		s.Upsert(h)
	}
	return s
}

// Host returns the host with the ID, or nil.
func (s *Snapshot) Host(id string) *HostInfo {
	if i, ok := s.all.at[id]; ok {
		return s.all.hosts[i]
	}
	return nil
}

// Upsert adds h or replaces the host with its ID (a refresh after a
// change notice). It costs O(1) amortized plus O(len(Groups)) map updates.
func (s *Snapshot) Upsert(h *HostInfo) {
	s.Remove(h.ID)
	s.all.put(h)
	setIn(s.byRole, h.Role).put(h)
	setIn(s.byZone, roleZone{h.Role, h.ZoneID}).put(h)
	setIn(s.byRack, h.RackID).put(h)
	for g, n := range h.Groups {
		if n > 0 {
			setIn(s.groups, g).put(h)
		}
	}
	s.Hosts = s.all.hosts
}

// Remove drops the host with the ID, if there is one.
func (s *Snapshot) Remove(id string) {
	old := s.Host(id)
	if old == nil {
		return
	}
	s.all.del(id)
	delIn(s.byRole, old.Role, id)
	delIn(s.byZone, roleZone{old.Role, old.ZoneID}, id)
	delIn(s.byRack, old.RackID, id)
	for g := range old.Groups {
		delIn(s.groups, g, id)
	}
	s.Hosts = s.all.hosts
}

func setIn[K comparable](m map[K]*hostSet, k K) *hostSet {
	hs := m[k]
	if hs == nil {
		hs = &hostSet{}
		m[k] = hs
	}
	return hs
}

func delIn[K comparable](m map[K]*hostSet, k K, id string) {
	if hs := m[k]; hs != nil {
		hs.del(id)
		if hs.len() == 0 {
			delete(m, k)
		}
	}
}

// Group is a placement group as a request carries it.
type Group struct {
	ID     string
	Policy rackcloud.PlacementPolicy
	// Hard refuses a host that breaks the policy; a soft group only
	// weighs against it and says so in Decision.Soft.
	Hard  bool
	Scope rackcloud.PlacementScope
	// MaxPerScope is the most guests of the group per scope under
	// anti-affinity; 0 means 1.
	MaxPerScope int
	// Weight is what breaking a soft policy costs in score; 0 means
	// DefaultSoftWeight.
	Weight float64
}

// DefaultSoftWeight is a soft group's weight: more than the fit and rack
// spread scores can make up (together at most 1.5), so a host that keeps
// the policy always ranks above one that breaks it.
const DefaultSoftWeight = 2

// rackSpreadWeight is the most that rack spread takes off a host's score
// for an anti-affinity group: c/(c+1) of it for c group guests in its rack.
const rackSpreadWeight = 0.5

// Strategy is how fit is scored.
type Strategy string

// Strategies.
const (
	// Binpack prefers the hosts that are fullest after the guest is
	// placed (Nomad's best-fit v3 score); the default.
	Binpack Strategy = "binpack"
	// Spread prefers the emptiest hosts.
	Spread Strategy = "spread"
)

// Request is one guest to place.
type Request struct {
	GuestID string
	// Kind decides the role: vm on kvm, container on docker, bm on bm.
	Kind   rackcloud.GuestKind
	Flavor rackcloud.Resources
	// ZoneID and RackID, when set, keep the guest there.
	ZoneID, RackID string
	// HostID, when set, asks for exactly that host: only it is checked,
	// and a refusal says why it does not fit.
	HostID string
	// Constraints are label expressions every chosen host meets.
	Constraints []LabelExpr
	Group       *Group
	// Strategy is Binpack when empty.
	Strategy Strategy
	// Exclude holds the hosts already tried (their claim lost a race).
	Exclude map[string]bool
}

// Decision is a placement: the chosen host and why.
type Decision struct {
	HostID string
	Score  float64
	// Feasible counts the hosts that passed every filter among those
	// visited (a sample, see PlaceConfig.Sample).
	Feasible    int
	Explanation Explanation
	// Soft lists the soft constraints the chosen host breaks.
	Soft []string
}

// Explanation accounts for every host looked at:
// Considered == sum of Filters' Removed + Decision.Feasible.
type Explanation struct {
	Considered int
	// Filters are in the order applied; a host counts against the first
	// filter it fails.
	Filters []FilterResult
	// Summary is one line for people.
	Summary string
}

// FilterResult says how many hosts one filter removed.
type FilterResult struct {
	Name    string
	Removed int
	// Closest is the closest miss of a capacity filter ("best had 1536"),
	// empty for other filters or when it removed nothing.
	Closest string `json:",omitempty"`
}

// PlaceConfig tunes placement; the zero PlaceConfig is the default.
type PlaceConfig struct {
	// TopK: the choice is random among the TopK best scored hosts, so
	// that replicas placing at once seldom pick the same host. 0 means 3.
	TopK int
	// Sample is how many feasible hosts are scored before the walk stops
	// (more when the sample breaks a soft rule, see Place). 0 means
	// max(4*TopK, log2(candidates)), twice that for Spread, which needs a
	// wider look to find the emptiest hosts.
	Sample int
}

// Place places r with the default PlaceConfig.
func Place(s *Snapshot, r Request, rnd *rand.Rand) (Decision, error) {
	return PlaceConfig{}.Place(s, r, rnd)
}

// Place chooses a host for r among the snapshot's hosts. Filters, in order:
// role for the kind, zone, Exclude, state ready, maintenance, rack, each
// label constraint, cpu, memory, disk, guest limit, hard group policy.
// Feasible hosts are scored by fit (Strategy), soft group policy and, for
// anti-affinity groups, rack spread; the choice is random (rnd; nil means
// the global source) among the TopK best that break the fewest soft rules.
//
// The walk stops once Sample feasible hosts keep every soft rule or 8*Sample
// feasible hosts were seen. A refusal walks every candidate: its error is a
// *NoFitError (wrapping ErrNoFit) whose explanation counts every host. A
// malformed request is rackcloud.ErrInvalid.
func (c PlaceConfig) Place(s *Snapshot, r Request, rnd *rand.Rand) (Decision, error) {
	p, err := c.newPlacement(s, r, rnd)
	if err != nil {
		return Decision{}, err
	}
	p.walk()
	for i, best := range p.bestFree {
		if f := &p.exp.Filters[p.fCPU+i]; f.Removed > 0 {
			f.Closest = fmt.Sprintf("best had %d", best)
		}
	}
	if len(p.top) == 0 {
		p.exp.Summary = p.refusal()
		return Decision{}, &NoFitError{Explanation: p.exp}
	}
	best := p.top[0].soft
	n := 0
	for n < len(p.top) && p.top[n].soft == best {
		n++
	}
	pick := p.top[p.intN(n)]
	d := Decision{HostID: pick.h.ID, Score: pick.score, Feasible: p.feasible, Explanation: p.exp}
	d.Soft = p.softBroken(pick.h)
	d.Explanation.Summary = p.success(pick)
	return d, nil
}

// Filter indexes into placement.exp.Filters; label filters follow fRack,
// and the capacity and group filters follow them (placement.fCPU...).
const (
	fRole = iota
	fZone
	fExclude
	fState
	fMaint
	fRack
	fLabels
)

type scored struct {
	h     *HostInfo
	score float64
	soft  int // soft rules broken
}

type placement struct {
	s    *Snapshot
	r    Request
	role rackcloud.HostRole
	rnd  *rand.Rand

	k, sample int
	fCPU      int // then memory, disk, guests, group
	exp       Explanation

	// The group's guests per scope of its policy and per rack.
	g          *Group
	maxPer     int
	weight     float64
	scopeCount map[string]int
	rackCount  map[string]int

	// The flavor's cpu, memory and disk.
	wants [3]int64
	// best free amount among the hosts a capacity filter removed.
	bestFree [3]int64
	// scopes seen among the hosts the group filter removed.
	groupScopes map[string]bool

	visited, inPool, feasible, clean int
	top                              []scored
}

func roleFor(k rackcloud.GuestKind) (rackcloud.HostRole, bool) {
	switch k {
	case rackcloud.GuestVM:
		return rackcloud.RoleKVM, true
	case rackcloud.GuestContainer:
		return rackcloud.RoleDocker, true
	case rackcloud.GuestBareMetal:
		return rackcloud.RoleBareMetal, true
	}
	return "", false
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: place: %s", rackcloud.ErrInvalid, fmt.Sprintf(format, args...))
}

func (c PlaceConfig) newPlacement(s *Snapshot, r Request, rnd *rand.Rand) (*placement, error) {
	role, ok := roleFor(r.Kind)
	switch {
	case s == nil:
		return nil, invalid("no snapshot")
	case !ok:
		return nil, invalid("unknown guest kind %q", r.Kind)
	case r.Flavor.CPUCores < 0 || r.Flavor.MemoryMiB < 0 || r.Flavor.DiskGiB < 0:
		return nil, invalid("negative flavor %+v", r.Flavor)
	case r.Strategy != "" && r.Strategy != Binpack && r.Strategy != Spread:
		return nil, invalid("unknown strategy %q", r.Strategy)
	}
	p := &placement{s: s, r: r, role: role, rnd: rnd, k: c.TopK, sample: c.Sample,
		wants: [3]int64{int64(r.Flavor.CPUCores), r.Flavor.MemoryMiB, r.Flavor.DiskGiB}}
	if p.k <= 0 {
		p.k = 3
	}
	if g := r.Group; g != nil {
		switch {
		case g.ID == "":
			return nil, invalid("placement group without an ID")
		case g.Policy != rackcloud.Affinity && g.Policy != rackcloud.AntiAffinity:
			return nil, invalid("group %s: unknown policy %q", g.ID, g.Policy)
		case g.Scope != rackcloud.ScopeHost && g.Scope != rackcloud.ScopeRack && g.Scope != rackcloud.ScopeZone:
			return nil, invalid("group %s: unknown scope %q", g.ID, g.Scope)
		case g.MaxPerScope < 0:
			return nil, invalid("group %s: negative max per scope", g.ID)
		}
		p.g, p.maxPer, p.weight = g, max(1, g.MaxPerScope), g.Weight
		if p.weight == 0 {
			p.weight = DefaultSoftWeight
		}
		p.scopeCount, p.rackCount = map[string]int{}, map[string]int{}
		for _, h := range s.groups[g.ID].list() {
			n := h.Groups[g.ID]
			p.scopeCount[scopeKey(h, g.Scope)] += n
			p.rackCount[h.RackID] += n
		}
	}
	names := []string{"role", "zone", "exclude", "state", "maintenance", "rack"}
	for _, e := range r.Constraints {
		names = append(names, "label "+e.String())
	}
	p.fCPU = len(names)
	names = append(names, "cpu", "memory", "disk", "guests", "group")
	p.exp.Filters = make([]FilterResult, len(names))
	for i, n := range names {
		p.exp.Filters[i].Name = n
	}
	for i := range p.bestFree {
		p.bestFree[i] = math.MinInt64
	}
	return p, nil
}

func scopeKey(h *HostInfo, scope rackcloud.PlacementScope) string {
	switch scope {
	case rackcloud.ScopeRack:
		return h.RackID
	case rackcloud.ScopeZone:
		return h.ZoneID
	}
	return h.ID
}

func (p *placement) intN(n int) int {
	if p.rnd == nil {
		return rand.IntN(n)
	}
	return p.rnd.IntN(n)
}

// affinity reports whether the group keeps its guests together and has
// some already: then only (hard) or first (soft) their scopes are walked.
func (p *placement) affinity() bool {
	return p.g != nil && p.g.Policy == rackcloud.Affinity && len(p.scopeCount) > 0
}

// walk visits the candidates, filters and scores them.
func (p *placement) walk() {
	if p.r.HostID != "" {
		p.exp.Considered = 1
		if h := p.s.Host(p.r.HostID); h != nil {
			p.visit(h, false)
		} else {
			p.exp.Considered = 0
		}
		return
	}
	// The pool: hosts of the role (in the zone). Hosts left out of it
	// are counted from the index sizes, not visited.
	all, ofRole := len(p.s.Hosts), p.s.byRole[p.role].len()
	pool := p.s.byRole[p.role]
	if p.r.ZoneID != "" {
		pool = p.s.byZone[roleZone{p.role, p.r.ZoneID}]
	}
	p.exp.Filters[fRole].Removed = all - ofRole
	p.exp.Filters[fZone].Removed = ofRole - pool.len()
	p.exp.Considered = all - pool.len()
	if p.sample <= 0 {
		p.sample = max(4*p.k, bits.Len(uint(pool.len())))
		if p.r.Strategy == Spread {
			p.sample *= 2
		}
	}
	if p.affinity() {
		// The group's scopes first; under a hard policy nothing else.
		if p.walkSegments(p.affinitySegments(), true) {
			return
		}
		if p.g.Hard {
			// Pool hosts outside the group's scopes were not visited:
			// the group filter removed them.
			out := pool.len() - p.inPool
			p.exp.Filters[p.fCPU+4].Removed += out
			p.exp.Considered += out
			return
		}
	}
	p.walkSegments([][]*HostInfo{pool.list()}, false)
}

// affinitySegments lists the hosts in the scopes holding the group.
func (p *placement) affinitySegments() [][]*HostInfo {
	var segs [][]*HostInfo
	for key := range p.scopeCount {
		switch p.g.Scope {
		case rackcloud.ScopeHost:
			if h := p.s.Host(key); h != nil {
				segs = append(segs, []*HostInfo{h})
			}
		case rackcloud.ScopeRack:
			segs = append(segs, p.s.byRack[key].list())
		case rackcloud.ScopeZone:
			segs = append(segs, p.s.byZone[roleZone{p.role, key}].list())
		}
	}
	segs = slices.DeleteFunc(segs, func(seg []*HostInfo) bool { return len(seg) == 0 })
	// Map order is random but not from rnd: sort for reproducible runs.
	slices.SortFunc(segs, func(a, b []*HostInfo) int { return strings.Compare(a[0].ID, b[0].ID) })
	return segs
}

// walkSegments visits the hosts of segs in a random order: a random start
// and a random stride coprime with their count visit each host once, in
// O(1) setup. It reports whether it stopped early with enough hosts.
// affine: the segments are the group's scopes (hosts outside the pool are
// skipped, already counted); otherwise it is the pool, whose hosts in the
// group's scopes were visited already under a soft affinity.
func (p *placement) walkSegments(segs [][]*HostInfo, affine bool) bool {
	n := 0
	for _, seg := range segs {
		n += len(seg)
	}
	if n == 0 {
		return false
	}
	start, stride := p.intN(n), 1+p.intN(n)
	for gcd(stride, n) != 1 {
		stride++
	}
	skipAffine := !affine && p.affinity()
	for i := 0; i < n; i++ {
		j := (start + i*stride) % n
		seg := 0
		for j >= len(segs[seg]) {
			j -= len(segs[seg])
			seg++
		}
		h := segs[seg][j]
		if affine && (h.Role != p.role || p.r.ZoneID != "" && h.ZoneID != p.r.ZoneID) {
			continue
		}
		if skipAffine && p.scopeCount[scopeKey(h, p.g.Scope)] > 0 {
			continue
		}
		p.exp.Considered++
		p.inPool++
		p.visit(h, true)
		if p.clean >= p.sample || p.feasible >= 8*p.sample {
			return true
		}
	}
	return false
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// visit filters h and, when it passes, scores it.
func (p *placement) visit(h *HostInfo, pooled bool) {
	f := p.check(h, pooled)
	if f >= 0 {
		p.exp.Filters[f].Removed++
		return
	}
	p.feasible++
	sc := scored{h: h, score: FitScore(h, p.r.Flavor, p.r.Strategy)}
	if p.g != nil {
		if p.g.Policy == rackcloud.AntiAffinity {
			c := float64(p.rackCount[h.RackID])
			sc.score -= rackSpreadWeight * c / (c + 1)
		}
		if !p.g.Hard && p.breaksSoft(h) {
			sc.soft = 1
			sc.score -= p.weight
		}
	}
	if sc.soft == 0 {
		p.clean++
	}
	p.keep(sc)
}

// keep inserts sc into the top K, best first: fewest soft rules broken,
// then highest score; ties keep the earlier (random) visit first.
func (p *placement) keep(sc scored) {
	better := func(a, b scored) bool { return a.soft < b.soft || a.soft == b.soft && a.score > b.score }
	i := len(p.top)
	for i > 0 && better(sc, p.top[i-1]) {
		i--
	}
	if i >= p.k {
		return
	}
	if len(p.top) < p.k {
		p.top = append(p.top, scored{})
	}
	copy(p.top[i+1:], p.top[i:])
	p.top[i] = sc
}

// check returns the index of the first filter h fails, or -1. pooled: h
// came from the pool index, which already holds only the role and zone.
func (p *placement) check(h *HostInfo, pooled bool) int {
	r := &p.r
	if !pooled {
		if h.Role != p.role {
			return fRole
		}
		if r.ZoneID != "" && h.ZoneID != r.ZoneID {
			return fZone
		}
	}
	switch {
	case r.Exclude[h.ID]:
		return fExclude
	case h.State != rackcloud.HostReady:
		return fState
	case h.Maintenance:
		return fMaint
	case r.RackID != "" && h.RackID != r.RackID:
		return fRack
	}
	for i, e := range r.Constraints {
		if !e.Match(h.Labels) {
			return fLabels + i
		}
	}
	free := h.Free()
	for i, have := range [3]int64{int64(free.CPUCores), free.MemoryMiB, free.DiskGiB} {
		if have < p.wants[i] {
			p.bestFree[i] = max(p.bestFree[i], have)
			return p.fCPU + i
		}
	}
	if limit := h.guestLimit(); limit > 0 && h.Guests >= limit {
		return p.fCPU + 3
	}
	if p.g != nil && p.g.Hard && !p.keepsHard(h) {
		if p.groupScopes == nil {
			p.groupScopes = map[string]bool{}
		}
		p.groupScopes[scopeKey(h, p.g.Scope)] = true
		return p.fCPU + 4
	}
	return -1
}

// keepsHard reports whether h keeps the group's policy.
func (p *placement) keepsHard(h *HostInfo) bool {
	n := p.scopeCount[scopeKey(h, p.g.Scope)]
	if p.g.Policy == rackcloud.AntiAffinity {
		return n < p.maxPer
	}
	return n > 0 || len(p.scopeCount) == 0
}

func (p *placement) breaksSoft(h *HostInfo) bool { return !p.keepsHard(h) }

// softBroken says which soft rule h breaks, for Decision.Soft.
func (p *placement) softBroken(h *HostInfo) []string {
	if p.g == nil || p.g.Hard || !p.breaksSoft(h) {
		return nil
	}
	key := scopeKey(h, p.g.Scope)
	if p.g.Policy == rackcloud.AntiAffinity {
		return []string{fmt.Sprintf("soft anti-affinity: group %s already has %s in %s %s",
			p.g.ID, guests(p.scopeCount[key]), p.g.Scope, key)}
	}
	return []string{fmt.Sprintf("soft affinity: group %s has no guest in %s %s (it is in %s)",
		p.g.ID, p.g.Scope, key, p.scopeList())}
}

func guests(n int) string {
	if n == 1 {
		return "1 guest"
	}
	return fmt.Sprintf("%d guests", n)
}

// scopeList names the group's scopes, sorted, at most three.
func (p *placement) scopeList() string {
	keys := make([]string, 0, len(p.scopeCount))
	for k := range p.scopeCount {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) > 3 {
		keys = append(keys[:3], fmt.Sprintf("%d more", len(keys)-3))
	}
	return strings.Join(keys, ", ")
}

// FitScore scores placing flavor on h, in [0, 1], higher is better:
// Nomad's best-fit v3 over cpu and memory. With f the free fraction of
// each after placing, binpack scores (20 - (10^fcpu + 10^fmem)) / 18,
// clamped to [0, 1], highest for the fullest host; spread scores the
// reverse.
func FitScore(h *HostInfo, flavor rackcloud.Resources, s Strategy) float64 {
	c := h.Capacity()
	freeFrac := func(capacity, used, want int64) float64 {
		if capacity <= 0 {
			return 0
		}
		return min(1, max(0, 1-float64(used+want)/float64(capacity)))
	}
	total := math.Pow(10, freeFrac(int64(c.CPUCores), int64(h.Used.CPUCores), int64(flavor.CPUCores))) +
		math.Pow(10, freeFrac(c.MemoryMiB, h.Used.MemoryMiB, flavor.MemoryMiB))
	score := 20 - total
	if s == Spread {
		score = total - 2
	}
	return min(18, max(0, score)) / 18
}

// success is the summary of a placement on pick.
func (p *placement) success(pick scored) string {
	name := pick.h.ID
	if pick.h.Name != "" && pick.h.Name != pick.h.ID {
		name += " (" + pick.h.Name + ")"
	}
	if p.r.HostID != "" {
		return fmt.Sprintf("placed on %s as asked, score %.2f", name, pick.score)
	}
	return fmt.Sprintf("placed on %s, score %.2f: best %d of %d feasible among %d %s visited",
		name, pick.score, len(p.top), p.feasible, p.inPool, p.pool())
}

// pool names the candidates: "kvm hosts in zone a".
func (p *placement) pool() string {
	s := string(p.role) + " hosts"
	if p.r.ZoneID != "" {
		s += " in zone " + p.r.ZoneID
	}
	return s
}

// refusal is the summary of a refusal.
func (p *placement) refusal() string {
	if p.r.HostID != "" {
		h := p.s.Host(p.r.HostID)
		if h == nil {
			return fmt.Sprintf("no host fits: host %s is not in the snapshot", p.r.HostID)
		}
		for i, f := range p.exp.Filters {
			if f.Removed > 0 {
				return fmt.Sprintf("no host fits: host %s %s", p.r.HostID, p.whyNot(h, i))
			}
		}
	}
	fs := p.exp.Filters
	left := p.exp.Considered - fs[fRole].Removed - fs[fZone].Removed
	if left == 0 {
		return fmt.Sprintf("no host fits: no %s (of %d hosts)", p.pool(), p.exp.Considered)
	}
	parts := []string{fmt.Sprintf("%d %s", left, p.pool())}
	for i := fExclude; i < len(fs); i++ {
		if fs[i].Removed > 0 {
			parts = append(parts, p.phrase(i, fs[i].Removed, left))
		}
		left -= fs[i].Removed
	}
	return "no host fits: " + strings.Join(parts, "; ")
}

var resourceNames = [3]struct{ unit, what string }{{"", "CPU cores"}, {"MiB", "memory"}, {"GiB", "disk"}}

func amount(i int, n int64) string {
	if resourceNames[i].unit == "" {
		return fmt.Sprintf("%d %s", n, resourceNames[i].what)
	}
	return fmt.Sprintf("%d %s %s", n, resourceNames[i].unit, resourceNames[i].what)
}

// phrase says what filter i did to n hosts, left of which reached it.
func (p *placement) phrase(i, n, left int) string {
	switch {
	case i == fExclude:
		return fmt.Sprintf("%d already tried", n)
	case i == fState:
		return fmt.Sprintf("%d not ready", n)
	case i == fMaint:
		return fmt.Sprintf("%d in maintenance", n)
	case i == fRack:
		return fmt.Sprintf("%d not in rack %s", n, p.r.RackID)
	case i < p.fCPU:
		e := p.r.Constraints[i-fLabels]
		if e.Op == OpExists {
			return fmt.Sprintf("%d lacked label %s", n, e.Key)
		}
		return fmt.Sprintf("%d did not match %s", n, e)
	case i < p.fCPU+3:
		return fmt.Sprintf("%d lacked %s after overhead (%s)", n, amount(i-p.fCPU, p.wants[i-p.fCPU]), p.exp.Filters[i].Closest)
	case i == p.fCPU+3:
		return fmt.Sprintf("%d at their guest limit", n)
	}
	g := p.g
	if g.Policy == rackcloud.Affinity {
		return fmt.Sprintf("%d outside the %s of group %s (%s)", n, g.Scope, g.ID, p.scopeList())
	}
	if n == left {
		return fmt.Sprintf("group %s already has %s in every %s left (%d %ss)", g.ID, guests(p.maxPer), g.Scope, len(p.groupScopes), g.Scope)
	}
	return fmt.Sprintf("%d in a %s where group %s already has %s", n, g.Scope, g.ID, guests(p.maxPer))
}

// whyNot says why h fails filter i, for an exact-host request.
func (p *placement) whyNot(h *HostInfo, i int) string {
	switch {
	case i == fRole:
		return fmt.Sprintf("is a %s host, not %s", h.Role, p.role)
	case i == fZone:
		return fmt.Sprintf("is in zone %s, not %s", h.ZoneID, p.r.ZoneID)
	case i == fExclude:
		return "was already tried"
	case i == fState:
		return fmt.Sprintf("is %s, not ready", h.State)
	case i == fMaint:
		return "is in maintenance"
	case i == fRack:
		return fmt.Sprintf("is in rack %s, not %s", h.RackID, p.r.RackID)
	case i < p.fCPU:
		e := p.r.Constraints[i-fLabels]
		if e.Op == OpExists {
			return "lacks label " + e.Key
		}
		return "does not match " + e.String()
	case i < p.fCPU+3:
		free := h.Free()
		have := [3]int64{int64(free.CPUCores), free.MemoryMiB, free.DiskGiB}[i-p.fCPU]
		return fmt.Sprintf("lacks %s after overhead (has %d)", amount(i-p.fCPU, p.wants[i-p.fCPU]), have)
	case i == p.fCPU+3:
		return fmt.Sprintf("is at its guest limit (%d)", h.Guests)
	}
	key := scopeKey(h, p.g.Scope)
	if p.g.Policy == rackcloud.Affinity {
		return fmt.Sprintf("is outside the %s of group %s (%s)", p.g.Scope, p.g.ID, p.scopeList())
	}
	return fmt.Sprintf("is in %s %s, where group %s already has %s", p.g.Scope, key, p.g.ID, guests(p.scopeCount[key]))
}

package pxe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/rackcloud/rackcloud"
)

// Profile is what the boot service needs to know about one known host: its
// lifecycle state and how to boot it. It is the body of
// GET {api}/v1/boot/profiles/{mac} (see the package documentation).
type Profile struct {
	// MAC is the host's boot NIC, lower-case colon form.
	MAC string `json:"mac"`
	// HostID is the host's ID in the control plane.
	HostID string `json:"host_id,omitempty"`
	// Hostname is handed out in DHCP option 12 when set.
	Hostname string `json:"hostname,omitempty"`
	// State selects what the host boots (DESIGN.md section 3).
	State rackcloud.HostState `json:"state"`
	// StateReason is shown on the console of a failed host.
	StateReason string `json:"state_reason,omitempty"`
	// Action is what the control plane decided the host boots (api
	// BootFor); empty (a cache written by an older boot service) means
	// ActionFor(State).
	Action BootAction `json:"action,omitempty"`
	// Purpose says why: inspection, install or local.
	Purpose string `json:"purpose,omitempty"`
	// Boot is the kernel, initrd and command line for the state (the
	// installer while provisioning); empty fields fall back to the
	// discovery image for discovered, inspecting and available hosts.
	// Kernel and Initrd are paths under the boot service's /files/ or
	// absolute http(s) URLs; Script replaces the default iPXE template.
	Boot rackcloud.BootProfile `json:"boot"`
	// HostTokenSHA256 is the hex SHA-256 of an installed host's token,
	// which its heartbeats must carry.
	HostTokenSHA256 string `json:"host_token_sha256,omitempty"`
	// IPv4 reserves an address for the host in full DHCP mode.
	IPv4 netip.Addr `json:"ipv4,omitzero"`
	// Version is the host's version in the control plane; a cache keeps
	// the newest it has seen.
	Version int64 `json:"version"`
	// Cached is set by a caching source when the control plane did not
	// confirm the profile (it is not part of the wire format).
	Cached bool `json:"-"`
}

// ProfileSource tells the boot service which hosts are known and how they
// boot. Implementations: StaticProfiles (in memory), HTTPProfiles (the
// API over HTTP with a local cache).
type ProfileSource interface {
	// Profile returns the profile of mac (lower-case colon form). An error
	// wrapping rackcloud.ErrNotFound means the host is unknown; any other
	// error means the source could not answer (the boot service then
	// treats the host as unknown).
	Profile(ctx context.Context, mac string) (Profile, error)
	// Reachable reports whether the control plane answered last time it
	// was asked.
	Reachable() bool
}

// ErrUnavailable is returned by a ProfileSource that can neither reach the
// control plane nor answer from its cache.
var ErrUnavailable = errors.New("control plane unavailable")

// StaticProfiles is an in-memory ProfileSource, for a boot service
// embedded next to its store or running without a control plane. The zero
// value is empty and ready; it is safe for concurrent use.
type StaticProfiles struct {
	mu sync.RWMutex
	m  map[string]Profile
}

var _ ProfileSource = (*StaticProfiles)(nil)

// Set adds or replaces p (keyed by its normalised MAC).
func (s *StaticProfiles) Set(p Profile) error {
	mac, err := rackcloud.NormalizeMAC(p.MAC)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	p.MAC = mac
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]Profile{}
	}
	s.m[mac] = p
	return nil
}

// Delete forgets mac.
func (s *StaticProfiles) Delete(mac string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, mac)
}

// Profile returns the profile set for mac, or rackcloud.ErrNotFound.
func (s *StaticProfiles) Profile(_ context.Context, mac string) (Profile, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.m[mac]
	if !ok {
		return Profile{}, fmt.Errorf("profile %s: %w", mac, rackcloud.ErrNotFound)
	}
	return p, nil
}

// Reachable is always true: the profiles are local.
func (s *StaticProfiles) Reachable() bool { return true }

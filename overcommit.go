package rackcloud

import (
	"fmt"
	"math"
)

// Overcommit bounds, as the database's checks hold them (migration 0500).
const (
	// MaxOvercommit is the largest ratio of any resource.
	MaxOvercommit = 64
	// MinHostOvercommit is the smallest ratio a host may set (below 1
	// it sells less than it has).
	MinHostOvercommit = 0.1
	// MinZoneOvercommit is the smallest ratio a zone may set: a zone's
	// ratio is a default for many hosts, and selling less than they have
	// is a per-host decision.
	MinZoneOvercommit = 1
)

// CheckOvercommit says whether every ratio of o is 0 (inherit: a host
// takes its zone's, a zone means 1) or from minimum to MaxOvercommit; the
// error wraps ErrInvalid and names the first resource that is not.
func CheckOvercommit(o Overcommit, minimum float64) error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"cpu", o.CPU}, {"memory", o.Memory}, {"disk", o.Disk}} {
		if r.v == 0 {
			continue
		}
		if math.IsNaN(r.v) || r.v < minimum || r.v > MaxOvercommit {
			return fmt.Errorf("%w: overcommit %s is %g: a ratio is 0 (inherit) or from %g to %d", ErrInvalid, r.name, r.v, minimum, MaxOvercommit)
		}
	}
	return nil
}

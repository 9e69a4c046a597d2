package rackcloud

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// This file is auto-enroll (DESIGN.md section 1, journey 1): rules an
// operator writes that decide what a freshly inspected host becomes. The
// decision is pure: MatchEnrollRules takes the rules and the host and
// says which rule matched and why the others did not; the provisioner
// applies the rule's Set.

// EnrollRule decides what a freshly inspected host becomes: the first rule
// (lowest Priority) whose Match fits the host sets its role, image, labels
// and rack, and with Provision, installs it.
type EnrollRule struct {
	Meta
	// Priority orders the rules, lowest first; no two rules share one.
	Priority int         `json:"priority"`
	Match    EnrollMatch `json:"match"`
	Set      EnrollSet   `json:"set"`
	// Provision submits host.provision once Set is applied (it needs
	// Set.Role and Set.ImageID).
	Provision bool `json:"provision"`
}

// EnrollMatch is what a host must be for a rule to match it. Every field
// is a condition; an empty (zero) field matches anything. The globs are
// path.Match patterns, case-sensitive, matched against the whole value.
type EnrollMatch struct {
	// MACPrefix is one to six octets in lower-case colon form
	// ("52:54:00:aa"); it matches when any of the host's MACs starts with it.
	MACPrefix string `json:"mac_prefix,omitempty"`
	// Vendor, Product and Serial are globs over the inventory's DMI
	// fields.
	Vendor  string `json:"vendor,omitempty"`
	Product string `json:"product,omitempty"`
	Serial  string `json:"serial,omitempty"`
	// MinCPUs, MinMemoryMiB and MinDisks are lower bounds on the
	// inventory; MinDiskBytes is one on its largest disk.
	MinCPUs      int   `json:"min_cpus,omitempty"`
	MinMemoryMiB int64 `json:"min_memory_mib,omitempty"`
	MinDisks     int   `json:"min_disks,omitempty"`
	MinDiskBytes int64 `json:"min_disk_bytes,omitempty"`
	// Firmware is "bios" or "uefi".
	Firmware string `json:"firmware,omitempty"`
	// RackID is the rack the host must be registered in.
	RackID string `json:"rack_id,omitempty"`
}

// EnrollSet is what a matching rule makes of the host. Empty fields leave
// the host's as they are; Labels are added to the host's.
type EnrollSet struct {
	Role    HostRole `json:"role,omitempty"`
	ImageID string   `json:"image_id,omitempty"`
	Labels  Labels   `json:"labels,omitempty"`
	RackID  string   `json:"rack_id,omitempty"`
}

// RuleVerdict is why one rule did or did not match a host.
type RuleVerdict struct {
	RuleID   string `json:"rule_id"`
	RuleName string `json:"rule_name"`
	Matched  bool   `json:"matched"`
	// Reason says plainly why: "matches", or every condition that failed
	// ("memory 512 MiB < 1024; vendor \"QEMU\" does not match \"Dell*\"").
	Reason string `json:"reason"`
}

// FieldError is an invalid field of a domain value: Field is its JSON
// path ("match.vendor"). It wraps ErrInvalid.
type FieldError struct {
	Field   string
	Value   any
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Unwrap makes a FieldError an ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// HostRoles are the roles a host can be installed as.
func HostRoles() []HostRole { return []HostRole{RoleBareMetal, RoleKVM, RoleDocker} }

// Firmwares are the firmware kinds an inventory reports.
func Firmwares() []string { return []string{"bios", "uefi"} }

// NormalizeMACPrefix parses one to six octets of a MAC address ("52:54:00:AA"
// or "52-54-00-aa") and returns them in lower-case colon form, or
// ErrInvalid.
func NormalizeMACPrefix(s string) (string, error) {
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == '-' })
	if len(parts) == 0 || len(parts) > 6 || strings.Count(s, ":")+strings.Count(s, "-") != len(parts)-1 {
		return "", fmt.Errorf("%w: bad MAC prefix %q: want 1 to 6 octets like 52:54:00:aa", ErrInvalid, s)
	}
	for i, p := range parts {
		if len(p) != 2 {
			return "", fmt.Errorf("%w: bad MAC prefix %q: octet %q is not two hex digits", ErrInvalid, s, p)
		}
		if _, err := strconv.ParseUint(p, 16, 8); err != nil {
			return "", fmt.Errorf("%w: bad MAC prefix %q: octet %q is not two hex digits", ErrInvalid, s, p)
		}
		parts[i] = strings.ToLower(p)
	}
	return strings.Join(parts, ":"), nil
}

// Validate checks the match: MACPrefix in normal form, globs that
// path.Match accepts (a bad glob is refused here, never at match time),
// non-negative bounds, a known firmware. Errors are *FieldError.
func (m EnrollMatch) Validate() error {
	if m.MACPrefix != "" {
		n, err := NormalizeMACPrefix(m.MACPrefix)
		if err != nil {
			return &FieldError{Field: "match.mac_prefix", Value: m.MACPrefix, Message: strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")}
		}
		if n != m.MACPrefix {
			return &FieldError{Field: "match.mac_prefix", Value: m.MACPrefix, Message: "write it in lower-case colon form: " + n}
		}
	}
	for _, g := range []struct{ field, glob string }{{"match.vendor", m.Vendor}, {"match.product", m.Product}, {"match.serial", m.Serial}} {
		if _, err := path.Match(g.glob, ""); err != nil {
			return &FieldError{Field: g.field, Value: g.glob, Message: "bad glob (path.Match syntax: * ? [a-z] \\x): " + err.Error()}
		}
	}
	for _, b := range []struct {
		field string
		v     int64
	}{{"match.min_cpus", int64(m.MinCPUs)}, {"match.min_memory_mib", m.MinMemoryMiB}, {"match.min_disks", int64(m.MinDisks)}, {"match.min_disk_bytes", m.MinDiskBytes}} {
		if b.v < 0 {
			return &FieldError{Field: b.field, Value: b.v, Message: "must not be negative"}
		}
	}
	if m.Firmware != "" && !slices.Contains(Firmwares(), m.Firmware) {
		return &FieldError{Field: "match.firmware", Value: m.Firmware, Message: "want bios or uefi"}
	}
	return nil
}

// Validate checks the rule's own fields: a non-negative priority, a valid
// match, a known role, and with Provision a role and an image to install.
// Whether the image and racks exist, and whether the image serves the
// role, is for the caller that can look them up. Errors are *FieldError.
func (r EnrollRule) Validate() error {
	if r.Priority < 0 {
		return &FieldError{Field: "priority", Value: r.Priority, Message: "must not be negative"}
	}
	if err := r.Match.Validate(); err != nil {
		return err
	}
	if r.Set.Role != "" && !slices.Contains(HostRoles(), r.Set.Role) {
		return &FieldError{Field: "set.role", Value: string(r.Set.Role), Message: "want bm, kvm or docker"}
	}
	if r.Provision && r.Set.Role == "" {
		return &FieldError{Field: "set.role", Message: "a rule that provisions must set the role to install"}
	}
	if r.Provision && r.Set.ImageID == "" {
		return &FieldError{Field: "set.image_id", Message: "a rule that provisions must set the image to install"}
	}
	return nil
}

// needsInventory reports whether the match looks at the inventory.
func (m EnrollMatch) needsInventory() bool {
	return m.Vendor != "" || m.Product != "" || m.Serial != "" || m.MinCPUs > 0 || m.MinMemoryMiB > 0 ||
		m.MinDisks > 0 || m.MinDiskBytes > 0 || m.Firmware != ""
}

// Mismatches returns why h does not match m, one plain sentence per
// failed condition; none means it matches. m must be valid (a bad glob
// counts as not matching).
func (m EnrollMatch) Mismatches(h Host) []string {
	var why []string
	if m.MACPrefix != "" {
		switch {
		case len(h.MACs) == 0:
			why = append(why, "host has no mac, want one starting with "+m.MACPrefix)
		case !slices.ContainsFunc(h.MACs, func(mac string) bool { return strings.HasPrefix(strings.ToLower(mac), m.MACPrefix) }):
			if len(h.MACs) == 1 {
				why = append(why, fmt.Sprintf("mac %s does not start with %s", h.MACs[0], m.MACPrefix))
			} else {
				why = append(why, fmt.Sprintf("no mac of %s starts with %s", strings.Join(h.MACs, ", "), m.MACPrefix))
			}
		}
	}
	if m.RackID != "" && h.RackID != m.RackID {
		if h.RackID == "" {
			why = append(why, "host is in no rack, want rack "+m.RackID)
		} else {
			why = append(why, fmt.Sprintf("rack %s is not %s", h.RackID, m.RackID))
		}
	}
	if !m.needsInventory() {
		return why
	}
	inv := h.Inventory
	if inv == nil {
		return append(why, "no inventory yet")
	}
	for _, g := range []struct{ what, glob, v string }{{"vendor", m.Vendor, inv.Vendor}, {"product", m.Product, inv.Product}, {"serial", m.Serial, inv.Serial}} {
		if g.glob == "" {
			continue
		}
		if ok, err := path.Match(g.glob, g.v); err != nil || !ok {
			why = append(why, fmt.Sprintf("%s %q does not match %q", g.what, g.v, g.glob))
		}
	}
	if m.MinCPUs > 0 && inv.CPUs < m.MinCPUs {
		why = append(why, fmt.Sprintf("cpus %d < %d", inv.CPUs, m.MinCPUs))
	}
	if m.MinMemoryMiB > 0 && inv.MemoryMiB < m.MinMemoryMiB {
		why = append(why, fmt.Sprintf("memory %d MiB < %d", inv.MemoryMiB, m.MinMemoryMiB))
	}
	if m.MinDisks > 0 && len(inv.Disks) < m.MinDisks {
		why = append(why, fmt.Sprintf("disks %d < %d", len(inv.Disks), m.MinDisks))
	}
	if m.MinDiskBytes > 0 {
		var largest int64
		for _, d := range inv.Disks {
			largest = max(largest, d.SizeBytes)
		}
		if largest < m.MinDiskBytes {
			why = append(why, fmt.Sprintf("largest disk %d bytes < %d", largest, m.MinDiskBytes))
		}
	}
	if m.Firmware != "" && inv.Firmware != m.Firmware {
		if inv.Firmware == "" {
			why = append(why, "firmware unknown, want "+m.Firmware)
		} else {
			why = append(why, fmt.Sprintf("firmware %s is not %s", inv.Firmware, m.Firmware))
		}
	}
	return why
}

// MatchEnrollRules walks rules in priority order (lowest first; the order
// of rules does not matter) and returns the first that matches h, or nil.
// why has a verdict for every rule considered: the ones before the match
// and the match itself, or all of them when none matches.
func MatchEnrollRules(rules []EnrollRule, h Host) (matched *EnrollRule, why []RuleVerdict) {
	sorted := slices.Clone(rules)
	slices.SortStableFunc(sorted, func(a, b EnrollRule) int { return cmp.Compare(a.Priority, b.Priority) })
	why = []RuleVerdict{}
	for i := range sorted {
		r := &sorted[i]
		v := RuleVerdict{RuleID: r.ID, RuleName: r.Name, Matched: true, Reason: "matches"}
		if miss := r.Match.Mismatches(h); len(miss) > 0 {
			v.Matched, v.Reason = false, strings.Join(miss, "; ")
		}
		why = append(why, v)
		if v.Matched {
			return r, why
		}
	}
	return nil, why
}

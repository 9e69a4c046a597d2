package rackcloud_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

func inspected() rackcloud.Host {
	return rackcloud.Host{MACs: []string{"52:54:00:aa:01:01"}, RackID: "rack-1", Inventory: &rackcloud.Inventory{
		Vendor: "Dell Inc.", Product: "PowerEdge R640", Serial: "SN123", CPUs: 16, MemoryMiB: 65536, Firmware: "uefi",
		Disks: []rackcloud.InventoryDisk{{Name: "sda", SizeBytes: 480e9}, {Name: "sdb", SizeBytes: 1920e9}}}}
}

func TestEnrollMatchMismatches(t *testing.T) {
	t.Parallel()
	noInv := inspected()
	noInv.Inventory = nil
	twoMACs := inspected()
	twoMACs.MACs = []string{"52:54:00:bb:01:01", "52:54:00:bb:01:02"}
	for name, c := range map[string]struct {
		m    rackcloud.EnrollMatch
		h    rackcloud.Host
		want []string
	}{
		"empty matches anything":          {rackcloud.EnrollMatch{}, rackcloud.Host{}, nil},
		"empty matches without inventory": {rackcloud.EnrollMatch{}, noInv, nil},
		"mac prefix":                      {rackcloud.EnrollMatch{MACPrefix: "52:54:00:aa"}, inspected(), nil},
		"whole mac":                       {rackcloud.EnrollMatch{MACPrefix: "52:54:00:aa:01:01"}, inspected(), nil},
		"any of the macs":                 {rackcloud.EnrollMatch{MACPrefix: "52:54:00:bb:01:02"}, twoMACs, nil},
		"mac prefix differs":              {rackcloud.EnrollMatch{MACPrefix: "52:54:00:bb"}, inspected(), []string{"mac 52:54:00:aa:01:01 does not start with 52:54:00:bb"}},
		"no mac of several":               {rackcloud.EnrollMatch{MACPrefix: "52:54:00:aa"}, twoMACs, []string{"no mac of 52:54:00:bb:01:01, 52:54:00:bb:01:02 starts with 52:54:00:aa"}},
		"no mac":                          {rackcloud.EnrollMatch{MACPrefix: "52"}, rackcloud.Host{}, []string{"host has no mac, want one starting with 52"}},
		"mac matches without inventory":   {rackcloud.EnrollMatch{MACPrefix: "52:54"}, noInv, nil},
		"rack":                            {rackcloud.EnrollMatch{RackID: "rack-1"}, inspected(), nil},
		"other rack":                      {rackcloud.EnrollMatch{RackID: "rack-2"}, inspected(), []string{"rack rack-1 is not rack-2"}},
		"no rack":                         {rackcloud.EnrollMatch{RackID: "rack-2"}, rackcloud.Host{}, []string{"host is in no rack, want rack rack-2"}},
		"no inventory yet":                {rackcloud.EnrollMatch{MinCPUs: 1}, noInv, []string{"no inventory yet"}},
		"vendor glob":                     {rackcloud.EnrollMatch{Vendor: "Dell*", Product: "PowerEdge R6?0", Serial: "SN[0-9]*"}, inspected(), nil},
		"vendor differs": {rackcloud.EnrollMatch{Vendor: "QEMU"}, inspected(),
			[]string{`vendor "Dell Inc." does not match "QEMU"`}},
		"globs are case-sensitive": {rackcloud.EnrollMatch{Product: "poweredge*"}, inspected(),
			[]string{`product "PowerEdge R640" does not match "poweredge*"`}},
		"bounds hold": {rackcloud.EnrollMatch{MinCPUs: 16, MinMemoryMiB: 65536, MinDisks: 2, MinDiskBytes: 1920e9, Firmware: "uefi"}, inspected(), nil},
		"every failed bound": {rackcloud.EnrollMatch{MinCPUs: 32, MinMemoryMiB: 131072, MinDisks: 3, MinDiskBytes: 4e12, Firmware: "bios"}, inspected(),
			[]string{"cpus 16 < 32", "memory 65536 MiB < 131072", "disks 2 < 3", "largest disk 1920000000000 bytes < 4000000000000", "firmware uefi is not bios"}},
		"unknown firmware": {rackcloud.EnrollMatch{Firmware: "bios"}, rackcloud.Host{Inventory: &rackcloud.Inventory{}},
			[]string{"firmware unknown, want bios"}},
		"mac and inventory both fail": {rackcloud.EnrollMatch{MACPrefix: "aa", Vendor: "HPE"}, noInv,
			[]string{"mac 52:54:00:aa:01:01 does not start with aa", "no inventory yet"}},
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, c.m.Validate())
			if diff := cmp.Diff(c.want, c.m.Mismatches(c.h)); diff != "" {
				t.Errorf("mismatches (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMatchEnrollRulesInPriorityOrder(t *testing.T) {
	t.Parallel()
	rule := func(id string, prio int, m rackcloud.EnrollMatch) rackcloud.EnrollRule {
		return rackcloud.EnrollRule{Meta: rackcloud.Meta{ID: id, Name: "rule-" + id}, Priority: prio, Match: m}
	}
	small := rule("small", 10, rackcloud.EnrollMatch{MinMemoryMiB: 1 << 20})
	dell := rule("dell", 20, rackcloud.EnrollMatch{Vendor: "Dell*"})
	catchAll := rule("any", 30, rackcloud.EnrollMatch{})
	qemu := rule("qemu", 5, rackcloud.EnrollMatch{Vendor: "QEMU"})

	for name, c := range map[string]struct {
		rules   []rackcloud.EnrollRule
		h       rackcloud.Host
		matched string
		why     []rackcloud.RuleVerdict
	}{
		"no rules": {nil, inspected(), "", []rackcloud.RuleVerdict{}},
		"first match wins, later rules are not considered": {[]rackcloud.EnrollRule{catchAll, dell, small, qemu}, inspected(), "dell", []rackcloud.RuleVerdict{
			{RuleID: "qemu", RuleName: "rule-qemu", Reason: `vendor "Dell Inc." does not match "QEMU"`},
			{RuleID: "small", RuleName: "rule-small", Reason: "memory 65536 MiB < 1048576"},
			{RuleID: "dell", RuleName: "rule-dell", Matched: true, Reason: "matches"},
		}},
		"none matches": {[]rackcloud.EnrollRule{qemu, small}, inspected(), "", []rackcloud.RuleVerdict{
			{RuleID: "qemu", RuleName: "rule-qemu", Reason: `vendor "Dell Inc." does not match "QEMU"`},
			{RuleID: "small", RuleName: "rule-small", Reason: "memory 65536 MiB < 1048576"},
		}},
		"before inspection only rules without inventory match": {[]rackcloud.EnrollRule{dell, catchAll}, rackcloud.Host{}, "any", []rackcloud.RuleVerdict{
			{RuleID: "dell", RuleName: "rule-dell", Reason: "no inventory yet"},
			{RuleID: "any", RuleName: "rule-any", Matched: true, Reason: "matches"},
		}},
	} {
		t.Run(name, func(t *testing.T) {
			got, why := rackcloud.MatchEnrollRules(c.rules, c.h)
			id := ""
			if got != nil {
				id = got.ID
			}
			require.Equal(t, c.matched, id)
			if diff := cmp.Diff(c.why, why); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnrollRuleValidate(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		r     rackcloud.EnrollRule
		field string // "" for valid
	}{
		"empty": {rackcloud.EnrollRule{}, ""},
		"full": {rackcloud.EnrollRule{Priority: 3, Provision: true, Match: rackcloud.EnrollMatch{MACPrefix: "52:54:00:aa", Vendor: "Dell*",
			Product: "R[67]40", Serial: "?*", MinCPUs: 1, Firmware: "bios"}, Set: rackcloud.EnrollSet{Role: rackcloud.RoleKVM, ImageID: "i"}}, ""},
		"negative priority":         {rackcloud.EnrollRule{Priority: -1}, "priority"},
		"bad vendor glob":           {rackcloud.EnrollRule{Match: rackcloud.EnrollMatch{Vendor: "Dell["}}, "match.vendor"},
		"bad product glob":          {rackcloud.EnrollRule{Match: rackcloud.EnrollMatch{Product: `R640\`}}, "match.product"},
		"bad serial glob":           {rackcloud.EnrollRule{Match: rackcloud.EnrollMatch{Serial: "[]a]"}}, "match.serial"},
		"mac prefix not hex":        {rackcloud.EnrollRule{Match: rackcloud.EnrollMatch{MACPrefix: "52:54:zz"}}, "match.mac_prefix"},
		"mac prefix half octet":     {rackcloud.EnrollRule{Match: rackcloud.EnrollMatch{MACPrefix: "52:5"}}, "match.mac_prefix"},
		"mac prefix too long":       {rackcloud.EnrollRule{Match: rackcloud.EnrollMatch{MACPrefix: "52:54:00:aa:01:01:02"}}, "match.mac_prefix"},
		"mac prefix upper-case":     {rackcloud.EnrollRule{Match: rackcloud.EnrollMatch{MACPrefix: "52:54:00:AA"}}, "match.mac_prefix"},
		"mac prefix trailing colon": {rackcloud.EnrollRule{Match: rackcloud.EnrollMatch{MACPrefix: "52:54:"}}, "match.mac_prefix"},
		"negative memory":           {rackcloud.EnrollRule{Match: rackcloud.EnrollMatch{MinMemoryMiB: -1}}, "match.min_memory_mib"},
		"bad firmware":              {rackcloud.EnrollRule{Match: rackcloud.EnrollMatch{Firmware: "efi"}}, "match.firmware"},
		"bad role":                  {rackcloud.EnrollRule{Set: rackcloud.EnrollSet{Role: "vm"}}, "set.role"},
		"provision needs role":      {rackcloud.EnrollRule{Provision: true, Set: rackcloud.EnrollSet{ImageID: "i"}}, "set.role"},
		"provision needs image":     {rackcloud.EnrollRule{Provision: true, Set: rackcloud.EnrollSet{Role: rackcloud.RoleDocker}}, "set.image_id"},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.r.Validate()
			if c.field == "" {
				require.NoError(t, err)
				return
			}
			var fe *rackcloud.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, c.field, fe.Field, err.Error())
			require.True(t, errors.Is(err, rackcloud.ErrInvalid))
		})
	}
}

func TestNormalizeMACPrefix(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"52:54:00:AA": "52:54:00:aa", "52-54-00": "52:54:00", "aa": "aa", "52:54:00:aa:01:01": "52:54:00:aa:01:01"} {
		got, err := rackcloud.NormalizeMACPrefix(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{"", ":", "5", "52::54", "52:54:", "g0", "52:54:00:aa:01:01:02", "525400"} {
		_, err := rackcloud.NormalizeMACPrefix(in)
		require.ErrorIs(t, err, rackcloud.ErrInvalid, in)
	}
}

// Matching never fails on what Validate let through, whatever the host.
func FuzzEnrollMatch(f *testing.F) {
	f.Add("Dell*", "Dell Inc.", "52:54", "52:54:00:aa:01:01")
	f.Fuzz(func(t *testing.T, glob, vendor, prefix, mac string) {
		m := rackcloud.EnrollMatch{Vendor: glob, MACPrefix: prefix}
		if m.Validate() != nil {
			return
		}
		h := rackcloud.Host{MACs: []string{mac}, Inventory: &rackcloud.Inventory{Vendor: vendor}}
		_, why := rackcloud.MatchEnrollRules([]rackcloud.EnrollRule{{Match: m}}, h)
		require.Len(t, why, 1)
		require.Equal(t, why[0].Matched, why[0].Reason == "matches")
	})
}

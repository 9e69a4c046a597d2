package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

func init() {
	register(command{name: "rule", summary: "list and create auto-enroll rules (what a freshly inspected host becomes)", run: dispatch("rule", []verb{
		{"list", "", "list enroll rules in the order they are tried", listVerb("rule", "enroll-rules", ruleColumns)},
		{"get", "ID", "show an enroll rule", getVerb("rule", "enroll-rules")},
		{"create", "NAME --priority N [--mac-prefix P] [--vendor G] [--product G] [--serial G] [--min-cpus N] [--min-memory-mib N] [--min-disks N] [--min-disk-bytes N] [--firmware bios|uefi] [--rack R] [--role R] [--image I] [--label k=v]... [--provision]",
			"create an enroll rule: the first rule (lowest priority) that matches a host sets its role, image and labels", ruleCreate},
		{"delete", "ID", "delete an enroll rule", deleteVerb("rule", "enroll-rules")},
	})})
}

var ruleColumns = []column{{"PRIORITY", "priority"}, {"NAME", "name"}, {"MATCH", "match"}, {"ROLE", "set.role"},
	{"IMAGE", "set.image_id"}, {"SET_LABELS", "set.labels"}, {"PROVISION", "provision"}, {"ID", "id"}}

func ruleCreate(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("rule", "create", &cf)
	priority := fs.Int("priority", -1, "unique; rules are tried lowest first (required)")
	macPrefix := fs.String("mac-prefix", "", "match hosts with a MAC starting with these octets (52:54:00:aa)")
	vendor := fs.String("vendor", "", "match the DMI vendor (glob: * ? [a-z])")
	product := fs.String("product", "", "match the DMI product (glob)")
	serial := fs.String("serial", "", "match the DMI serial (glob)")
	minCPUs := fs.Int("min-cpus", 0, "match hosts with at least this many CPUs")
	minMem := fs.Int64("min-memory-mib", 0, "match hosts with at least this much memory (MiB)")
	minDisks := fs.Int("min-disks", 0, "match hosts with at least this many disks")
	minDiskBytes := fs.Int64("min-disk-bytes", 0, "match hosts whose largest disk has at least this many bytes")
	firmware := fs.String("firmware", "", "match hosts booting with this firmware: bios or uefi")
	rack := fs.String("rack", "", "match hosts in this rack (name or ID)")
	role := fs.String("role", "", "set the host's role: bm, kvm or docker")
	image := fs.String("image", "", "set the image to install (name or ID); it must serve the role")
	labels := labelsFlag{}
	fs.Var(labels, "label", "add this label key=value to the host (repeatable)")
	provision := fs.Bool("provision", false, "install the host once the rule applies (needs --role and --image)")
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud rule create NAME --priority N"); err != nil {
		return err
	}
	if *priority < 0 {
		return errUsage("rackcloud rule create NAME --priority N (N >= 0, unique)")
	}
	rackID, err := c.resolve(ctx, "racks", *rack)
	if err != nil {
		return err
	}
	imageID, err := c.resolve(ctx, "images", *image)
	if err != nil {
		return err
	}
	match := map[string]any{}
	for k, v := range map[string]string{"mac_prefix": *macPrefix, "vendor": *vendor, "product": *product, "serial": *serial,
		"firmware": *firmware, "rack_id": rackID} {
		if v != "" {
			match[k] = v
		}
	}
	for k, v := range map[string]int64{"min_cpus": int64(*minCPUs), "min_memory_mib": *minMem, "min_disks": int64(*minDisks), "min_disk_bytes": *minDiskBytes} {
		if v != 0 {
			match[k] = v
		}
	}
	set := map[string]any{}
	if *role != "" {
		set["role"] = *role
	}
	if imageID != "" {
		set["image_id"] = imageID
	}
	if len(labels) > 0 {
		set["labels"] = map[string]string(labels)
	}
	r, err := c.call(ctx, http.MethodPost, "/v1/enroll-rules", map[string]any{"name": pos[0], "priority": *priority,
		"match": match, "set": set, "provision": *provision})
	if err != nil {
		return err
	}
	return c.printItem(r.body)
}

var verdictColumns = []column{{"RULE", "rule_name"}, {"MATCHED", "matched"}, {"REASON", "reason"}}

// hostMatch prints which enroll rule enrolled the host, which matches it
// now, and the verdict of every rule tried now, in priority order.
func hostMatch(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("host", "match", &cf)
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud host match ID"); err != nil {
		return err
	}
	id, err := c.resolve(ctx, "hosts", pos[0])
	if err != nil {
		return err
	}
	r, err := c.call(ctx, http.MethodGet, "/v1/hosts/"+id+"/enroll-match", nil)
	if err != nil {
		return err
	}
	if c.out == "json" {
		return c.printItem(r.body)
	}
	var m struct {
		EnrolledByRule   string           `json:"enrolled_by_rule"`
		EnrollVerdicts   []map[string]any `json:"enroll_verdicts"`
		MatchingRule     string           `json:"matching_rule"`
		MatchingVerdicts []map[string]any `json:"matching_verdicts"`
	}
	if err := json.Unmarshal(r.body, &m); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled by: %s\n", ruleName(m.EnrolledByRule, m.EnrollVerdicts, "no rule recorded"))
	fmt.Fprintf(stdout, "matches now: %s\n\n", ruleName(m.MatchingRule, m.MatchingVerdicts, "no rule"))
	return c.printItems(m.MatchingVerdicts, verdictColumns)
}

// ruleName names the rule with id by its verdict, or says none.
func ruleName(id string, verdicts []map[string]any, none string) string {
	if id == "" {
		return none
	}
	for _, v := range verdicts {
		if v["rule_id"] == id {
			return fmt.Sprintf("%s (%s)", v["rule_name"], id)
		}
	}
	return id
}

package main

import (
	"context"
	"fmt"
	"net/http"
)

func init() {
	register(command{name: "guest", summary: "create, list, start, stop and delete guests", run: dispatch("guest", []verb{
		{"list", "[--project P] [--state S] [--label k=v]", "list guests", guestList},
		{"get", "ID", "show a guest", getVerb("guest", "guests")},
		{"create", "NAME --project P --image I [--kind vm|container|bm] [--vcpu 1] [--memory 1024] [--disk 10] [--constraint EXPR]... [--group G] [--dry-run] [--wait]", "ask for a guest (--dry-run: only say where it would go)", guestCreate},
		{"migrate", "ID [--host H] [--wait]", "move a guest to another host (cold)", guestMigrate},
		{"events", "ID", "a guest's timeline: placed, moved, and what its host was seen to do", guestEvents},
		{"console", "ID [--bytes N]", "what the guest wrote on its console (a VM's serial console, a container's output)", guestConsole},
		{"start", "ID [--wait]", "start a guest", guestAction("start", http.MethodPost)},
		{"stop", "ID [--wait]", "stop a guest", guestAction("stop", http.MethodPost)},
		{"reboot", "ID [--wait]", "reboot a guest", guestAction("reboot", http.MethodPost)},
		{"delete", "ID [--wait]", "delete a guest", guestAction("delete", http.MethodDelete)},
	})})
}

var guestColumns = []column{{"ID", "id"}, {"NAME", "name"}, {"PROJECT", "project_id"}, {"KIND", "kind"}, {"STATE", "state"},
	{"OBSERVED", "observed.state"}, {"VCPU", "flavor.vcpu"}, {"MEM_MIB", "flavor.memory_mib"}, {"DISK_GIB", "flavor.disk_gib"}, {"HOST", "host_id"}, {"LABELS", "labels"}}

func guestList(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("guest", "list", &cf)
	project := fs.String("project", "", "only guests of this project (name or ID)")
	state := fs.String("state", "", "only guests in this state")
	limit := fs.Int("limit", 0, "at most this many (0: all)")
	labels := labelsFlag{}
	fs.Var(labels, "label", "only guests with this label key=value (repeatable)")
	c, _, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	projectID, err := c.resolve(ctx, "projects", *project)
	if err != nil {
		return err
	}
	return c.printList(ctx, "/v1/guests", *limit, guestColumns,
		"state", *state, "project_id", projectID, "label_selector", labels.String())
}

func guestCreate(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("guest", "create", &cf)
	project := fs.String("project", "", "owning project (name or ID; env RACKCLOUD_PROJECT)")
	image := fs.String("image", "", "image (name or ID)")
	kind := fs.String("kind", "vm", "vm, container or bm")
	vcpu := fs.Int("vcpu", 1, "virtual CPUs")
	mem := fs.Int64("memory", 1024, "memory in MiB")
	disk := fs.Int64("disk", 10, "disk in GiB")
	zone := fs.String("zone", "", "zone (name or ID)")
	group := fs.String("group", "", "placement group (name or ID)")
	ha := fs.String("ha", "none", "HA policy: none or restart")
	labels := labelsFlag{}
	fs.Var(labels, "label", "label key=value (repeatable)")
	selector := labelsFlag{}
	fs.Var(selector, "selector", "host label the host must have, key=value (repeatable)")
	var constraints listFlag
	fs.Var(&constraints, "constraint", "label expression the host must meet: ssd, !spot, tier=gold, tier in (a,b) (repeatable)")
	rack := fs.String("rack", "", "rack (name or ID)")
	host := fs.String("host", "", "run on this host only (name or ID)")
	strategy := fs.String("strategy", "", "binpack (default) or spread")
	dryRun := fs.Bool("dry-run", false, "only say where the guest would go, and why; claim nothing")
	wait := fs.Bool("wait", false, "follow the task, showing its steps, until it ends")
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud guest create NAME --project P --image I"); err != nil {
		return err
	}
	body := map[string]any{"name": pos[0], "kind": *kind, "ha": *ha,
		"flavor": map[string]any{"vcpu": *vcpu, "memory_mib": *mem, "disk_gib": *disk}}
	if len(constraints) > 0 {
		body["constraints"] = []string(constraints)
	}
	if *strategy != "" {
		body["strategy"] = *strategy
	}
	for _, r := range []struct {
		coll, val, key string
	}{{"projects", *project, "project_id"}, {"images", *image, "image_id"}, {"zones", *zone, "zone_id"},
		{"placement-groups", *group, "placement_group_id"}, {"racks", *rack, "rack_id"}, {"hosts", *host, "host_id"}} {
		if r.val == "" {
			continue
		}
		id, err := c.resolve(ctx, r.coll, r.val)
		if err != nil {
			return err
		}
		body[r.key] = id
	}
	if len(labels) > 0 {
		body["labels"] = map[string]string(labels)
	}
	if len(selector) > 0 {
		body["selector"] = map[string]string(selector)
	}
	if *dryRun {
		r, err := c.call(ctx, http.MethodPost, "/v1/placement/dry-run", body)
		if err != nil {
			return err
		}
		return c.printPlacement(r.body)
	}
	r, err := c.call(ctx, http.MethodPost, "/v1/guests", body)
	if err != nil {
		return err
	}
	return c.accepted(ctx, r, *wait)
}

// printPlacement prints a dry run's answer: where, or why nowhere, and
// what each filter removed.
func (c *client) printPlacement(body []byte) error {
	if c.out == "json" {
		return c.printItem(body)
	}
	var a struct {
		Fits       bool   `json:"fits"`
		HostName   string `json:"host_name"`
		HostID     string `json:"host_id"`
		Considered int    `json:"considered"`
		Feasible   int    `json:"feasible"`
		Summary    string `json:"summary"`
		Filters    []struct {
			Name    string `json:"name"`
			Removed int    `json:"removed"`
			Detail  string `json:"detail"`
		} `json:"filters"`
		Soft []string `json:"soft"`
	}
	if err := jsonUnmarshal(body, &a); err != nil {
		return err
	}
	if a.Fits {
		fmt.Fprintf(stdout, "would place on %s (%s): %d of %d hosts fit\n", a.HostName, a.HostID, a.Feasible, a.Considered)
	} else {
		fmt.Fprintf(stdout, "no host fits: %s\n", a.Summary)
	}
	for _, f := range a.Filters {
		line := fmt.Sprintf("  %-20s removed %d", f.Name, f.Removed)
		if f.Detail != "" {
			line += " (" + f.Detail + ")"
		}
		fmt.Fprintln(stdout, line)
	}
	for _, s := range a.Soft {
		fmt.Fprintln(stdout, "  soft: "+s)
	}
	if !a.Fits {
		return fmt.Errorf("no host fits")
	}
	return nil
}

func guestMigrate(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("guest", "migrate", &cf)
	host := fs.String("host", "", "the host to move to (name or ID; default: placement picks)")
	wait := fs.Bool("wait", false, "follow the task until it ends")
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud guest migrate ID"); err != nil {
		return err
	}
	id, err := c.resolve(ctx, "guests", pos[0])
	if err != nil {
		return err
	}
	body := map[string]any{}
	if *host != "" {
		hid, err := c.resolve(ctx, "hosts", *host)
		if err != nil {
			return err
		}
		body["host_id"] = hid
	}
	r, err := c.call(ctx, http.MethodPost, "/v1/guests/"+id+"/migrate", body)
	if err != nil {
		return err
	}
	return c.accepted(ctx, r, *wait)
}

func guestEvents(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("guest", "events", &cf)
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud guest events ID"); err != nil {
		return err
	}
	id, err := c.resolve(ctx, "guests", pos[0])
	if err != nil {
		return err
	}
	r, err := c.call(ctx, http.MethodGet, "/v1/guests/"+id+"/events?limit=1000", nil)
	if err != nil {
		return err
	}
	var out struct {
		Items []map[string]any `json:"items"`
	}
	if err := jsonUnmarshal(r.body, &out); err != nil {
		return err
	}
	return c.printItems(out.Items, []column{{"AT", "at"}, {"KIND", "kind"}, {"DETAIL", "detail"}})
}

func guestAction(action, method string) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		var cf clientFlags
		fs := newVerbFlags("guest", action, &cf)
		wait := fs.Bool("wait", false, "follow the task until it ends")
		ifMatch := fs.String("if-match", "", "only if the guest's ETag is still this")
		c, pos, err := parseClient(fs, &cf, args)
		if err != nil {
			return err
		}
		if err := needArgs(pos, 1, "rackcloud guest "+action+" ID"); err != nil {
			return err
		}
		id, err := c.resolve(ctx, "guests", pos[0])
		if err != nil {
			return err
		}
		path := "/v1/guests/" + id
		if method != http.MethodDelete {
			path += "/" + action
		}
		var hdr []string
		if *ifMatch != "" {
			hdr = []string{"If-Match", *ifMatch}
		}
		r, err := c.call(ctx, method, path, nil, hdr...)
		if err != nil {
			return err
		}
		return c.accepted(ctx, r, *wait)
	}
}

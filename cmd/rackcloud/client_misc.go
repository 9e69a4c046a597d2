package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

func init() {
	meta := []column{{"ID", "id"}, {"NAME", "name"}, {"LABELS", "labels"}}
	register(command{name: "region", summary: "list and create regions", run: dispatch("region", []verb{
		{"list", "", "list regions", listVerb("region", "regions", meta)},
		{"get", "ID", "show a region", getVerb("region", "regions")},
		{"create", "NAME [--description D] [--label k=v]", "create a region", createVerb("region", "regions", func(fs *flag.FlagSet) func(*client, context.Context, []string) (map[string]any, error) {
			desc := fs.String("description", "", "free text")
			return func(_ *client, _ context.Context, pos []string) (map[string]any, error) {
				return map[string]any{"name": pos[0], "description": *desc}, nil
			}
		})},
		{"delete", "ID", "delete a region", deleteVerb("region", "regions")},
	})})
	register(command{name: "zone", summary: "list and create zones", run: dispatch("zone", []verb{
		{"list", "", "list zones", listVerb("zone", "zones", append(meta[:2:2], column{"REGION", "region_id"}))},
		{"get", "ID", "show a zone", getVerb("zone", "zones")},
		{"create", "NAME --region R [--overcommit cpu=4,memory=1.5,disk=1]", "create a zone", createVerb("zone", "zones", func(fs *flag.FlagSet) func(*client, context.Context, []string) (map[string]any, error) {
			region := fs.String("region", "", "region (name or ID)")
			oc := ratiosFlag{}
			fs.Var(oc, "overcommit", overcommitUsage)
			return func(c *client, ctx context.Context, pos []string) (map[string]any, error) {
				id, err := c.resolve(ctx, "regions", *region)
				b := map[string]any{"name": pos[0], "region_id": id}
				if len(oc) > 0 {
					b["overcommit"] = oc
				}
				return b, err
			}
		})},
		{"update", "ID [--overcommit cpu=4,memory=1.5,disk=1] [--label k=v]...", "change a zone's overcommit ratios or labels", zoneUpdate},
		{"delete", "ID", "delete a zone", deleteVerb("zone", "zones")},
	})})
	register(command{name: "rack", summary: "list and create racks", run: dispatch("rack", []verb{
		{"list", "", "list racks", listVerb("rack", "racks", append(meta[:2:2], column{"ZONE", "zone_id"}, column{"UNITS", "positions"}))},
		{"get", "ID", "show a rack", getVerb("rack", "racks")},
		{"create", "NAME --zone Z [--units 42]", "create a rack", createVerb("rack", "racks", func(fs *flag.FlagSet) func(*client, context.Context, []string) (map[string]any, error) {
			zone := fs.String("zone", "", "zone (name or ID)")
			units := fs.Int("units", 42, "rack units")
			return func(c *client, ctx context.Context, pos []string) (map[string]any, error) {
				id, err := c.resolve(ctx, "zones", *zone)
				return map[string]any{"name": pos[0], "zone_id": id, "positions": *units}, err
			}
		})},
		{"delete", "ID", "delete a rack", deleteVerb("rack", "racks")},
	})})
	register(command{name: "image", summary: "list and create images", run: dispatch("image", []verb{
		{"list", "", "list images", listVerb("image", "images", append(meta[:2:2], column{"FORMAT", "format"}, column{"SIZE", "size"}, column{"ROLES", "roles"}, column{"URL", "url"}))},
		{"get", "ID", "show an image", getVerb("image", "images")},
		{"create", "NAME --url U --checksum sha256:H [--format raw|raw+zstd|qcow2] [--size BYTES] [--role kvm]...", "create an image", createVerb("image", "images", func(fs *flag.FlagSet) func(*client, context.Context, []string) (map[string]any, error) {
			u := fs.String("url", "", "where the image is")
			sum := fs.String("checksum", "", "sha256:<hex> of the disk it holds")
			format := fs.String("format", "qcow2", "raw, raw+zstd (host images) or qcow2 (guest images)")
			size := fs.Int64("size", 0, "bytes of disk the image holds (required with --role)")
			var roles listFlag
			fs.Var(&roles, "role", "host role the image serves (repeatable)")
			return func(_ *client, _ context.Context, pos []string) (map[string]any, error) {
				b := map[string]any{"name": pos[0], "url": *u, "checksum": *sum, "format": *format}
				if *size > 0 {
					b["size"] = *size
				}
				if len(roles) > 0 {
					b["roles"] = roles
				}
				return b, nil
			}
		})},
		{"delete", "ID", "delete an image", deleteVerb("image", "images")},
		imageBuildVerb,
	})})
	register(command{name: "project", summary: "list and create projects, set quotas", run: dispatch("project", []verb{
		{"list", "", "list projects", listVerb("project", "projects", meta)},
		{"get", "ID", "show a project", getVerb("project", "projects")},
		{"create", "NAME [--description D]", "create a project", createVerb("project", "projects", func(fs *flag.FlagSet) func(*client, context.Context, []string) (map[string]any, error) {
			desc := fs.String("description", "", "free text")
			return func(_ *client, _ context.Context, pos []string) (map[string]any, error) {
				return map[string]any{"name": pos[0], "description": *desc}, nil
			}
		})},
		{"quota", "ID [--vcpu N --memory MiB --disk GiB --hosts N]", "show or set a project's quota", projectQuota},
		{"delete", "ID", "delete a project", deleteVerb("project", "projects")},
	})})
	register(command{name: "audit", summary: "list audit events", run: dispatch("audit", []verb{
		{"list", "[--target T] [--actor A] [--action OP] [--outcome O]", "list audit events, newest first", auditList},
	})})
}

// createVerb posts a new resource named by the first argument; mk adds
// the verb's flags and builds the body.
func createVerb(cmd, collection string, mk func(fs *flag.FlagSet) func(*client, context.Context, []string) (map[string]any, error)) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		var cf clientFlags
		fs := newVerbFlags(cmd, "create", &cf)
		labels := labelsFlag{}
		fs.Var(labels, "label", "label key=value (repeatable)")
		build := mk(fs)
		c, pos, err := parseClient(fs, &cf, args)
		if err != nil {
			return err
		}
		if err := needArgs(pos, 1, "rackcloud "+cmd+" create NAME"); err != nil {
			return err
		}
		body, err := build(c, ctx, pos)
		if err != nil {
			return err
		}
		if len(labels) > 0 {
			body["labels"] = map[string]string(labels)
		}
		r, err := c.call(ctx, http.MethodPost, "/v1/"+collection, body)
		if err != nil {
			return err
		}
		return c.printItem(r.body)
	}
}

func projectQuota(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("project", "quota", &cf)
	vcpu := fs.Int("vcpu", -1, "reserve this many vCPUs")
	mem := fs.Int64("memory", -1, "reserve this much memory (MiB)")
	disk := fs.Int64("disk", -1, "reserve this much disk (GiB)")
	hosts := fs.Int("hosts", -1, "reserve this many whole hosts")
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud project quota ID"); err != nil {
		return err
	}
	id, err := c.resolve(ctx, "projects", pos[0])
	if err != nil {
		return err
	}
	r, err := c.call(ctx, http.MethodGet, "/v1/projects/"+id+"/quota", nil)
	if err != nil {
		return err
	}
	if *vcpu < 0 && *mem < 0 && *disk < 0 && *hosts < 0 {
		return c.printItem(r.body)
	}
	var q struct {
		Reserved map[string]int64 `json:"reserved"`
	}
	if err := jsonUnmarshal(r.body, &q); err != nil {
		return err
	}
	for k, v := range map[string]int64{"vcpu": int64(*vcpu), "memory_mib": *mem, "disk_gib": *disk, "hosts": int64(*hosts)} {
		if v >= 0 {
			q.Reserved[k] = v
		}
	}
	r, err = c.call(ctx, http.MethodPut, "/v1/projects/"+id+"/quota", map[string]any{"reserved": q.Reserved},
		"If-Match", r.header.Get("ETag"))
	if err != nil {
		return err
	}
	return c.printItem(r.body)
}

var auditColumns = []column{{"ID", "id"}, {"AT", "at"}, {"ACTOR", "actor"}, {"ACTION", "action"},
	{"TARGET", "target"}, {"OUTCOME", "outcome"}, {"REQUEST", "request_id"}, {"DETAIL", "detail"}}

func auditList(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("audit", "list", &cf)
	limit := fs.Int("limit", 50, "at most this many (0: all)")
	target := fs.String("target", "", "only events with this target")
	actor := fs.String("actor", "", "only events with this actor")
	action := fs.String("action", "", "only events with this action")
	outcome := fs.String("outcome", "", "only events with this outcome")
	c, _, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	return c.printList(ctx, "/v1/audit-events", *limit, auditColumns, "target", *target, "actor", *actor, "action", *action, "outcome", *outcome)
}

// zoneUpdate PATCHes a zone with only the flags given.
func zoneUpdate(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("zone", "update", &cf)
	oc := ratiosFlag{}
	fs.Var(oc, "overcommit", overcommitUsage+"; the ratios not named become 0")
	labels := labelsFlag{}
	fs.Var(labels, "label", "label key=value (repeatable; replaces all labels)")
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud zone update ID [--overcommit ...] [--label k=v]"); err != nil {
		return err
	}
	body := map[string]any{}
	if len(oc) > 0 {
		body["overcommit"] = oc
	}
	if len(labels) > 0 {
		body["labels"] = map[string]string(labels)
	}
	if len(body) == 0 {
		return errUsage("rackcloud zone update ID: give --overcommit or --label")
	}
	id, err := c.resolve(ctx, "zones", pos[0])
	if err != nil {
		return err
	}
	r, err := c.call(ctx, http.MethodPatch, "/v1/zones/"+id, body)
	if err != nil {
		return err
	}
	return c.printItem(r.body)
}

const overcommitUsage = "overcommit ratios resource=ratio for cpu, memory, disk (0: none)"

// ratiosFlag collects overcommit ratios: cpu=4,memory=1.5 (repeatable).
// The server checks their range.
type ratiosFlag map[string]float64

func (r ratiosFlag) String() string {
	parts := make([]string, 0, len(r))
	for k, v := range r {
		parts = append(parts, k+"="+strconv.FormatFloat(v, 'g', -1, 64))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (r ratiosFlag) Set(s string) error {
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if k != "cpu" && k != "memory" && k != "disk" {
			return fmt.Errorf("want cpu=, memory= or disk=, got %q", kv)
		}
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			return fmt.Errorf("want %s=<ratio>, got %q", k, kv)
		}
		r[k] = f
	}
	return nil
}

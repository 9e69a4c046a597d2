package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

func init() {
	register(command{name: "host", summary: "list, register, enroll, provision and drain hosts", run: dispatch("host", []verb{
		{"list", "[--state S] [--rack R] [--mac M] [--label k=v]", "list hosts", hostList},
		{"get", "ID", "show a host (with its BMC's whole error line)", getVerb("host", "hosts")},
		{"register", "[--mac M]... [--ipv4 A] [--bmc ADDR --bmc-user U --bmc-password P] [--enroll [--wait]]", "register a host by MAC and/or BMC", hostRegister},
		{"adopt", "--role kvm|docker --endpoint URL [--daemon-ca-file F --cert-file F --key-file F] [--name N] [--disk GiB] [--wait]", "make an already-running libvirtd or dockerd host ready", hostAdopt},
		{"update", "ID [--rack R --position N] [--label k=v]... [--ipv4 A|--ipv4 '']", "change a host's place, labels or provisioning address", hostUpdate},
		{"set-bmc", "ID --bmc ADDR --bmc-user U --bmc-password P [--bmc-protocol ipmi|redfish]", "link a BMC to a host or change its credentials", hostSetBMC},
		{"enroll", "ID [--wait]", "power the host on into PXE through its BMC", hostAction("enroll", nil)},
		{"provision", "ID --role kvm|docker|bm --image I [--wait]", "install a host", hostProvision},
		{"maintenance", "ID on|off [--reason R] [--no-evacuate] [--wait]", "drain a host into maintenance (its guests migrated to other hosts), or return it", hostMaintenance},
		{"evacuate", "ID [--fenced] [--wait]", "move every guest off a draining, maintenance or failed host (--fenced: a powered-off host's HA guests are recreated elsewhere)", hostEvacuate},
		{"deprovision", "ID [--wait]", "wipe a host back to available", hostAction("deprovision", nil)},
		{"retry", "ID [--wait]", "resume a failed host at the step that failed", hostAction("retry", nil)},
		{"reset", "ID [--wait]", "wipe a failed host back to available", hostAction("reset", nil)},
		{"boot-events", "ID | --mac M [--last N]", "a host's network boot timeline (DHCP, TFTP, HTTP, callback)", hostBootEvents},
		{"match", "ID", "which auto-enroll rule matches the host, and why the ones before it do not", hostMatch},
		{"timeline", "ID [--since 10m]", "a host's boot events and its tasks' steps, in time order with +T", hostTimeline},
		{"delete", "ID", "forget a host", deleteVerb("host", "hosts")},
	})})
}

var hostColumns = []column{{"ID", "id"}, {"NAME", "name"}, {"STATE", "state"}, {"DOING", "doing"}, {"POWER", "power"}, {"ROLE", "role"},
	{"CPUS", "resources.cpu_cores"}, {"MEM_MIB", "resources.memory_mib"}, {"DISK_GIB", "resources.disk_gib"}, {"MACS", "macs"}, {"BMC_ADDR", "bmc.address"},
	{"BMC", "bmc_status"}, {"MAINT", "maintenance"}, {"LABELS", "labels"}}

// doingWidth is the most of a host's task or failure the table shows.
const doingWidth = 48

// doing is the DOING column of the host table: the step its task is in
// (and what it waits for), or why it failed, or "-".
func doing(h map[string]any) string {
	if t, ok := h["task"].(map[string]any); ok && t != nil {
		kind, _ := t["kind"].(string)
		step, _ := t["step"].(string)
		s := strings.TrimPrefix(kind, "host.") + ": " + step
		if w, _ := t["waiting_for"].(string); w != "" {
			s += " (waits for " + w + ")"
		}
		return shorten(s, doingWidth)
	}
	if f, ok := h["failure"].(map[string]any); ok && f != nil {
		reason, _ := f["reason"].(string)
		s := reason
		if step, _ := f["step"].(string); step != "" {
			s += " in " + step
		}
		if d, _ := f["detail"].(string); d != "" {
			s += ": " + d
		}
		return shorten(s, doingWidth)
	}
	return "-"
}

// bmcStatusWidth is the most of a BMC's error the host table shows; host
// get shows all of it.
const bmcStatusWidth = 40

// bmcStatus is the BMC column of the host table: "-" without a BMC, "ok"
// when its last poll answered, "pending" before the first poll after a
// change, else the reason it failed, shortened to bmcStatusWidth.
func bmcStatus(h map[string]any) string {
	b, ok := h["bmc"].(map[string]any)
	if !ok || b == nil {
		return "-"
	}
	if healthy, _ := b["healthy"].(bool); healthy {
		return "ok"
	}
	reason, _ := b["error"].(string)
	if reason == "" {
		return "pending"
	}
	return shorten(reason, bmcStatusWidth)
}

// shorten cuts s to at most n runes, at a word boundary when one is near,
// marking the cut with "...".
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	cut := string(r[:n-3])
	if i := strings.LastIndexByte(cut, ' '); i >= n/2 {
		cut = cut[:i]
	}
	return strings.TrimRight(cut, " ,(:") + "..."
}

func hostList(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("host", "list", &cf)
	state := fs.String("state", "", "only hosts in this state")
	mac := fs.String("mac", "", "only the host with this MAC")
	rack := fs.String("rack", "", "only hosts in this rack (name or ID)")
	limit := fs.Int("limit", 0, "at most this many hosts (0: all)")
	labels := labelsFlag{}
	fs.Var(labels, "label", "only hosts with this label key=value (repeatable)")
	c, _, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	rackID, err := c.resolve(ctx, "racks", *rack)
	if err != nil {
		return err
	}
	items, err := c.listQuery(ctx, "/v1/hosts", *limit,
		"state", *state, "mac", *mac, "rack_id", rackID, "label_selector", labels.String())
	if err != nil {
		return err
	}
	if c.out != "json" {
		for _, it := range items {
			it["bmc_status"] = bmcStatus(it)
			it["doing"] = doing(it)
		}
	}
	return c.printItems(items, hostColumns)
}

func hostRegister(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("host", "register", &cf)
	var macs listFlag
	fs.Var(&macs, "mac", "a MAC address of the host (repeatable)")
	name := fs.String("name", "", "host name (default: from the MAC or BMC address)")
	bmc := fs.String("bmc", "", "BMC address host[:port]")
	proto := fs.String("bmc-protocol", "ipmi", "BMC protocol: ipmi or redfish")
	user := fs.String("bmc-user", "", "BMC user")
	pass := fs.String("bmc-password", "", "BMC password (env RACKCLOUD_BMC_PASSWORD)")
	rack := fs.String("rack", "", "rack (name or ID)")
	pos := fs.Int("position", 0, "rack unit")
	ipv4 := fs.String("ipv4", "", "fixed address on the provisioning network (reserved by the boot service's DHCP)")
	labels := labelsFlag{}
	fs.Var(labels, "label", "label key=value (repeatable)")
	enroll := fs.Bool("enroll", false, "enroll the host through its BMC right away")
	wait := fs.Bool("wait", false, "with --enroll: follow the task until it ends")
	c, _, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	body := map[string]any{}
	if *name != "" {
		body["name"] = *name
	}
	if len(macs) > 0 {
		body["macs"] = macs
	}
	if *bmc != "" {
		body["bmc"] = map[string]any{"address": *bmc, "protocol": *proto, "username": *user, "password": *pass}
	}
	if *rack != "" {
		id, err := c.resolve(ctx, "racks", *rack)
		if err != nil {
			return err
		}
		body["rack_id"] = id
		body["position"] = *pos
	}
	if len(labels) > 0 {
		body["labels"] = map[string]string(labels)
	}
	if *ipv4 != "" {
		body["provisioning_ipv4"] = *ipv4
	}
	r, err := c.call(ctx, http.MethodPost, "/v1/hosts", body)
	if err != nil {
		return err
	}
	if !*enroll {
		return c.printItem(r.body)
	}
	var h struct {
		ID string `json:"id"`
	}
	if err := jsonUnmarshal(r.body, &h); err != nil {
		return err
	}
	r, err = c.call(ctx, http.MethodPost, "/v1/hosts/"+h.ID+"/enroll", nil)
	if err != nil {
		return err
	}
	return c.accepted(ctx, r, *wait)
}

// hostAction posts to /v1/hosts/{id}/<action>; flags adds the action's
// flags and returns its body.
func hostAction(action string, flags func(fs *flag.FlagSet) func(c *client, ctx context.Context, pos []string) (any, error)) func(ctx context.Context, args []string) error {
	return hostActionThen(action, flags, nil)
}

// hostActionThen is hostAction; with --wait, then runs once the task
// ended (whether it succeeded or not) with the task's ID.
func hostActionThen(action string, flags func(fs *flag.FlagSet) func(c *client, ctx context.Context, pos []string) (any, error),
	then func(c *client, ctx context.Context, taskID string) error) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		var cf clientFlags
		fs := newVerbFlags("host", action, &cf)
		wait := fs.Bool("wait", false, "follow the task until it ends")
		var mk func(c *client, ctx context.Context, pos []string) (any, error)
		if flags != nil {
			mk = flags(fs)
		}
		c, pos, err := parseClient(fs, &cf, args)
		if err != nil {
			return err
		}
		if len(pos) < 1 {
			return errUsage("rackcloud host " + action + " ID")
		}
		id, err := c.resolve(ctx, "hosts", pos[0])
		if err != nil {
			return err
		}
		var body any
		if mk != nil {
			if body, err = mk(c, ctx, pos[1:]); err != nil {
				return err
			}
		}
		r, err := c.call(ctx, http.MethodPost, "/v1/hosts/"+id+"/"+action, body)
		if err != nil {
			return err
		}
		err = c.accepted(ctx, r, *wait)
		if then == nil || !*wait {
			return err
		}
		var t struct {
			ID string `json:"id"`
		}
		if jerr := jsonUnmarshal(r.body, &t); jerr != nil {
			return errors.Join(err, jerr)
		}
		return errors.Join(err, then(c, ctx, t.ID))
	}
}

var hostProvision = hostAction("provision", func(fs *flag.FlagSet) func(*client, context.Context, []string) (any, error) {
	role := fs.String("role", "kvm", "role: bm, kvm or docker")
	image := fs.String("image", "", "image (name or ID)")
	return func(c *client, ctx context.Context, _ []string) (any, error) {
		id, err := c.resolve(ctx, "images", *image)
		if err != nil {
			return nil, err
		}
		return map[string]any{"role": *role, "image_id": id}, nil
	}
})

var hostMaintenance = hostAction("maintenance", func(fs *flag.FlagSet) func(*client, context.Context, []string) (any, error) {
	reason := fs.String("reason", "", "why, for the audit log")
	noEvacuate := fs.Bool("no-evacuate", false, "on: leave the guests where they are (by default they are migrated to other hosts) and wait until their owners stop or move them")
	return func(_ *client, _ context.Context, pos []string) (any, error) {
		if len(pos) != 1 || (pos[0] != "on" && pos[0] != "off") {
			return nil, errUsage("rackcloud host maintenance ID on|off")
		}
		return map[string]any{"enabled": pos[0] == "on", "reason": *reason, "no_evacuate": *noEvacuate}, nil
	}
})

// hostEvacuate starts a host.evacuate; with --wait it prints the report
// (how many guests moved, failed and were left, and why), which
// 'rackcloud task get ID' also shows.
var hostEvacuate = hostActionThen("evacuate", func(fs *flag.FlagSet) func(*client, context.Context, []string) (any, error) {
	fenced := fs.Bool("fenced", false, "the host is fenced (its BMC confirmed power off): recreate its HA guests elsewhere from their images, touch nothing on it")
	return func(_ *client, _ context.Context, _ []string) (any, error) {
		return map[string]any{"fenced": *fenced}, nil
	}
}, printEvacuation)

// printEvacuation prints a host.evacuate's report: the output of its
// report step, or of its evacuate step's compensation when a guest's
// sub-task failed.
func printEvacuation(c *client, ctx context.Context, taskID string) error {
	r, err := c.call(ctx, http.MethodGet, "/v1/tasks/"+taskID, nil)
	if err != nil {
		return err
	}
	var t struct {
		Steps []struct {
			Name   string          `json:"name"`
			Phase  string          `json:"phase"`
			Output json.RawMessage `json:"output"`
		} `json:"steps"`
	}
	if err := jsonUnmarshal(r.body, &t); err != nil {
		return err
	}
	var rep struct {
		Host                string `json:"host"`
		Moved, Failed, Left int
		Guests              []struct {
			Name, Action, Reason, Outcome, Error string
		} `json:"guests"`
	}
	found := false
	for _, s := range t.Steps {
		if (s.Name == "report" && s.Phase == "run") || (s.Name == "evacuate" && s.Phase == "undo") {
			found = len(s.Output) > 0 && jsonUnmarshal(s.Output, &rep) == nil
		}
	}
	if !found {
		return nil
	}
	fmt.Fprintf(stdout, "host %s: %d moved, %d failed, %d left\n", rep.Host, rep.Moved, rep.Failed, rep.Left)
	for _, g := range rep.Guests {
		why := g.Action
		switch g.Outcome {
		case "failed":
			why = g.Error
		case "left":
			why = g.Reason
		}
		fmt.Fprintf(stdout, "  %-20s %-7s %s\n", g.Name, g.Outcome, why)
	}
	return nil
}

var bootEventColumns = []column{{"TIME", "time"}, {"+T", "elapsed"}, {"MAC", "mac"}, {"KIND", "kind"}, {"CLIENT", "client"},
	{"IP", "ip"}, {"FILE", "file"}, {"STATE", "state"}, {"DETAIL", "detail"}, {"ERROR", "error"}}

// hostBootEvents prints a host's boot timeline, oldest first, with the
// time since the first event shown, so that a slow or stuck boot stands
// out; --last N shows only the newest events (the latest boot). --mac also shows the events of a MAC no host owns yet.
func hostBootEvents(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("host", "boot-events", &cf)
	mac := fs.String("mac", "", "the events of this MAC (also before any host has it)")
	last := fs.Int("last", 0, "only the last N events, e.g. the latest boot (0: all)")
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	var path string
	q := url.Values{}
	switch {
	case len(pos) == 1 && *mac == "":
		id, err := c.resolve(ctx, "hosts", pos[0])
		if err != nil {
			return err
		}
		path = "/v1/hosts/" + id + "/boot-events"
	case len(pos) == 0 && *mac != "":
		path = "/v1/boot/events"
		q.Set("mac", *mac)
	default:
		return errUsage("rackcloud host boot-events ID | --mac M")
	}
	items, err := c.list(ctx, path, q, 0)
	if err != nil {
		return err
	}
	if *last > 0 && len(items) > *last {
		items = items[len(items)-*last:]
	}
	if c.out == "json" {
		return c.printItems(items, nil)
	}
	var first time.Time
	for _, it := range items {
		s, _ := it["time"].(string)
		at, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			continue
		}
		if first.IsZero() {
			first = at
		}
		it["elapsed"] = "+" + strconv.FormatFloat(at.Sub(first).Seconds(), 'f', 2, 64) + "s"
		it["time"] = at.UTC().Format("15:04:05.000")
		if b, ok := it["bytes"].(float64); ok && b > 0 && it["detail"] == nil {
			it["detail"] = fmt.Sprintf("%.0f bytes", b)
		}
	}
	return c.printItems(items, bootEventColumns)
}

// hostUpdate PATCHes the host with only the flags given.
func hostUpdate(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("host", "update", &cf)
	rack := fs.String("rack", "", "rack (name or ID)")
	pos := fs.Int("position", -1, "rack unit")
	ipv4 := fs.String("ipv4", "-", "fixed provisioning address; '' removes it")
	labels := labelsFlag{}
	fs.Var(labels, "label", "label key=value (repeatable; replaces all labels)")
	c, rest, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errUsage("rackcloud host update ID [flags]")
	}
	id, err := c.resolve(ctx, "hosts", rest[0])
	if err != nil {
		return err
	}
	body := map[string]any{}
	if *rack != "" {
		rid, err := c.resolve(ctx, "racks", *rack)
		if err != nil {
			return err
		}
		body["rack_id"] = rid
	}
	if *pos >= 0 {
		body["position"] = *pos
	}
	if *ipv4 != "-" {
		body["provisioning_ipv4"] = *ipv4
	}
	if len(labels) > 0 {
		body["labels"] = map[string]string(labels)
	}
	if len(body) == 0 {
		return errUsage("rackcloud host update ID: give at least one of --rack, --position, --label, --ipv4")
	}
	r, err := c.call(ctx, http.MethodPatch, "/v1/hosts/"+id, body)
	if err != nil {
		return err
	}
	return c.printItem(r.body)
}

// hostSetBMC links a BMC to a host or replaces its credentials.
func hostSetBMC(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("host", "set-bmc", &cf)
	addr := fs.String("bmc", "", "BMC address host[:port]")
	proto := fs.String("bmc-protocol", "ipmi", "BMC protocol: ipmi or redfish")
	user := fs.String("bmc-user", "", "BMC user")
	pass := fs.String("bmc-password", "", "BMC password (env RACKCLOUD_BMC_PASSWORD)")
	c, rest, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 || *addr == "" || *user == "" || *pass == "" {
		return errUsage("rackcloud host set-bmc ID --bmc ADDR --bmc-user U --bmc-password P")
	}
	id, err := c.resolve(ctx, "hosts", rest[0])
	if err != nil {
		return err
	}
	r, err := c.call(ctx, http.MethodPut, "/v1/hosts/"+id+"/bmc",
		map[string]any{"address": *addr, "protocol": *proto, "username": *user, "password": *pass})
	if err != nil {
		return err
	}
	return c.printItem(r.body)
}

func hostAdopt(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("host", "adopt", &cf)
	name := fs.String("name", "", "host name (default: from the endpoint)")
	role := fs.String("role", "", "kvm (libvirtd) or docker (dockerd)")
	endpoint := fs.String("endpoint", "", "unix:///run/docker.sock, tcp://ADDR:2376, qemu+unix:///system?socket=PATH or qemu+tls://ADDR:16514/system")
	caFile := fs.String("daemon-ca-file", "", "the CA of the daemon's certificate (PEM)")
	certFile := fs.String("cert-file", "", "rackcloud's client certificate (PEM)")
	keyFile := fs.String("key-file", "", "its key (PEM)")
	serverName := fs.String("server-name", "", "the name in the daemon's certificate (default: the endpoint's host)")
	rack := fs.String("rack", "", "rack (name or ID)")
	disk := fs.Int64("disk", 0, "GiB of disk guests may use (dockerd cannot report it: a docker host adopted without it takes no guest with a disk; libvirtd reports its pool's)")
	labels := labelsFlag{}
	fs.Var(labels, "label", "label key=value (repeatable)")
	wait := fs.Bool("wait", false, "follow the adopt task until it ends")
	c, _, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	body := map[string]any{"role": *role, "endpoint": *endpoint}
	if *name != "" {
		body["name"] = *name
	}
	if len(labels) > 0 {
		body["labels"] = map[string]string(labels)
	}
	if *disk > 0 {
		body["resources"] = map[string]any{"cpu_cores": 0, "memory_mib": 0, "disk_gib": *disk}
	}
	if *rack != "" {
		id, err := c.resolve(ctx, "racks", *rack)
		if err != nil {
			return err
		}
		body["rack_id"] = id
	}
	if *caFile != "" || *certFile != "" || *keyFile != "" || *serverName != "" {
		creds := map[string]any{"server_name": *serverName}
		for key, f := range map[string]string{"ca_pem": *caFile, "cert_pem": *certFile, "key_pem": *keyFile} {
			if f == "" {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			creds[key] = string(b)
		}
		body["credentials"] = creds
	}
	r, err := c.call(ctx, http.MethodPost, "/v1/hosts", body)
	if err != nil {
		return err
	}
	var h struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Task *struct {
			ID string `json:"id"`
		} `json:"task"`
	}
	if err := jsonUnmarshal(r.body, &h); err != nil {
		return err
	}
	if c.out == "json" || h.Task == nil {
		if err := c.printItem(r.body); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "host %s %s: task %s host.adopt\n", h.Name, h.ID, h.Task.ID)
	}
	if !*wait || h.Task == nil {
		return nil
	}
	return c.waitTask(ctx, h.Task.ID)
}

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

func init() {
	register(command{name: "alerts", summary: "show what fires now (Alertmanager's alerts, silences of hosts in maintenance)", run: dispatch("alerts", []verb{
		{"list", "[--filter MATCHER]... [--host NAME] [--active]", "list the alerts Alertmanager holds, by name then start time", alertsList},
	})})
}

var alertColumns = []column{{"ALERT", "labels.alertname"}, {"SEVERITY", "labels.severity"}, {"HOST", "labels.host"},
	{"STATE", "state"}, {"SINCE", "starts_at"}, {"SILENCED_BY", "silenced_by"}, {"SUMMARY", "annotations.summary"}}

func alertsList(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("alerts", "list", &cf)
	var filter listFlag
	fs.Var(&filter, "filter", `only alerts matching this Alertmanager matcher, e.g. severity="critical" (repeatable, all must match)`)
	host := fs.String("host", "", "only the alerts of this host (its name)")
	active := fs.Bool("active", false, "leave out suppressed alerts (silenced or inhibited)")
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 0, "rackcloud alerts list [--filter MATCHER]..."); err != nil {
		return err
	}
	q := url.Values{}
	for _, f := range filter {
		q.Add("filter", f)
	}
	if *host != "" {
		b, _ := json.Marshal(*host) // a quoted, escaped matcher value
		q.Add("filter", "host="+string(b))
	}
	path := "/v1/alerts"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	r, err := c.call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	var page struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		return err
	}
	items := page.Items[:0:0]
	for _, it := range page.Items {
		if !*active || it["state"] == "active" {
			items = append(items, it)
		}
	}
	return c.printItems(items, alertColumns)
}

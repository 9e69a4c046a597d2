package main

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

var timelineColumns = []column{{"TIME", "time"}, {"+T", "elapsed"}, {"FROM", "from"}, {"WHAT", "what"}, {"DETAIL", "detail"}}

// timelineRow is one line of a host's timeline.
type timelineRow struct {
	at           time.Time
	from, what   string
	detail, fail string
}

// hostTimeline joins what the boot service saw of a host (DHCP, TFTP,
// HTTP, callback, the agent's inventory) with what its tasks did (each
// step, what it waited for, how it ended), in time order with +T from the
// first. Boot events carry the boot service's clock, task steps the
// control plane's.
func hostTimeline(ctx context.Context, args []string) error {
	var cf clientFlags
	fs := newVerbFlags("host", "timeline", &cf)
	since := fs.Duration("since", 0, "only what happened in this last while, e.g. 10m (0: everything)")
	c, pos, err := parseClient(fs, &cf, args)
	if err != nil {
		return err
	}
	if err := needArgs(pos, 1, "rackcloud host timeline ID"); err != nil {
		return err
	}
	id, err := c.resolve(ctx, "hosts", pos[0])
	if err != nil {
		return err
	}
	var rows []timelineRow
	evs, err := c.list(ctx, "/v1/hosts/"+id+"/boot-events", url.Values{}, 0)
	if err != nil {
		return err
	}
	for _, e := range evs {
		at, err := time.Parse(time.RFC3339Nano, str(e["time"]))
		if err != nil {
			continue
		}
		what := str(e["kind"])
		if cl := str(e["client"]); cl != "" {
			what += " (" + cl + ")"
		}
		detail := strings.TrimSpace(strings.Join([]string{str(e["ip"]), str(e["file"]), str(e["detail"])}, " "))
		rows = append(rows, timelineRow{at: at, from: "boot", what: what, detail: detail, fail: str(e["error"])})
	}
	ts, err := c.list(ctx, "/v1/tasks", url.Values{"target": {"host/" + id}}, 0)
	if err != nil {
		return err
	}
	for _, t := range ts {
		var task struct {
			ID         string     `json:"id"`
			Kind       string     `json:"kind"`
			State      string     `json:"state"`
			Error      string     `json:"error"`
			WaitingFor string     `json:"waiting_for"`
			Since      *time.Time `json:"waiting_since"`
			StepName   string     `json:"step_name"`
			CreatedAt  time.Time  `json:"created_at"`
			FinishedAt *time.Time `json:"finished_at"`
			Steps      []struct {
				Phase      string    `json:"phase"`
				Name       string    `json:"name"`
				State      string    `json:"state"`
				Attempts   int       `json:"attempts"`
				Error      string    `json:"error"`
				StartedAt  time.Time `json:"started_at"`
				FinishedAt time.Time `json:"finished_at"`
			} `json:"steps"`
		}
		if err := c.get(ctx, "/v1/tasks/"+str(t["id"]), &task); err != nil {
			return err
		}
		rows = append(rows, timelineRow{at: task.CreatedAt, from: "task", what: task.Kind + " submitted", detail: task.ID})
		for _, s := range task.Steps {
			what := task.Kind + ": " + s.Name + " " + s.State
			if s.Phase == "undo" {
				what = task.Kind + ": undo " + s.Name + " " + s.State
			}
			d := ""
			if s.Attempts > 1 {
				d = strconv.Itoa(s.Attempts) + " attempts, took " + s.FinishedAt.Sub(s.StartedAt).Round(100*time.Millisecond).String()
			} else {
				d = "took " + s.FinishedAt.Sub(s.StartedAt).Round(100*time.Millisecond).String()
			}
			rows = append(rows, timelineRow{at: s.FinishedAt, from: "task", what: what, detail: d, fail: s.Error})
		}
		if task.WaitingFor != "" && task.Since != nil {
			rows = append(rows, timelineRow{at: *task.Since, from: "task", what: task.Kind + ": " + task.StepName + " waits",
				detail: "for " + task.WaitingFor})
		}
		if task.FinishedAt != nil {
			rows = append(rows, timelineRow{at: *task.FinishedAt, from: "task", what: task.Kind + " " + task.State, fail: task.Error})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].at.Before(rows[j].at) })
	if *since > 0 {
		cut := time.Now().Add(-*since)
		i := sort.Search(len(rows), func(i int) bool { return !rows[i].at.Before(cut) })
		rows = rows[i:]
	}
	items := make([]map[string]any, 0, len(rows))
	for _, r := range rows {
		detail := r.detail
		if r.fail != "" {
			detail = strings.TrimSpace(detail + " error: " + r.fail)
		}
		items = append(items, map[string]any{"time": r.at.UTC().Format(time.RFC3339Nano), "from": r.from, "what": r.what, "detail": detail})
	}
	if c.out == "json" {
		return c.printItems(items, nil)
	}
	if len(rows) > 0 {
		first := rows[0].at
		for i, r := range rows {
			items[i]["time"] = r.at.UTC().Format("15:04:05.000")
			items[i]["elapsed"] = "+" + strconv.FormatFloat(r.at.Sub(first).Seconds(), 'f', 2, 64) + "s"
		}
	}
	return c.printItems(items, timelineColumns)
}

func str(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

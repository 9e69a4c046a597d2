package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
)

// This file reads the task engine's table (store/migrations/0100_tasks.sql,
// owned by package tasks) for keyset-paginated, project-scoped lists; all
// writes go through package tasks.

// TaskFilter narrows ListTasks; empty fields do not filter.
type TaskFilter struct {
	// Before is a keyset position: tasks older than it (newest first).
	Before TaskPosition
	Limit  int
	State  string
	Kind   string
	Target string
	// Projects, when not nil, keeps only tasks whose root task was
	// submitted for one of these projects.
	Projects []string
}

// TaskPosition is a keyset position in the task list.
type TaskPosition struct {
	CreatedAt time.Time
	ID        string
}

// TaskCursor encodes the position after t.
func TaskCursor(t rackcloud.Task) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.CreatedAt.UnixMicro(), 10) + "," + t.ID))
}

// ParseTaskCursor decodes TaskCursor; "" is the start.
func ParseTaskCursor(s string) (TaskPosition, error) {
	if s == "" {
		return TaskPosition{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return TaskPosition{}, fmt.Errorf("%w: malformed cursor", rackcloud.ErrInvalid)
	}
	us, id, ok := strings.Cut(string(b), ",")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || !ValidID(id) {
		return TaskPosition{}, fmt.Errorf("%w: malformed cursor", rackcloud.ErrInvalid)
	}
	return TaskPosition{CreatedAt: time.UnixMicro(n), ID: id}, nil
}

// ListTasks lists tasks, newest first.
func ListTasks(ctx context.Context, q Querier, f TaskFilter) ([]rackcloud.Task, error) {
	var w where
	if f.Before.ID != "" {
		w.add("(t.created_at, t.id) < ($?, $?::uuid)", f.Before.CreatedAt, f.Before.ID)
	}
	for _, c := range []struct{ col, v string }{{"t.state", f.State}, {"t.kind", f.Kind}, {"t.target", f.Target}} {
		if c.v != "" {
			w.add(c.col+" = $?", c.v)
		}
	}
	if f.Projects != nil {
		w.add("EXISTS (SELECT 1 FROM task_owners o WHERE o.task_id = t.root_id AND o.project_id::text = ANY($?))", f.Projects)
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxPage+1 {
		limit = MaxPage
	}
	w.args = append(w.args, limit)
	rows, err := q.Query(ctx, `SELECT t.id::text, t.kind, COALESCE(t.parent_id::text, ''), COALESCE(t.target, ''), t.state,
		t.step, t.step_name, t.error, t.created_at, t.updated_at FROM tasks t`+w.sql()+
		` ORDER BY t.created_at DESC, t.id DESC LIMIT $`+strconv.Itoa(len(w.args)), w.args...)
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	out := []rackcloud.Task{}
	for rows.Next() {
		var t rackcloud.Task
		if err := rows.Scan(&t.ID, &t.Kind, &t.ParentID, &t.Target, &t.State, &t.Step, &t.StepName, &t.Error,
			&t.CreatedAt, &t.UpdatedAt); err != nil {
			return nil, MapError(err)
		}
		out = append(out, t)
	}
	return out, MapError(rows.Err())
}

package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/rackcloud/rackcloud"
)

// AuditRecord is an audit event with the fields that scope it.
type AuditRecord struct {
	rackcloud.AuditEvent
	// TokenID is the token that acted ("" for the system).
	TokenID string
	// ProjectID is the project the target belongs to, if any.
	ProjectID string
	// Detail explains a refusal or a failure.
	Detail string
}

// Outcomes of audit events.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
	OutcomeFailure = "failure"
)

// WriteAudit appends an audit event; call it with the change's
// transaction so that the event exists exactly when the change does.
func WriteAudit(ctx context.Context, q Querier, e AuditRecord) error {
	_, err := q.Exec(ctx, `INSERT INTO audit_events (actor, token_id, action, target, project_id, outcome, request_id, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		e.Actor, nullable(e.TokenID), e.Action, e.Target, nullable(e.ProjectID), e.Outcome, e.RequestID, e.Detail)
	if err != nil {
		return fmt.Errorf("audit %s %s: %w", e.Action, e.Target, MapError(err))
	}
	return nil
}

// AuditFilter narrows ListAudit; empty fields do not filter.
type AuditFilter struct {
	// Before is a keyset cursor: events with smaller IDs (newest first).
	Before   int64
	Limit    int
	Target   string
	Actor    string
	Action   string
	Outcome  string
	Projects []string // nil: all
}

// ListAudit lists audit events, newest first.
func ListAudit(ctx context.Context, q Querier, f AuditFilter) ([]AuditRecord, error) {
	var w where
	if f.Before > 0 {
		w.add("id < $?", f.Before)
	}
	for _, c := range []struct{ col, v string }{{"target", f.Target}, {"actor", f.Actor}, {"action", f.Action}, {"outcome", f.Outcome}} {
		if c.v != "" {
			w.add(c.col+" = $?", c.v)
		}
	}
	if f.Projects != nil {
		w.add("project_id::text = ANY($?)", f.Projects)
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxPage+1 {
		limit = MaxPage
	}
	w.args = append(w.args, limit)
	rows, err := q.Query(ctx, `SELECT id, at, actor, COALESCE(token_id::text, ''), action, target,
		COALESCE(project_id::text, ''), outcome, request_id, detail FROM audit_events`+w.sql()+
		` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(w.args)), w.args...)
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	out := []AuditRecord{}
	for rows.Next() {
		var e AuditRecord
		var id int64
		if err := rows.Scan(&id, &e.At, &e.Actor, &e.TokenID, &e.Action, &e.Target, &e.ProjectID, &e.Outcome,
			&e.RequestID, &e.Detail); err != nil {
			return nil, MapError(err)
		}
		e.ID = strconv.FormatInt(id, 10)
		out = append(out, e)
	}
	return out, MapError(rows.Err())
}

// SetTaskOwner records the project (and actor) a task was submitted for,
// in the submitting transaction.
func SetTaskOwner(ctx context.Context, q Querier, taskID, projectID, actor string) error {
	_, err := q.Exec(ctx, `INSERT INTO task_owners (task_id, project_id, actor) VALUES ($1, $2, $3)`,
		taskID, nullable(projectID), actor)
	return MapError(err)
}

// TaskOwner returns the project a task belongs to ("" for none, also for
// tasks not submitted through the API).
func TaskOwner(ctx context.Context, q Querier, taskID string) (string, error) {
	if !ValidID(taskID) {
		return "", rackcloud.ErrNotFound
	}
	var p *string
	err := q.QueryRow(ctx, `SELECT project_id::text FROM task_owners WHERE task_id = $1`, taskID).Scan(&p)
	if err != nil {
		if err := MapError(err); err != nil && isNotFound(err) {
			return "", nil
		}
		return "", MapError(err)
	}
	if p == nil {
		return "", nil
	}
	return *p, nil
}

// TasksOfProjects returns the IDs of the tasks owned by these projects
// among ids.
func TasksOfProjects(ctx context.Context, q Querier, ids, projects []string) (map[string]bool, error) {
	rows, err := q.Query(ctx, `SELECT task_id::text FROM task_owners WHERE task_id::text = ANY($1) AND project_id::text = ANY($2)`,
		ids, projects)
	if err != nil {
		return nil, MapError(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, MapError(err)
		}
		out[id] = true
	}
	return out, MapError(rows.Err())
}

package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

// AlertRuleRecord is an alert rule with its description.
type AlertRuleRecord struct {
	rackcloud.AlertRule
	Description string
}

const alertRuleCols = `id::text, name, description, expr, op, threshold, for_seconds, severity, scope,
	COALESCE(scope_id::text, ''), labels, version, created_at, updated_at`

func scanAlertRule(row pgx.Row) (AlertRuleRecord, error) {
	var r AlertRuleRecord
	var forSeconds int64
	err := row.Scan(&r.ID, &r.Name, &r.Description, &r.Expr, &r.Op, &r.Threshold, &forSeconds, &r.Severity, &r.Scope,
		&r.ScopeID, &r.Labels, &r.Version, &r.CreatedAt, &r.UpdatedAt)
	r.For = time.Duration(forSeconds) * time.Second
	return r, MapError(err)
}

// CreateAlertRule inserts r.
func CreateAlertRule(ctx context.Context, q Querier, r AlertRuleRecord) (AlertRuleRecord, error) {
	return scanAlertRule(q.QueryRow(ctx, `INSERT INTO alert_rules (name, description, expr, op, threshold, for_seconds,
		severity, scope, scope_id, labels) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING `+alertRuleCols,
		r.Name, r.Description, r.Expr, r.Op, r.Threshold, int64(r.For/time.Second), r.Severity, string(r.Scope),
		nullable(r.ScopeID), labelsOrEmpty(r.Labels)))
}

// GetAlertRule returns the rule with id, or rackcloud.ErrNotFound.
func GetAlertRule(ctx context.Context, q Querier, id string) (AlertRuleRecord, error) {
	if !ValidID(id) {
		return AlertRuleRecord{}, rackcloud.ErrNotFound
	}
	return scanAlertRule(q.QueryRow(ctx, `SELECT `+alertRuleCols+` FROM alert_rules WHERE id = $1`, id))
}

// ListAlertRules lists rules; Filter.State is a scope and Filter.Projects,
// when set, keeps only rules scoped to those projects.
func ListAlertRules(ctx context.Context, q Querier, f Filter) ([]AlertRuleRecord, error) {
	s := listSpec{table: "alert_rules", cols: alertRuleCols, stateCol: "scope"}
	if f.Projects != nil {
		projects := f.Projects
		s.extraFilters = func(w *where) {
			w.add("scope = 'project' AND scope_id::text = ANY($?)", projects)
		}
	}
	return listRows(ctx, q, s, f, scanAlertRule)
}

// UpdateAlertRule writes r's mutable fields if its version is still
// r.Version.
func UpdateAlertRule(ctx context.Context, q Querier, r AlertRuleRecord) (AlertRuleRecord, error) {
	out, err := scanAlertRule(q.QueryRow(ctx, `UPDATE alert_rules SET description = $3, expr = $4, op = $5, threshold = $6,
		for_seconds = $7, severity = $8, labels = $9, version = version + 1, updated_at = now()
		WHERE id = $1::uuid AND version = $2 RETURNING `+alertRuleCols,
		uuidArg(r.ID), r.Version, r.Description, r.Expr, r.Op, r.Threshold, int64(r.For/time.Second), r.Severity, labelsOrEmpty(r.Labels)))
	if err != nil {
		return out, versionError(ctx, q, "alert_rules", r.ID, err)
	}
	return out, nil
}

// DeleteAlertRule deletes a rule.
func DeleteAlertRule(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "alert_rules", id, version)
}

// AllAlertRules returns every alert rule, in name order (the renderer's
// read; it pages through ListAlertRules).
func AllAlertRules(ctx context.Context, q Querier) ([]rackcloud.AlertRule, error) {
	var out []rackcloud.AlertRule
	f := Filter{Limit: MaxPage}
	for {
		page, err := ListAlertRules(ctx, q, f)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			out = append(out, r.AlertRule)
		}
		if len(page) < MaxPage {
			return out, nil
		}
		f.After = Cursor{Name: page[len(page)-1].Name, ID: page[len(page)-1].ID}
	}
}

package store

import (
	"context"
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

// Auto-enroll rules (migration 0207). The references of a rule (the image
// it installs, the racks it matches and sets) are columns with foreign
// keys; the rest of its match is jsonb.

const enrollRuleCols = `id::text, name, priority, match, COALESCE(match_rack_id::text, ''), role,
	COALESCE(image_id::text, ''), set_labels, COALESCE(set_rack_id::text, ''), provision, labels, version, created_at, updated_at`

func scanEnrollRule(row pgx.Row) (rackcloud.EnrollRule, error) {
	var r rackcloud.EnrollRule
	var rackID string
	err := row.Scan(&r.ID, &r.Name, &r.Priority, &r.Match, &rackID, &r.Set.Role, &r.Set.ImageID, &r.Set.Labels,
		&r.Set.RackID, &r.Provision, &r.Labels, &r.Version, &r.CreatedAt, &r.UpdatedAt)
	r.Match.RackID = rackID
	if len(r.Set.Labels) == 0 {
		r.Set.Labels = nil
	}
	return r, MapError(err)
}

// enrollRuleArgs are the columns a create or update writes, from $3 on.
func enrollRuleArgs(r rackcloud.EnrollRule) []any {
	m := r.Match
	m.RackID = "" // a column of its own
	return []any{r.Priority, m, nullable(r.Match.RackID), string(r.Set.Role), nullable(r.Set.ImageID),
		labelsOrEmpty(r.Set.Labels), nullable(r.Set.RackID), r.Provision, labelsOrEmpty(r.Labels)}
}

// CreateEnrollRule inserts r; a name or a priority another rule has is
// rackcloud.ErrConflict.
func CreateEnrollRule(ctx context.Context, q Querier, r rackcloud.EnrollRule) (rackcloud.EnrollRule, error) {
	return scanEnrollRule(q.QueryRow(ctx, `INSERT INTO enroll_rules (name, priority, match, match_rack_id, role, image_id,
		set_labels, set_rack_id, provision, labels) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING `+enrollRuleCols,
		append([]any{r.Name}, enrollRuleArgs(r)...)...))
}

// GetEnrollRule returns the rule with id, or rackcloud.ErrNotFound.
func GetEnrollRule(ctx context.Context, q Querier, id string) (rackcloud.EnrollRule, error) {
	if !ValidID(id) {
		return rackcloud.EnrollRule{}, rackcloud.ErrNotFound
	}
	return scanEnrollRule(q.QueryRow(ctx, `SELECT `+enrollRuleCols+` FROM enroll_rules WHERE id = $1`, id))
}

// ListEnrollRules lists rules in priority order (the order they are
// tried in), keyset-paginated by EnrollRuleCursor.
func ListEnrollRules(ctx context.Context, q Querier, f Filter) ([]rackcloud.EnrollRule, error) {
	return listRows(ctx, q, listSpec{table: "enroll_rules", cols: enrollRuleCols, keyCol: "priority", keyCast: "int"}, f, scanEnrollRule)
}

// EnrollRuleCursor is the position of r in ListEnrollRules.
func EnrollRuleCursor(r rackcloud.EnrollRule) Cursor {
	return Cursor{Name: strconv.Itoa(r.Priority), ID: r.ID}
}

// UpdateEnrollRule writes r's mutable fields (all but the name) if its
// version is still r.Version.
func UpdateEnrollRule(ctx context.Context, q Querier, r rackcloud.EnrollRule) (rackcloud.EnrollRule, error) {
	out, err := scanEnrollRule(q.QueryRow(ctx, `UPDATE enroll_rules SET priority = $3, match = $4, match_rack_id = $5,
		role = $6, image_id = $7, set_labels = $8, set_rack_id = $9, provision = $10, labels = $11,
		version = version + 1, updated_at = now()
		WHERE id = $1::uuid AND version = $2 RETURNING `+enrollRuleCols,
		append([]any{uuidArg(r.ID), r.Version}, enrollRuleArgs(r)...)...))
	if err != nil {
		return out, versionError(ctx, q, "enroll_rules", r.ID, err)
	}
	return out, nil
}

// DeleteEnrollRule deletes a rule if its version is still version (0
// means any); hosts it enrolled forget it.
func DeleteEnrollRule(ctx context.Context, q Querier, id string, version int64) error {
	return deleteRow(ctx, q, "enroll_rules", id, version)
}

// EnrollRuleMatch evaluates every rule against the host with hostID as it
// is now: the rule that matches first (nil if none) and the verdicts of
// the rules considered (rackcloud.MatchEnrollRules).
func EnrollRuleMatch(ctx context.Context, q Querier, hostID string) (*rackcloud.EnrollRule, []rackcloud.RuleVerdict, error) {
	h, err := GetHost(ctx, q, hostID)
	if err != nil {
		return nil, nil, err
	}
	rows, err := q.Query(ctx, `SELECT `+enrollRuleCols+` FROM enroll_rules ORDER BY priority, id`)
	if err != nil {
		return nil, nil, MapError(err)
	}
	rules, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (rackcloud.EnrollRule, error) { return scanEnrollRule(row) })
	if err != nil {
		return nil, nil, MapError(err)
	}
	matched, why := rackcloud.MatchEnrollRules(rules, h)
	return matched, why, nil
}

// RecordEnrollMatch records on the host the rule that enrolled it (""
// for none) and the verdicts that chose it. It is an observed fact, not
// an operator's edit: the host's version does not move.
func RecordEnrollMatch(ctx context.Context, q Querier, hostID, ruleID string, verdicts []rackcloud.RuleVerdict) error {
	if verdicts == nil {
		verdicts = []rackcloud.RuleVerdict{}
	}
	tag, err := q.Exec(ctx, `UPDATE hosts SET enrolled_by_rule = $2::uuid, enroll_verdicts = $3 WHERE id = $1::uuid`,
		uuidArg(hostID), nullable(ruleID), verdicts)
	if err != nil {
		return MapError(err)
	}
	if tag.RowsAffected() == 0 {
		return rackcloud.ErrNotFound
	}
	return nil
}

// HostEnrollMatch returns what RecordEnrollMatch recorded on the host:
// the rule ("" for none, or when the rule was deleted since) and the
// verdicts (nil when nothing was recorded).
func HostEnrollMatch(ctx context.Context, q Querier, hostID string) (ruleID string, verdicts []rackcloud.RuleVerdict, err error) {
	if !ValidID(hostID) {
		return "", nil, rackcloud.ErrNotFound
	}
	err = q.QueryRow(ctx, `SELECT COALESCE(enrolled_by_rule::text, ''), enroll_verdicts FROM hosts WHERE id = $1`, hostID).
		Scan(&ruleID, &verdicts)
	return ruleID, verdicts, MapError(err)
}

// HostsToEnroll lists available hosts (at most limit, by name) that no
// task has and whose enroll rules are to be applied: never evaluated, or
// matched by no rule while a rule changed since.
func HostsToEnroll(ctx context.Context, q Querier, limit int) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT h.id::text FROM hosts h WHERE h.state = 'available'
		AND (h.enroll_verdicts IS NULL OR (h.enrolled_by_rule IS NULL
			AND h.enroll_evaluated_at < (SELECT max(updated_at) FROM enroll_rules)))
		AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.target = 'host/' || h.id::text AND t.state IN ('pending', 'running', 'canceling'))
		ORDER BY h.name LIMIT $1`, limit)
	if err != nil {
		return nil, MapError(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, MapError(err)
}

// LockHostToEnroll locks an available host's row for the rest of the
// transaction, telling whether it still is one to enroll (false: another
// replica has it, or it moved on).
func LockHostToEnroll(ctx context.Context, tx pgx.Tx, hostID string) (bool, error) {
	var id string
	err := tx.QueryRow(ctx, `SELECT id::text FROM hosts WHERE id = $1 AND state = 'available' FOR UPDATE SKIP LOCKED`, hostID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, MapError(err)
	}
	_, err = tx.Exec(ctx, `UPDATE hosts SET enroll_evaluated_at = now() WHERE id = $1`, hostID)
	return true, MapError(err)
}

package api

import (
	"context"
	"errors"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// change describes one change for the audit log. Handlers fill Target
// and Project as soon as they know them (a created resource's ID).
type change struct {
	p       *principal
	action  string
	target  string
	project string
	detail  string
	// audited is set once the change's handler wrote its success event
	// itself (see auditNow).
	audited bool
}

// auditNow writes the change's success event in tx before the change's
// last writes: a change that locks a hot row (a project's quota) last
// then holds the lock for less time. run does not write it again.
func (a *API) auditNow(ctx context.Context, tx pgx.Tx, c *change) error {
	c.audited = true
	return store.WriteAudit(ctx, tx, c.record(ctx, store.OutcomeSuccess, c.detail))
}

func (a *API) newChange(ctx context.Context, action, target string) *change {
	return &change{p: principalFrom(ctx), action: action, target: target}
}

// run runs fn in one transaction and writes the change's audit event in
// it, so the event exists exactly when the change does. A change that
// fails writes a failure (or denied) event on its own, and its error is
// returned as a problem.
func (a *API) run(ctx context.Context, c *change, fn func(tx pgx.Tx) error) error {
	err := store.InTx(ctx, a.deps.Pool, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if c.audited {
			return nil
		}
		return store.WriteAudit(ctx, tx, c.record(ctx, store.OutcomeSuccess, c.detail))
	})
	if err == nil {
		return nil
	}
	perr := a.problem(err)
	outcome := store.OutcomeFailure
	var em *huma.ErrorModel
	if errors.As(perr, &em) && em.Type == ProblemForbidden {
		outcome = store.OutcomeDenied
	}
	detail := perr.Error()
	a.auditAsync(ctx, c.p, c.action, c.target, c.project, outcome, detail)
	return perr
}

// auditAsync records a refused or failed attempt outside any transaction.
// It does not block the answer on a slow database for long.
func (a *API) auditAsync(ctx context.Context, p *principal, action, target, project, outcome, detail string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	c := &change{p: p, action: action, target: target, project: project}
	if err := store.WriteAudit(ctx, a.deps.Pool, c.record(ctx, outcome, detail)); err != nil {
		a.log.Error("api: audit", "action", action, "err", err)
	}
}

func (c *change) record(ctx context.Context, outcome, detail string) store.AuditRecord {
	r := store.AuditRecord{
		AuditEvent: rackcloud.AuditEvent{Action: c.action, Target: c.target, Outcome: outcome, RequestID: requestIDFrom(ctx)},
		Detail:     detail,
	}
	if c.p != nil {
		r.Actor, r.TokenID = c.p.actor(), c.p.TokenID
	}
	if store.ValidID(c.project) {
		r.ProjectID = c.project
	}
	return r
}

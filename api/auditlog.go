package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"github.com/rackcloud/rackcloud/store"
)

type auditListParams struct {
	Limit   int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size."`
	Cursor  string `query:"cursor" maxLength:"32" pattern:"^[0-9]*$" doc:"Opaque cursor from the previous page's next_cursor or Link header."`
	Target  string `query:"target" maxLength:"500" doc:"Only events about this target." example:"guest/5f0c6f3e-8d0a-4f4e-9b8e-0a4b5c6d7e8f"`
	Actor   string `query:"actor" maxLength:"200" doc:"Only events by this actor." example:"user:alice"`
	Action  string `query:"action" maxLength:"100" doc:"Only events of this operation." example:"createGuest"`
	Outcome string `query:"outcome" enum:"success,denied,failure" doc:"Only events with this outcome."`
}

func registerAudit(a *API) {
	register(a, huma.Operation{
		OperationID: "listAuditEvents", Method: http.MethodGet, Path: "/v1/audit-events", Summary: "List audit events",
		Description: "Lists audit events, newest first, keyset-paginated. Every change writes one in its own transaction; refused and failed attempts are recorded too. Members and viewers see the events of their projects.",
		Tags:        []string{"Audit"},
	}, anyRole, func(ctx context.Context, in *auditListParams) (*listOutput[AuditEvent], error) {
		var before int64
		if in.Cursor != "" {
			n, err := strconv.ParseInt(in.Cursor, 10, 64)
			if err != nil || n <= 0 {
				return nil, huma.Error422UnprocessableEntity("malformed cursor")
			}
			before = n
		}
		rows, err := store.ListAudit(ctx, a.deps.Pool, store.AuditFilter{Before: before, Limit: in.Limit + 1, Target: in.Target,
			Actor: in.Actor, Action: in.Action, Outcome: in.Outcome, Projects: principalFrom(ctx).projectFilter()})
		if err != nil {
			return nil, a.problem(err)
		}
		out := &listOutput[AuditEvent]{}
		if len(rows) > in.Limit {
			rows = rows[:in.Limit]
			out.Body.NextCursor = rows[len(rows)-1].ID
			q := url.Values{"limit": {strconv.Itoa(in.Limit)}, "cursor": {out.Body.NextCursor}}
			for k, v := range map[string]string{"target": in.Target, "actor": in.Actor, "action": in.Action, "outcome": in.Outcome} {
				if v != "" {
					q.Set(k, v)
				}
			}
			out.Link = "</v1/audit-events?" + q.Encode() + `>; rel="next"`
		}
		out.Body.Items = make([]AuditEvent, 0, len(rows))
		for _, e := range rows {
			out.Body.Items = append(out.Body.Items, auditOut(e))
		}
		return out, nil
	})
}

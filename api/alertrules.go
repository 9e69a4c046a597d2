package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/store"
)

// AlertRuleBody creates an alert rule.
type AlertRuleBody struct {
	Name        string            `json:"name" pattern:"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" maxLength:"63" doc:"Unique name." example:"host-too-hot"`
	Description string            `json:"description,omitempty" maxLength:"1024" doc:"What the alert means and what to do."`
	Expr        string            `json:"expr" minLength:"1" maxLength:"4096" doc:"PromQL expression compared with the threshold." example:"rackcloud_host_temperature_celsius"`
	Op          string            `json:"op" enum:">,>=,<,<=,==,!=" doc:"Comparison of expr with threshold."`
	Threshold   float64           `json:"threshold" doc:"The threshold." example:"80"`
	ForSeconds  int64             `json:"for_seconds,omitempty" minimum:"0" maximum:"86400" doc:"How long the condition must hold." example:"120"`
	Severity    string            `json:"severity" enum:"info,warning,critical" doc:"How urgent the alert is."`
	Scope       string            `json:"scope" enum:"fleet,zone,rack,host,project" doc:"What the rule watches."`
	ScopeID     string            `json:"scope_id,omitempty" format:"uuid" doc:"The zone, rack, host or project watched; absent for fleet."`
	Labels      map[string]string `json:"labels,omitempty" doc:"Labels added to the alert (routing in Alertmanager)." example:"{\"team\":\"infra\"}"`
}

// AlertRuleUpdateBody changes an alert rule.
type AlertRuleUpdateBody struct {
	Description *string           `json:"description,omitempty" maxLength:"1024" doc:"What the alert means."`
	Expr        *string           `json:"expr,omitempty" minLength:"1" maxLength:"4096" doc:"PromQL expression."`
	Op          *string           `json:"op,omitempty" enum:">,>=,<,<=,==,!=" doc:"Comparison."`
	Threshold   *float64          `json:"threshold,omitempty" doc:"The threshold."`
	ForSeconds  *int64            `json:"for_seconds,omitempty" minimum:"0" maximum:"86400" doc:"How long the condition must hold."`
	Severity    *string           `json:"severity,omitempty" enum:"info,warning,critical" doc:"How urgent."`
	Labels      map[string]string `json:"labels,omitempty" doc:"Replaces all labels when present."`
}

type alertRuleListParams struct {
	ListParams
	Scope string `query:"scope" enum:"fleet,zone,rack,host,project" doc:"Only rules of this scope."`
}

func registerAlertRules(a *API) {
	c := &crud[store.AlertRuleRecord, AlertRule]{a: a, tag: "Alert rules", path: "/v1/alert-rules", kind: "alert-rule",
		opName: "AlertRule", plural: "AlertRules", read: anyRole, write: staffOnly, get: store.GetAlertRule,
		list: store.ListAlertRules, del: store.DeleteAlertRule,
		meta: func(r store.AlertRuleRecord) rackcloud.Meta { return r.Meta }, out: alertRuleOut,
		// Members and viewers see only rules scoped to their projects.
		project: func(r store.AlertRuleRecord) string {
			if r.Scope == rackcloud.AlertProject {
				return r.ScopeID
			}
			return "fleet"
		}}
	registerList(c, "Lists alert rules in name order. Members and viewers see the rules scoped to their projects.",
		func(in *alertRuleListParams) (ListParams, url.Values, func(*store.Filter)) {
			return in.ListParams, url.Values{"scope": {in.Scope}}, func(f *store.Filter) { f.State = in.Scope }
		})
	c.registerGet()
	c.registerDelete()

	register(a, huma.Operation{
		OperationID: "createAlertRule", Method: http.MethodPost, Path: "/v1/alert-rules", Summary: "Create an alert rule",
		Tags: []string{c.tag}, DefaultStatus: http.StatusCreated, Errors: []int{http.StatusConflict},
	}, staffOnly, func(ctx context.Context, in *struct{ Body AlertRuleBody }) (*itemOutput[AlertRule], error) {
		b := in.Body
		if err := checkLabels("body.labels", b.Labels); err != nil {
			return nil, err
		}
		if (b.Scope == string(rackcloud.AlertFleet)) != (b.ScopeID == "") {
			return nil, huma.Error422UnprocessableEntity("scope_id must be given for every scope but fleet",
				&huma.ErrorDetail{Location: "body.scope_id", Message: "give scope_id with scope " + b.Scope + " (and none with fleet)", Value: b.ScopeID})
		}
		r := store.AlertRuleRecord{AlertRule: rackcloud.AlertRule{Meta: rackcloud.Meta{Name: b.Name, Labels: b.Labels},
			Expr: b.Expr, Op: b.Op, Threshold: b.Threshold, For: time.Duration(b.ForSeconds) * time.Second,
			Severity: b.Severity, Scope: rackcloud.AlertScope(b.Scope), ScopeID: b.ScopeID}, Description: b.Description}
		if err := checkAlertRule(r.AlertRule); err != nil {
			return nil, err
		}
		return c.created(ctx, a.newChange(ctx, "createAlertRule", "alert-rule/"+b.Name), func(tx pgx.Tx) (store.AlertRuleRecord, error) {
			if err := checkScopeTarget(ctx, tx, r.Scope, r.ScopeID); err != nil {
				return store.AlertRuleRecord{}, err
			}
			return store.CreateAlertRule(ctx, tx, r)
		})
	})

	register(a, huma.Operation{
		OperationID: "updateAlertRule", Method: http.MethodPatch, Path: "/v1/alert-rules/{id}", Summary: "Update an alert rule",
		Tags: []string{c.tag}, Errors: []int{http.StatusNotFound, http.StatusPreconditionFailed},
	}, staffOnly, func(ctx context.Context, in *struct {
		IDParam
		IfMatch
		Body AlertRuleUpdateBody
	}) (*itemOutput[AlertRule], error) {
		b := in.Body
		if err := checkLabels("body.labels", b.Labels); err != nil {
			return nil, err
		}
		return c.patch(ctx, "updateAlertRule", in.ID, in.IfMatch, func(_ pgx.Tx, r *store.AlertRuleRecord) error {
			if b.Description != nil {
				r.Description = *b.Description
			}
			if b.Expr != nil {
				r.Expr = *b.Expr
			}
			if b.Op != nil {
				r.Op = *b.Op
			}
			if b.Threshold != nil {
				r.Threshold = *b.Threshold
			}
			if b.ForSeconds != nil {
				r.For = time.Duration(*b.ForSeconds) * time.Second
			}
			if b.Severity != nil {
				r.Severity = *b.Severity
			}
			if b.Labels != nil {
				r.Labels = b.Labels
			}
			return checkAlertRule(r.AlertRule)
		}, store.UpdateAlertRule)
	})
}

// checkScopeTarget checks that an alert rule's scope_id names an existing
// resource of its scope.
func checkScopeTarget(ctx context.Context, q store.Querier, scope rackcloud.AlertScope, id string) error {
	var err error
	switch scope {
	case rackcloud.AlertZone:
		_, err = store.GetZone(ctx, q, id)
	case rackcloud.AlertRack:
		_, err = store.GetRack(ctx, q, id)
	case rackcloud.AlertHost:
		_, err = store.GetHost(ctx, q, id)
	case rackcloud.AlertProject:
		_, err = store.GetProject(ctx, q, id)
	}
	return notFoundField(err, "body.scope_id", id)
}

// checkAlertRule answers 422 when Prometheus would refuse r, saying where:
// the field (body.expr) and the PromQL parser's position in it.
func checkAlertRule(r rackcloud.AlertRule) error {
	err := alerts.Validate(r)
	var ie *alerts.InvalidError
	if !errors.As(err, &ie) {
		return err
	}
	msg := ie.Msg
	if ie.Pos != "" {
		msg = ie.Pos + ": " + msg
	}
	return huma.Error422UnprocessableEntity("Prometheus would refuse this rule",
		&huma.ErrorDetail{Location: ie.Field, Message: msg, Value: r.Expr})
}

package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/store"
)

// ActiveAlerts lists the alerts Alertmanager holds (*alerts.AM).
type ActiveAlerts interface {
	List(ctx context.Context, filter []string) ([]alerts.Alert, error)
}

var _ ActiveAlerts = (*alerts.AM)(nil)

// ActiveAlert is an alert as Alertmanager holds it.
type ActiveAlert struct {
	Fingerprint string            `json:"fingerprint" doc:"Alertmanager's ID of the alert's label set."`
	Labels      map[string]string `json:"labels" doc:"The alert's labels: alertname, severity, host, rackcloud_rule..." example:"{\"alertname\":\"HostDown\",\"host\":\"rack1-node1\"}"`
	Annotations map[string]string `json:"annotations,omitempty" doc:"Summary and description."`
	State       string            `json:"state" enum:"active,suppressed,unprocessed" doc:"active: notified; suppressed: silenced (a host in maintenance) or inhibited."`
	StartsAt    time.Time         `json:"starts_at" doc:"When the alert began firing."`
	EndsAt      time.Time         `json:"ends_at" doc:"When Alertmanager resolves it unless Prometheus sends it again."`
	SilencedBy  []string          `json:"silenced_by" doc:"IDs of the silences that mute it."`
	InhibitedBy []string          `json:"inhibited_by" doc:"Fingerprints of the alerts that inhibit it."`
	Receivers   []string          `json:"receivers" doc:"Where Alertmanager routes it."`
}

type alertsInput struct {
	Filter []string `query:"filter,explode" maxItems:"20" doc:"Alertmanager matchers, all of which must match: alertname=\"HostDown\", host=~\"rack1-.*\"." example:"severity=\"critical\""`
}

type alertsOutput struct {
	Body struct {
		Items []ActiveAlert `json:"items" doc:"Alerts by name, then start time."`
	}
}

func registerActiveAlerts(a *API) {
	register(a, huma.Operation{
		OperationID: "listAlerts", Method: http.MethodGet, Path: "/v1/alerts", Summary: "List active alerts",
		Description: "Lists the alerts Alertmanager holds now, firing or suppressed, with the silences that mute them " +
			"(rackcloud silences the alerts of hosts in maintenance). Members and viewers see only alerts labelled with " +
			"one of their projects. 503 when this server knows no Alertmanager, 502 when none answers.",
		Tags: []string{"Alerts"}, Errors: []int{http.StatusBadGateway, http.StatusServiceUnavailable},
	}, anyRole, func(ctx context.Context, in *alertsInput) (*alertsOutput, error) {
		if a.deps.Alerts == nil {
			return nil, huma.Error503ServiceUnavailable("no Alertmanager is configured on this server (start it with --alertmanager-url)")
		}
		if err := alerts.CheckFilter(in.Filter); err != nil {
			var ie *alerts.InvalidError
			errors.As(err, &ie)
			return nil, huma.Error422UnprocessableEntity("bad alert filter", &huma.ErrorDetail{Location: "query.filter", Message: ie.Msg})
		}
		got, err := a.deps.Alerts.List(ctx, in.Filter)
		if err != nil {
			if ctx.Err() != nil {
				return nil, a.problem(context.Cause(ctx))
			}
			var down *alerts.UnreachableError
			if errors.As(err, &down) {
				return nil, huma.Error502BadGateway("Alertmanager did not answer: " + err.Error())
			}
			return nil, huma.Error502BadGateway("Alertmanager refused the request: " + err.Error())
		}
		see, err := a.alertProjects(ctx)
		if err != nil {
			return nil, a.problem(err)
		}
		out := &alertsOutput{}
		out.Body.Items = []ActiveAlert{}
		for _, al := range got {
			if see != nil && !slices.Contains(see, al.Labels["project"]) {
				continue
			}
			out.Body.Items = append(out.Body.Items, activeAlertOut(al))
		}
		return out, nil
	})
}

// alertProjects is nil for staff (every alert) and otherwise the IDs and
// names of the caller's projects: the values of the project label that
// the caller may see.
func (a *API) alertProjects(ctx context.Context) ([]string, error) {
	p := principalFrom(ctx)
	if p.staff() {
		return nil, nil
	}
	see := []string{}
	for _, id := range p.Projects {
		pr, err := store.GetProject(ctx, a.deps.Pool, id)
		if errors.Is(err, rackcloud.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		see = append(see, id, pr.Name)
	}
	return see, nil
}

func activeAlertOut(al alerts.Alert) ActiveAlert {
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return ActiveAlert{Fingerprint: al.Fingerprint, Labels: al.Labels, Annotations: al.Annotations, State: al.State,
		StartsAt: al.StartsAt, EndsAt: al.EndsAt, SilencedBy: nonNil(al.SilencedBy), InhibitedBy: nonNil(al.InhibitedBy),
		Receivers: nonNil(al.Receivers)}
}

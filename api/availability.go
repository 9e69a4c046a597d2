package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// The Alertmanager webhook: host-down alerts become host.fence tasks (the
// availability controller's; package availability).

// FenceAlerts are the alert names that ask for a fence; any alert with
// the label rackcloud_action="fence" does too.
var FenceAlerts = []string{"HostDown"}

// AMAlert is one alert of an Alertmanager webhook notification.
type AMAlert struct {
	_            struct{}          `json:"-" additionalProperties:"true"`
	Status       string            `json:"status" enum:"firing,resolved" doc:"firing or resolved."`
	Labels       map[string]string `json:"labels" doc:"The alert's labels: host (a host's name) or host_id name the host."`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitempty"`
	EndsAt       time.Time         `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
	Fingerprint  string            `json:"fingerprint,omitempty" maxLength:"64"`
}

// AMNotification is Alertmanager's webhook body (version 4).
type AMNotification struct {
	_                 struct{}          `json:"-" additionalProperties:"true"`
	Version           string            `json:"version,omitempty"`
	GroupKey          string            `json:"groupKey,omitempty"`
	TruncatedAlerts   int               `json:"truncatedAlerts,omitempty"`
	Status            string            `json:"status,omitempty"`
	Receiver          string            `json:"receiver,omitempty"`
	GroupLabels       map[string]string `json:"groupLabels,omitempty"`
	CommonLabels      map[string]string `json:"commonLabels,omitempty"`
	CommonAnnotations map[string]string `json:"commonAnnotations,omitempty"`
	ExternalURL       string            `json:"externalURL,omitempty"`
	Alerts            []AMAlert         `json:"alerts" maxItems:"10000"`
}

// WebhookAction is what rackcloud did with one alert.
type WebhookAction struct {
	Alert string `json:"alert"`
	Host  string `json:"host,omitempty"`
	// Action is fence (a task was submitted) or ignored.
	Action string `json:"action" enum:"fence,ignored"`
	TaskID string `json:"task_id,omitempty"`
	Reason string `json:"reason,omitempty" doc:"Why the alert was ignored."`
}

type webhookInput struct {
	Body AMNotification
}

type webhookOutput struct {
	Body struct {
		Actions []WebhookAction `json:"actions"`
	}
}

// wantsFence reports whether a firing alert asks for its host's fence.
func wantsFence(al AMAlert) bool {
	if al.Labels["rackcloud_action"] == "fence" {
		return true
	}
	for _, n := range FenceAlerts {
		if al.Labels["alertname"] == n {
			return true
		}
	}
	return false
}

func registerAvailability(a *API) {
	register(a, huma.Operation{
		OperationID: "availabilityWebhook", Method: http.MethodPost, Path: "/v1/availability/webhook",
		Summary: "Receive Alertmanager's notifications (the availability controller's webhook)",
		Description: "Alertmanager's webhook receiver (webhook_configs, with an operator token as its bearer credentials). " +
			"Each firing alert named HostDown, or labelled rackcloud_action=\"fence\", whose host label (a host's name) or host_id names a host in service, " +
			"starts a host.fence task: the controller confirms that the host is dead (its agent quiet; its BMC off or its daemon silent), powers it off through its BMC, " +
			"fails it (reason fenced) and evacuates its guests with HA policy restart. Resolved alerts, other alerts and hosts already being changed by a task are ignored, with the reason. " +
			"The answer lists what was done with each alert; it is 200 unless the body is malformed, so that Alertmanager does not send a notification again for an alert that was ignored on purpose.",
		Tags: []string{"Availability"},
	}, staffOnly, func(ctx context.Context, in *webhookInput) (*webhookOutput, error) {
		out := &webhookOutput{}
		out.Body.Actions = []WebhookAction{}
		for _, al := range in.Body.Alerts {
			out.Body.Actions = append(out.Body.Actions, a.webhookAlert(ctx, al))
		}
		return out, nil
	})
}

// webhookAlert acts on one alert.
func (a *API) webhookAlert(ctx context.Context, al AMAlert) WebhookAction {
	act := WebhookAction{Alert: al.Labels["alertname"], Host: al.Labels["host"], Action: "ignored"}
	switch {
	case al.Status != "firing":
		act.Reason = "the alert is " + al.Status
		return act
	case !wantsFence(al):
		act.Reason = "the alert asks for no action (only " + strings.Join(FenceAlerts, ", ") + ` or rackcloud_action="fence" fence a host)`
		return act
	}
	ch := a.newChange(ctx, "fenceHost", "")
	err := a.run(ctx, ch, func(tx pgx.Tx) error {
		h, err := alertHost(ctx, tx, al.Labels)
		if err != nil {
			return err
		}
		act.Host, ch.target = h.Name, "host/"+h.ID
		if h.State == rackcloud.HostFailed && h.Failure != nil && h.Failure.Reason == rackcloud.FailFenced {
			return huma.Error409Conflict("host " + h.Name + " is fenced already")
		}
		kind, err := lifecycle(&h, rackcloud.HostEvFence)
		if err != nil {
			return err
		}
		alert := act.Alert
		if al.Fingerprint != "" {
			alert += " " + al.Fingerprint
		}
		info, err := a.submit(ctx, tx, ch, kind, rackcloud.HostFenceParams{HostID: h.ID, Alert: alert})
		if err != nil {
			return err
		}
		act.Action, act.TaskID = "fence", info.ID
		return nil
	})
	if err != nil {
		act.Action, act.TaskID = "ignored", ""
		var em *huma.ErrorModel
		if errors.As(err, &em) {
			act.Reason = em.Detail
		} else {
			act.Reason = err.Error()
		}
	}
	return act
}

// alertHost finds the host an alert's labels name: host_id first, then
// host (the name).
func alertHost(ctx context.Context, tx pgx.Tx, labels map[string]string) (rackcloud.Host, error) {
	if id := labels["host_id"]; id != "" {
		h, err := store.GetHost(ctx, tx, id)
		return h, notFound(err, "host", id)
	}
	name := labels["host"]
	if name == "" {
		return rackcloud.Host{}, huma.Error422UnprocessableEntity("the alert has no host or host_id label")
	}
	h, err := store.GetHostByName(ctx, tx, name)
	return h, notFound(err, "host", name)
}

package alerts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/go-openapi/runtime"
	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	amclient "github.com/prometheus/alertmanager/api/v2/client"
	"github.com/prometheus/alertmanager/api/v2/client/alert"
	"github.com/prometheus/alertmanager/api/v2/client/silence"
	"github.com/prometheus/alertmanager/api/v2/models"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"

	"github.com/rackcloud/rackcloud"
)

// SilenceCreator is the createdBy of the silences rackcloud makes: only
// those are ever renewed or expired by rackcloud.
const SilenceCreator = "rackcloud"

// DefaultSilenceDuration is how long a maintenance silence lasts; the
// maintenance silencer renews it when less than half of it is left.
const DefaultSilenceDuration = 7 * 24 * time.Hour

// AM talks to Alertmanager through its v2 API. Given several URLs (the
// replicas of a cluster, which share alerts and silences by gossip), each
// call goes to the first one that answers.
type AM struct {
	urls []string
	apis []*amclient.AlertmanagerAPI
	// SilenceDuration is the length of a new or renewed silence;
	// DefaultSilenceDuration when zero.
	SilenceDuration time.Duration
	now             func() time.Time
}

// UnreachableError says that no Alertmanager answered (the API maps it to
// 502). It names the URLs, never credentials.
type UnreachableError struct {
	URLs []string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("alertmanager %s: %v", strings.Join(e.URLs, ", "), e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// NewAM returns a client of the Alertmanagers at urls (http or https base
// URLs, e.g. http://127.0.0.1:9093, with an optional path prefix). hc is
// the HTTP client (nil: one with a 10 s timeout). It refuses an empty list
// or a URL that is not absolute http(s) with rackcloud.ErrInvalid.
func NewAM(urls []string, hc *http.Client) (*AM, error) {
	if len(urls) == 0 {
		return nil, fmt.Errorf("%w: no Alertmanager URL", rackcloud.ErrInvalid)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	a := &AM{now: time.Now}
	for _, raw := range urls {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return nil, fmt.Errorf("%w: Alertmanager URL %q: want http(s)://host:port[/prefix] without credentials", rackcloud.ErrInvalid, redact(raw))
		}
		base := strings.TrimSuffix(u.Path, "/") + amclient.DefaultBasePath
		tr := httptransport.NewWithClient(u.Host, base, []string{u.Scheme}, hc)
		a.apis = append(a.apis, amclient.New(tr, strfmt.Default))
		a.urls = append(a.urls, u.Scheme+"://"+u.Host+strings.TrimSuffix(u.Path, "/"))
	}
	return a, nil
}

// redact drops the user information of a URL that may carry it.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return raw
}

// URLs are the Alertmanagers' base URLs.
func (a *AM) URLs() []string { return append([]string(nil), a.urls...) }

// try calls fn on each Alertmanager in turn until one succeeds.
func (a *AM) try(ctx context.Context, fn func(*amclient.AlertmanagerAPI) error) error {
	var errs []error
	for i, api := range a.apis {
		if ctx.Err() != nil {
			break
		}
		err := fn(api)
		if err == nil {
			return nil
		}
		var apiErr *runtime.APIError
		if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 {
			// The Alertmanager answered and refused: another replica would too.
			return fmt.Errorf("alertmanager %s: %w", a.urls[i], err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", a.urls[i], err))
	}
	if ctx.Err() != nil {
		errs = append(errs, context.Cause(ctx))
	}
	return &UnreachableError{URLs: a.urls, Err: errors.Join(errs...)}
}

// Alert is one alert as Alertmanager holds it.
type Alert struct {
	Fingerprint string            `json:"fingerprint"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// State is active, suppressed (silenced or inhibited) or unprocessed.
	State       string    `json:"state"`
	StartsAt    time.Time `json:"starts_at"`
	EndsAt      time.Time `json:"ends_at"`
	SilencedBy  []string  `json:"silenced_by,omitempty"`
	InhibitedBy []string  `json:"inhibited_by,omitempty"`
	Receivers   []string  `json:"receivers,omitempty"`
}

// List returns the alerts Alertmanager holds (active, silenced and
// inhibited), each matching every matcher of filter (Alertmanager's syntax:
// alertname="HostDown", host=~"rack1-.*"), sorted by alert name, then
// start time.
func (a *AM) List(ctx context.Context, filter []string) ([]Alert, error) {
	if err := CheckFilter(filter); err != nil {
		return nil, err
	}
	var out []Alert
	err := a.try(ctx, func(api *amclient.AlertmanagerAPI) error {
		resp, err := api.Alert.GetAlerts(alert.NewGetAlertsParamsWithContext(ctx).WithFilter(filter))
		if err != nil {
			return err
		}
		out = out[:0]
		for _, g := range resp.Payload {
			out = append(out, alertOf(g))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ni, nj := out[i].Labels["alertname"], out[j].Labels["alertname"]; ni != nj {
			return ni < nj
		}
		return out[i].StartsAt.Before(out[j].StartsAt)
	})
	return out, nil
}

// CheckFilter checks alert matchers as Alertmanager parses them; it
// returns nil or an *InvalidError (field "filter") naming the bad one.
func CheckFilter(filter []string) error {
	for _, f := range filter {
		if _, err := amlabels.ParseMatcher(f); err != nil {
			return &InvalidError{Field: "filter", Msg: fmt.Sprintf("%q: %v", f, err)}
		}
	}
	return nil
}

func alertOf(g *models.GettableAlert) Alert {
	al := Alert{Labels: map[string]string(g.Labels), Annotations: map[string]string(g.Annotations)}
	if al.Labels == nil {
		al.Labels = map[string]string{}
	}
	if g.Fingerprint != nil {
		al.Fingerprint = *g.Fingerprint
	}
	if g.StartsAt != nil {
		al.StartsAt = time.Time(*g.StartsAt).UTC()
	}
	if g.EndsAt != nil {
		al.EndsAt = time.Time(*g.EndsAt).UTC()
	}
	if g.Status != nil {
		if g.Status.State != nil {
			al.State = *g.Status.State
		}
		al.SilencedBy = g.Status.SilencedBy
		al.InhibitedBy = g.Status.InhibitedBy
	}
	for _, r := range g.Receivers {
		if r != nil && r.Name != nil {
			al.Receivers = append(al.Receivers, *r.Name)
		}
	}
	return al
}

// Silence is one of rackcloud's maintenance silences: created by
// SilenceCreator with the single matcher host="<Host>".
type Silence struct {
	ID      string    `json:"id"`
	Host    string    `json:"host"`
	Comment string    `json:"comment"`
	State   string    `json:"state"`
	EndsAt  time.Time `json:"ends_at"`
}

// Silences returns rackcloud's maintenance silences that are active or
// pending (not expired), by host name. Silences made by people are never
// returned, so rackcloud never touches them.
func (a *AM) Silences(ctx context.Context) ([]Silence, error) {
	var out []Silence
	err := a.try(ctx, func(api *amclient.AlertmanagerAPI) error {
		resp, err := api.Silence.GetSilences(silence.NewGetSilencesParamsWithContext(ctx))
		if err != nil {
			return err
		}
		out = out[:0]
		for _, s := range resp.Payload {
			if ms, ok := maintenanceSilence(s); ok {
				out = append(out, ms)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list silences: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out, nil
}

func maintenanceSilence(s *models.GettableSilence) (Silence, bool) {
	if s == nil || s.ID == nil || s.CreatedBy == nil || *s.CreatedBy != SilenceCreator || len(s.Matchers) != 1 ||
		s.Status == nil || s.Status.State == nil || *s.Status.State == models.SilenceStatusStateExpired {
		return Silence{}, false
	}
	m := s.Matchers[0]
	if m == nil || m.Name == nil || *m.Name != "host" || m.Value == nil || (m.IsRegex != nil && *m.IsRegex) ||
		(m.IsEqual != nil && !*m.IsEqual) {
		return Silence{}, false
	}
	ms := Silence{ID: *s.ID, Host: *m.Value, State: *s.Status.State}
	if s.Comment != nil {
		ms.Comment = *s.Comment
	}
	if s.EndsAt != nil {
		ms.EndsAt = time.Time(*s.EndsAt).UTC()
	}
	return ms, true
}

func (a *AM) duration() time.Duration {
	if a.SilenceDuration > 0 {
		return a.SilenceDuration
	}
	return DefaultSilenceDuration
}

// Silence makes sure rackcloud's silence for host exists and has more
// than half its duration left: it keeps an existing one, renews it (same
// ID) when it is running out, and creates one otherwise. reason goes into
// the comment ("host <name> in maintenance: <reason>").
func (a *AM) Silence(ctx context.Context, host, reason string) error {
	return a.syncHost(ctx, host, map[string]string{host: reason})
}

// Expire expires every rackcloud silence for host; none is not an error.
func (a *AM) Expire(ctx context.Context, host string) error {
	return a.syncHost(ctx, host, nil)
}

func (a *AM) syncHost(ctx context.Context, host string, want map[string]string) error {
	if err := checkHostName(host); err != nil {
		return err
	}
	all, err := a.Silences(ctx)
	if err != nil {
		return err
	}
	var have []Silence
	for _, s := range all {
		if s.Host == host {
			have = append(have, s)
		}
	}
	return a.apply(ctx, planSilences(want, have, a.now(), a.duration()))
}

func (a *AM) postSilence(ctx context.Context, id, host, reason string) (string, error) {
	comment := "host " + host + " in maintenance"
	if reason != "" {
		comment += ": " + reason
	}
	now := a.now().UTC()
	start, end := strfmt.DateTime(now), strfmt.DateTime(now.Add(a.duration()))
	name, value, creator, f, t := "host", host, SilenceCreator, false, true
	body := &models.PostableSilence{ID: id, Silence: models.Silence{
		Matchers:  models.Matchers{{Name: &name, Value: &value, IsRegex: &f, IsEqual: &t}},
		StartsAt:  &start,
		EndsAt:    &end,
		CreatedBy: &creator,
		Comment:   &comment,
	}}
	var out string
	err := a.try(ctx, func(api *amclient.AlertmanagerAPI) error {
		resp, err := api.Silence.PostSilences(silence.NewPostSilencesParamsWithContext(ctx).WithSilence(body))
		if err != nil {
			return err
		}
		out = resp.Payload.SilenceID
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("silence host %s: %w", host, err)
	}
	return out, nil
}

func (a *AM) expire(ctx context.Context, id string) error {
	return a.try(ctx, func(api *amclient.AlertmanagerAPI) error {
		_, err := api.Silence.DeleteSilence(silence.NewDeleteSilenceParamsWithContext(ctx).WithSilenceID(strfmt.UUID(id)))
		return err
	})
}

func checkHostName(host string) error {
	if host == "" || strings.ContainsAny(host, "\"\\\n") {
		return fmt.Errorf("%w: host name %q", rackcloud.ErrInvalid, host)
	}
	return nil
}

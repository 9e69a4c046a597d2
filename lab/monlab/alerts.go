package monlab

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/go-openapi/strfmt"
	amclient "github.com/prometheus/alertmanager/api/v2/client"
	"github.com/prometheus/alertmanager/api/v2/client/alert"
	"github.com/prometheus/alertmanager/api/v2/models"
)

// Alert is an alert for PostAlerts: firing from a minute ago for an hour
// unless resolved.
type Alert struct {
	Labels, Annotations map[string]string
}

// AlertmanagerAPI returns a v2 API client of the stack's Alertmanager,
// for tests that look behind rackcloud's own client.
func (s *Stack) AlertmanagerAPI() *amclient.AlertmanagerAPI {
	u, _ := url.Parse(s.AlertmanagerURL)
	return amclient.NewHTTPClientWithConfig(nil, amclient.DefaultTransportConfig().WithHost(u.Host))
}

// PostAlerts sends the Alertmanager firing alerts directly, as Prometheus
// would, so that tests need not wait for a rule to fire.
func (s *Stack) PostAlerts(ctx context.Context, as ...Alert) error {
	start, end := strfmt.DateTime(time.Now().Add(-time.Minute)), strfmt.DateTime(time.Now().Add(time.Hour))
	var body models.PostableAlerts
	for _, a := range as {
		body = append(body, &models.PostableAlert{Alert: models.Alert{Labels: a.Labels},
			Annotations: a.Annotations, StartsAt: start, EndsAt: end})
	}
	if _, err := s.AlertmanagerAPI().Alert.PostAlerts(alert.NewPostAlertsParamsWithContext(ctx).WithAlerts(body)); err != nil {
		return fmt.Errorf("post alerts: %w", err)
	}
	return nil
}

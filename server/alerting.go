package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/api"
)

// AlertingConfig is how the server works with Alertmanager.
type AlertingConfig struct {
	// AlertmanagerURLs are the Alertmanagers (the replicas of one
	// cluster): GET /v1/alerts reads them and the maintenance silencer
	// writes silences there. Empty: neither runs (GET /v1/alerts answers
	// 503).
	AlertmanagerURLs []string
	// ConfigFile, when set, is where the server writes the rendered
	// alertmanager.yml (alerts.RenderAM of the fields below) once the
	// store is ready, and then asks each Alertmanager to reload it.
	ConfigFile string
	// RemediationURL is rackcloud's availability webhook as Alertmanager
	// reaches it (https://rackcloud.example/v1/availability/webhook);
	// RemediationTokenFile holds its bearer token and is read by
	// Alertmanager (credentials_file), so it must be readable there.
	RemediationURL, RemediationTokenFile string
	// Operators are the operators' receivers; empty: one with no
	// integrations.
	Operators []alerts.Receiver
	// SMTP relays the operators' email.
	SMTP alerts.SMTP
	// SilenceInterval is how often the maintenance silences are checked
	// besides on host changes (0: alerts.DefaultSilencerInterval;
	// negative: the silencer does not run).
	SilenceInterval time.Duration
}

// alerting is the server's part that talks to Alertmanager.
type alerting struct {
	am       *alerts.AM // nil: no Alertmanager configured
	silencer *alerts.Silencer
	rendered []byte // alertmanager.yml, nil unless ConfigFile
}

// setupAlerting checks the alerting configuration and builds the client,
// the silencer and the rendered Alertmanager configuration, without
// touching the network, so that a bad flag stops the server at once.
func (s *Server) setupAlerting() error {
	c := s.cfg.Alerting
	if c.ConfigFile != "" {
		out, err := alerts.RenderAM(alerts.AMConfig{RemediationURL: c.RemediationURL, RemediationTokenFile: c.RemediationTokenFile,
			Operators: c.Operators, SMTP: c.SMTP})
		if err != nil {
			return fmt.Errorf("--alertmanager-config: %w", err)
		}
		s.alerting.rendered = out
		if c.RemediationURL == "" {
			s.log.Warn("no --remediation-webhook-url: Alertmanager will not call the availability controller")
		}
	} else if c.RemediationURL != "" || c.RemediationTokenFile != "" || len(c.Operators) > 0 {
		return fmt.Errorf("%w: the remediation webhook and operator receivers go into the rendered Alertmanager configuration: give --alertmanager-config too", rackcloud.ErrInvalid)
	}
	if len(c.AlertmanagerURLs) == 0 {
		if c.ConfigFile != "" {
			s.log.Info("no --alertmanager-url: the Alertmanager configuration is written but not reloaded, and hosts in maintenance are not silenced")
		}
		return nil
	}
	am, err := alerts.NewAM(c.AlertmanagerURLs, nil)
	if err != nil {
		return fmt.Errorf("--alertmanager-url: %w", err)
	}
	s.alerting.am = am
	if c.SilenceInterval >= 0 {
		if s.alerting.silencer, err = alerts.NewSilencer(alerts.SilencerConfig{Pool: s.pool, AM: am, Interval: c.SilenceInterval,
			Logger: s.log.With("component", "silencer"), Registerer: s.registry}); err != nil {
			return err
		}
	}
	return nil
}

// activeAlerts is the API's view of Alertmanager: nil (503) without one.
func (s *Server) activeAlerts() api.ActiveAlerts {
	if s.alerting.am == nil {
		return nil // a nil *alerts.AM must stay a nil interface
	}
	return s.alerting.am
}

// startAlerting writes and reloads the Alertmanager configuration and
// starts the maintenance silencer, once the store is ready.
func (s *Server) startAlerting() {
	if s.alerting.rendered != nil {
		if err := s.writeAMConfig(s.bgCtx); err != nil {
			s.log.Error("alertmanager configuration", "err", err)
		}
	}
	if s.alerting.silencer != nil {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			_ = s.alerting.silencer.Run(s.bgCtx)
		}()
	}
}

// writeAMConfig writes the rendered configuration and asks every
// Alertmanager to reload; one that does not answer is logged (it reads
// the file when it starts).
func (s *Server) writeAMConfig(ctx context.Context) error {
	if err := alerts.WriteAMConfig(s.cfg.Alerting.ConfigFile, s.alerting.rendered); err != nil {
		return err
	}
	s.log.Info("wrote the Alertmanager configuration", "file", s.cfg.Alerting.ConfigFile)
	if s.alerting.am == nil {
		return nil
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, u := range s.alerting.am.URLs() {
		if err := alerts.Reload(ctx, hc, u); err != nil {
			s.log.Warn("alertmanager did not reload its configuration", "alertmanager", u, "err", err)
		}
	}
	return nil
}

package main

import (
	"flag"
	"strings"

	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/server"
)

// commaList collects values given as repeated flags, comma lists, or both.
type commaList []string

func (l *commaList) String() string { return strings.Join(*l, ",") }

func (l *commaList) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// bindAlertingFlags binds the server's Alertmanager flags to c; call the
// function it returns after parsing.
func bindAlertingFlags(fs *flag.FlagSet, c *server.AlertingConfig) func() {
	var ams, hooks, emails commaList
	fs.Var(&ams, "alertmanager-url", "Alertmanager base URL(s), repeatable or comma-separated (the replicas of one cluster): GET /v1/alerts reads them and hosts in maintenance are silenced there (env RACKCLOUD_ALERTMANAGER_URL)")
	fs.StringVar(&c.ConfigFile, "alertmanager-config", "", "write rackcloud's Alertmanager configuration (routes, receivers) to this file once the database is ready and reload the Alertmanagers (env RACKCLOUD_ALERTMANAGER_CONFIG)")
	fs.StringVar(&c.RemediationURL, "remediation-webhook-url", "", "rackcloud's availability webhook as Alertmanager reaches it, e.g. https://rackcloud.example/v1/availability/webhook: HostDown and remediate=\"true\" alerts go there (env RACKCLOUD_REMEDIATION_WEBHOOK_URL)")
	fs.StringVar(&c.RemediationTokenFile, "remediation-token-file", "", "file with the webhook's bearer token, as Alertmanager reads it (credentials_file); required with --remediation-webhook-url (env RACKCLOUD_REMEDIATION_TOKEN_FILE)")
	fs.Var(&hooks, "alert-webhook-url", "operators' webhook(s) that get every alert, repeatable or comma-separated (env RACKCLOUD_ALERT_WEBHOOK_URL)")
	fs.Var(&emails, "alert-email", "operators' email address(es) that get every alert; needs --smtp-smarthost and --smtp-from (env RACKCLOUD_ALERT_EMAIL)")
	fs.StringVar(&c.SMTP.Smarthost, "smtp-smarthost", "", "SMTP relay host:port for --alert-email (env RACKCLOUD_SMTP_SMARTHOST)")
	fs.StringVar(&c.SMTP.From, "smtp-from", "", "sender address of alert email (env RACKCLOUD_SMTP_FROM)")
	fs.DurationVar(&c.SilenceInterval, "silence-interval", alerts.DefaultSilencerInterval, "how often the silences of hosts in maintenance are checked besides on host changes; negative turns the silencer off (env RACKCLOUD_SILENCE_INTERVAL)")
	return func() {
		c.AlertmanagerURLs = ams
		if len(hooks)+len(emails) > 0 {
			c.Operators = []alerts.Receiver{{Name: alerts.DefaultOperatorReceiver, WebhookURLs: hooks, Emails: emails}}
		}
	}
}

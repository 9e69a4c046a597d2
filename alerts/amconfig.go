package alerts

import (
	"fmt"
	"net/url"
	"time"

	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/rackcloud/rackcloud"
)

// RemediationReceiver is the name of the receiver that calls rackcloud's
// availability webhook.
const RemediationReceiver = "rackcloud-remediation"

// DefaultOperatorReceiver names the default operator receiver when
// AMConfig has none: it has no integrations (alerts are only visible in
// Alertmanager and GET /v1/alerts).
const DefaultOperatorReceiver = "operators"

// RemediationAlert is the alert the availability controller acts on; any
// alert labelled RemediateLabel="true" goes to it as well.
const (
	RemediationAlert = "HostDown"
	RemediateLabel   = "remediate"
)

// Defaults of AMConfig's timings.
const (
	DefaultGroupWait            = 30 * time.Second
	DefaultGroupInterval        = 5 * time.Minute
	DefaultRepeatInterval       = 4 * time.Hour
	DefaultRemediationGroupWait = time.Second
	DefaultRemediationInterval  = 10 * time.Second
)

// AMConfig is how rackcloud routes alerts in Alertmanager: host-availability
// alerts (HostDown, and any alert with remediate="true") to rackcloud's
// webhook, which the availability controller acts on, and every alert
// (those too) to the operators' receivers.
type AMConfig struct {
	// RemediationURL is rackcloud's webhook, POST /v1/availability/webhook
	// on a rackcloud server (or a load balancer in front of them). Empty
	// means no remediation route.
	RemediationURL string
	// RemediationTokenFile is a file holding the webhook's bearer token,
	// readable by Alertmanager (credentials_file); RemediationToken puts
	// the token into the configuration instead. One is required with
	// RemediationURL.
	RemediationTokenFile, RemediationToken string
	// Operators are the operators' receivers. Those with Matchers get the
	// alerts they match (first match wins); the rest go to Default.
	Operators []Receiver
	// Default names the receiver of alerts no operator receiver matches:
	// one of Operators, or empty for the first of Operators without
	// Matchers (DefaultOperatorReceiver, with no integrations, if none).
	Default string
	// SMTP is needed by receivers with Emails.
	SMTP SMTP
	// Timings of the operator routes; zero means the Default* constants.
	GroupWait, GroupInterval, RepeatInterval time.Duration
	// Timings of the remediation route: short, so a dead host is fenced
	// soon.
	RemediationGroupWait, RemediationInterval time.Duration
}

// Receiver is an operators' receiver.
type Receiver struct {
	// Name is unique; RemediationReceiver is taken.
	Name string
	// Matchers (Alertmanager syntax: severity="critical", team=~"infra|net")
	// select the alerts this receiver gets; all must match.
	Matchers []string
	// WebhookURLs are called with every alert group (and its resolution).
	WebhookURLs []string
	// Emails are addresses mailed through SMTP.
	Emails []string
}

// SMTP is the mail relay of email receivers.
type SMTP struct {
	Smarthost string // host:port
	From      string
}

// The YAML shapes rendered: the subset of alertmanager.yml rackcloud
// writes, in the fields Alertmanager 0.25 (Debian 12) already knows.
type (
	amFile struct {
		Global    *amGlobal    `yaml:"global,omitempty"`
		Route     amRoute      `yaml:"route"`
		Receivers []amReceiver `yaml:"receivers"`
	}
	amGlobal struct {
		SMTPSmarthost string `yaml:"smtp_smarthost,omitempty"`
		SMTPFrom      string `yaml:"smtp_from,omitempty"`
	}
	amRoute struct {
		Receiver       string         `yaml:"receiver"`
		GroupBy        []string       `yaml:"group_by,omitempty"`
		Matchers       []string       `yaml:"matchers,omitempty"`
		Continue       bool           `yaml:"continue,omitempty"`
		GroupWait      model.Duration `yaml:"group_wait,omitempty"`
		GroupInterval  model.Duration `yaml:"group_interval,omitempty"`
		RepeatInterval model.Duration `yaml:"repeat_interval,omitempty"`
		Routes         []amRoute      `yaml:"routes,omitempty"`
	}
	amReceiver struct {
		Name    string      `yaml:"name"`
		Webhook []amWebhook `yaml:"webhook_configs,omitempty"`
		Email   []amEmail   `yaml:"email_configs,omitempty"`
	}
	amWebhook struct {
		URL          string        `yaml:"url"`
		SendResolved bool          `yaml:"send_resolved"`
		HTTPConfig   *amHTTPConfig `yaml:"http_config,omitempty"`
	}
	amHTTPConfig struct {
		Authorization amAuthorization `yaml:"authorization"`
	}
	amAuthorization struct {
		Type            string `yaml:"type"`
		Credentials     string `yaml:"credentials,omitempty"`
		CredentialsFile string `yaml:"credentials_file,omitempty"`
	}
	amEmail struct {
		To           string `yaml:"to"`
		SendResolved bool   `yaml:"send_resolved"`
	}
)

// RenderAM returns alertmanager.yml for c. Its matchers are parsed as
// Alertmanager parses them; the tests load the output with the
// Alertmanager module's own config.Load and Debian's amtool (kept out of
// the binary: the config package brings every notifier's SDK). Bad input
// gives an error wrapping
// rackcloud.ErrInvalid that names the field and never a secret. The result
// may hold secrets (an inline token, webhook URLs): write it readable by
// Alertmanager only.
func RenderAM(c AMConfig) ([]byte, error) {
	f, err := amFileOf(c)
	if err != nil {
		return nil, err
	}
	out, err := yaml.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("render alertmanager config: %w", err)
	}
	return out, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{rackcloud.ErrInvalid}, args...)...)
}

func dur(d, def time.Duration) model.Duration {
	if d <= 0 {
		d = def
	}
	return model.Duration(d)
}

func amFileOf(c AMConfig) (amFile, error) {
	groupBy := []string{"alertname", "host"}
	root := amRoute{GroupBy: groupBy, GroupWait: dur(c.GroupWait, DefaultGroupWait),
		GroupInterval: dur(c.GroupInterval, DefaultGroupInterval), RepeatInterval: dur(c.RepeatInterval, DefaultRepeatInterval)}
	var f amFile

	if c.RemediationURL != "" {
		if err := checkURL("remediation webhook URL", c.RemediationURL); err != nil {
			return f, err
		}
		auth := amAuthorization{Type: "Bearer", Credentials: c.RemediationToken, CredentialsFile: c.RemediationTokenFile}
		if (auth.Credentials == "") == (auth.CredentialsFile == "") {
			return f, invalid("remediation webhook: give exactly one of a bearer token and a token file")
		}
		f.Receivers = append(f.Receivers, amReceiver{Name: RemediationReceiver, Webhook: []amWebhook{{
			URL: c.RemediationURL, SendResolved: true, HTTPConfig: &amHTTPConfig{Authorization: auth}}}})
		// continue: the operators get these alerts too, through the
		// routes below.
		rem := amRoute{Receiver: RemediationReceiver, Continue: true, GroupBy: []string{"alertname", "host"},
			GroupWait:      dur(c.RemediationGroupWait, DefaultRemediationGroupWait),
			GroupInterval:  dur(c.RemediationInterval, DefaultRemediationInterval),
			RepeatInterval: dur(c.RepeatInterval, DefaultRepeatInterval)}
		hostDown, labelled := rem, rem
		hostDown.Matchers = []string{`alertname="` + RemediationAlert + `"`}
		// Not HostDown, or a HostDown with the label would be sent twice.
		labelled.Matchers = []string{RemediateLabel + `="true"`, `alertname!="` + RemediationAlert + `"`}
		root.Routes = append(root.Routes, hostDown, labelled)
	} else if c.RemediationToken != "" || c.RemediationTokenFile != "" {
		return f, invalid("remediation webhook: a token without a URL")
	}

	names := map[string]bool{RemediationReceiver: true}
	def := c.Default
	for i, r := range c.Operators {
		if r.Name == "" {
			return f, invalid("operator receiver %d: no name", i+1)
		}
		if names[r.Name] {
			return f, invalid("operator receiver %q: name taken", r.Name)
		}
		names[r.Name] = true
		for _, m := range r.Matchers {
			if _, err := amlabels.ParseMatcher(m); err != nil {
				return f, invalid("operator receiver %s: matcher %q: %v", r.Name, m, err)
			}
		}
		rr := amReceiver{Name: r.Name}
		for _, u := range r.WebhookURLs {
			if err := checkURL("operator receiver "+r.Name+": webhook URL", u); err != nil {
				return f, err
			}
			rr.Webhook = append(rr.Webhook, amWebhook{URL: u, SendResolved: true})
		}
		for _, e := range r.Emails {
			if c.SMTP.Smarthost == "" || c.SMTP.From == "" {
				return f, invalid("operator receiver %s: email needs an SMTP smarthost and from address", r.Name)
			}
			rr.Email = append(rr.Email, amEmail{To: e, SendResolved: true})
		}
		f.Receivers = append(f.Receivers, rr)
		if len(r.Matchers) > 0 {
			root.Routes = append(root.Routes, amRoute{Receiver: r.Name, Matchers: r.Matchers})
		} else if def == "" {
			def = r.Name
		}
	}
	switch {
	case def == "":
		def = DefaultOperatorReceiver
		if names[def] {
			return f, invalid("no default receiver: name one")
		}
		f.Receivers = append(f.Receivers, amReceiver{Name: def})
	case !names[def] || def == RemediationReceiver:
		return f, invalid("default receiver %q is not an operator receiver", def)
	}
	root.Receiver = def
	if len(root.Routes) > 0 {
		// After a remediation route's continue, the default must be a
		// route of its own: a matched child keeps the parent from
		// receiving.
		root.Routes = append(root.Routes, amRoute{Receiver: def})
	}
	f.Route = root
	if c.SMTP != (SMTP{}) {
		f.Global = &amGlobal{SMTPSmarthost: c.SMTP.Smarthost, SMTPFrom: c.SMTP.From}
	}
	return f, nil
}

// checkURL accepts an absolute http(s) URL; its error never repeats the
// URL, which may hold a secret (a token in the path or the query).
func checkURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("%s: want an absolute http(s) URL", what)
	}
	return nil
}

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
)

// Defaults of Config.
const (
	// DefaultRetryFor bounds how long Report keeps trying: long enough
	// for a boot service restart, short enough that a host left without
	// one is noticed.
	DefaultRetryFor = 2 * time.Minute
	DefaultRetryMin = time.Second
	DefaultRetryMax = 15 * time.Second
	// DefaultTimeout bounds one POST.
	DefaultTimeout = 10 * time.Second
)

// Kernel command-line parameters the boot service puts on a netboot's
// command line (pxe.Param*; the agent does not import pxe, to stay small).
const (
	ParamMAC      = "rackcloud.mac"
	ParamCallback = "rackcloud.callback"
	ParamToken    = "rackcloud.token"
)

// Config is one run of the agent.
type Config struct {
	// Root is the file system to inspect (where proc and sys are); nil
	// means os.DirFS("/").
	Root fs.FS
	// ReportURL is where the inventory is POSTed (the boot service's
	// /boot/{mac}/inventory); empty prints it instead.
	ReportURL string
	// Token is this boot's token, sent as "Authorization: Bearer".
	Token string
	// RetryFor bounds the time spent reporting (DefaultRetryFor when
	// zero); the wait between tries grows from RetryMin to RetryMax,
	// with jitter.
	RetryFor, RetryMin, RetryMax time.Duration
	// Client sends the report; nil means one with DefaultTimeout.
	Client *http.Client
	// Log gets a line per failed try and the outcome; nil discards them.
	Log io.Writer
	// WipeDir, when set, is where the disks' block devices are (/dev):
	// they are wiped (Wipe) before the report, which lists them in
	// Inventory.Wiped. A deprovisioning boot sets it.
	WipeDir string
	// StandbySeconds is put in the report: the agent stands by after it
	// (Install.Standby).
	StandbySeconds int
}

// Run collects the inventory of cfg.Root and reports it to cfg.ReportURL,
// or prints it as indented JSON on stdout when there is none.
func Run(ctx context.Context, cfg Config, stdout io.Writer) error {
	root := cfg.Root
	if root == nil {
		root = os.DirFS("/")
	}
	inv, err := Collect(root)
	if err != nil {
		return err
	}
	inv.StandbySeconds = cfg.StandbySeconds
	if cfg.WipeDir != "" {
		wiped, err := Wipe(cfg.WipeDir, inv.Disks)
		if err != nil {
			return err
		}
		inv.Wiped = append([]string{}, wiped...)
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "wiped %v (the first and last %d bytes of each)\n", wiped, WipeSpan)
		}
	}
	if cfg.ReportURL == "" {
		b, err := json.MarshalIndent(inv, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, string(b))
		return err
	}
	return Report(ctx, cfg, inv)
}

// RefusedError is a report the server refused (4xx): trying again would
// not help.
type RefusedError struct {
	// What was refused (inventory, install report).
	What   string
	URL    string
	Status int
	// Detail is the start of the server's answer.
	Detail string
}

func (e *RefusedError) Error() string {
	what := e.What
	if what == "" {
		what = "inventory"
	}
	return fmt.Sprintf("%s refused by %s: %d %s: %s", what, e.URL, e.Status, http.StatusText(e.Status), e.Detail)
}

// Report POSTs inv as JSON to cfg.ReportURL with cfg.Token. It tries
// again after transport errors and 5xx answers until cfg.RetryFor has
// passed, and returns a *RefusedError at once on a 4xx answer.
func Report(ctx context.Context, cfg Config, inv rackcloud.Inventory) error {
	if u, err := url.Parse(cfg.ReportURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("report URL %q is not an http(s) URL", cfg.ReportURL)
	}
	body, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	return deliver(ctx, cfg, cfg.ReportURL, "inventory", body)
}

// deliver POSTs body to u with cfg.Token, trying again after transport
// errors and 5xx answers until cfg.RetryFor has passed; a 4xx answer is a
// *RefusedError at once.
func deliver(ctx context.Context, cfg Config, u, what string, body []byte) error {
	retryFor := orDefault(cfg.RetryFor, DefaultRetryFor)
	wait, maxWait := orDefault(cfg.RetryMin, DefaultRetryMin), orDefault(cfg.RetryMax, DefaultRetryMax)
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: DefaultTimeout}
	}
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	ctx, cancel := context.WithTimeoutCause(ctx, retryFor,
		fmt.Errorf("%s not reported to %s within %v", what, u, retryFor))
	defer cancel()
	var last error
	for try := 1; ; try++ {
		err := post(ctx, client, u, cfg.Token, body)
		var refused *RefusedError
		switch {
		case err == nil:
			fmt.Fprintf(logw, "rackcloud-agent: %s reported to %s\n", what, u)
			return nil
		case errors.As(err, &refused):
			refused.What = what
			return err
		case ctx.Err() != nil && last != nil: // the try was cut short: the one before says why
			return fmt.Errorf("%w (last: %v)", context.Cause(ctx), last)
		}
		last = err
		// Jitter ±20%: the hosts of a rack retry apart.
		d := time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		fmt.Fprintf(logw, "rackcloud-agent: try %d: %v; again in %v\n", try, err, d.Round(time.Millisecond))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last: %v)", context.Cause(ctx), last)
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

func post(ctx context.Context, client *http.Client, u, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	detail := strings.TrimSpace(string(answer))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode < 500:
		return &RefusedError{URL: u, Status: resp.StatusCode, Detail: detail}
	}
	return fmt.Errorf("%s: %s: %s", u, resp.Status, detail)
}

func orDefault(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// Boot is what the boot service told this boot on the kernel command line.
type Boot struct {
	MAC      string
	Callback string
	Token    string
	// State is the lifecycle state the boot was rendered for.
	State string
}

// ParseCmdline reads the rackcloud.* parameters of a kernel command line
// (/proc/cmdline).
func ParseCmdline(cmdline string) Boot {
	var b Boot
	for _, w := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(w, "=")
		switch k {
		case ParamMAC:
			b.MAC = v
		case ParamCallback:
			b.Callback = v
		case ParamToken:
			b.Token = v
		case ParamState:
			b.State = v
		}
	}
	return b
}

// BaseURL is the boot service's URL (the callback's scheme and host).
func (b Boot) BaseURL() (string, error) {
	u, err := url.Parse(b.Callback)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("%s %q is not an http(s) URL", ParamCallback, b.Callback)
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String(), nil
}

// ReportURL is the boot service's inventory URL for this boot: the
// callback's scheme and host, path /boot/{mac}/inventory.
func (b Boot) ReportURL() (string, error) {
	mac, err := rackcloud.NormalizeMAC(b.MAC)
	if err != nil {
		return "", fmt.Errorf("%s: %w", ParamMAC, err)
	}
	u, err := url.Parse(b.Callback)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("%s %q is not an http(s) URL", ParamCallback, b.Callback)
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/boot/" + mac + "/inventory"}).String(), nil
}

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostconfig"
)

// HeartbeatMarker is printed on stdout (and on the console) by `host` the
// first time the boot service answers a heartbeat with 2xx, followed by
// " mac=<mac>".
const HeartbeatMarker = "RACKCLOUD-HEARTBEAT-OK"

// Defaults of the host mode.
const (
	// DefaultHeartbeatInterval applies when the configuration has no
	// HeartbeatSeconds.
	DefaultHeartbeatInterval = 10 * time.Second
	// DefaultSetupWait is how long host-setup waits for a disk holding
	// the configuration to appear (drivers may still be probing).
	DefaultSetupWait = 10 * time.Second
	heartbeatTimeout = 5 * time.Second
	maxBackoff       = time.Minute
)

// Heartbeat is the JSON body of an installed host's heartbeat.
type Heartbeat struct {
	HostID   string             `json:"host_id"`
	Role     rackcloud.HostRole `json:"role"`
	Hostname string             `json:"hostname"`
	BootID   string             `json:"boot_id"`
	UptimeS  float64            `json:"uptime_s"`
	Kernel   string             `json:"kernel"`
}

// HostMain is the command line of an installed host's agent, for the
// subcommands `host-setup` (lay the configuration out from the disk's
// config partition before the role's daemons start) and `host` (call in
// to the boot service forever). args starts with the subcommand. It
// returns the exit status: 0, 1 when the work failed, 2 for a usage
// error.
//
//	host-setup [--root DIR] [--devices D1,D2] [--wait D]
//	host [--root DIR]
func HostMain(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "usage: %s host-setup|host [flags]\n", name)
		return 2
	}
	name += " " + args[0]
	switch args[0] {
	case "host-setup":
		return hostSetupMain(ctx, name, args[1:], stdout, stderr)
	case "host":
		return hostRunMain(ctx, name, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "%s: unknown subcommand (want host-setup or host)\n", name)
	return 2
}

// newHostFlags makes a subcommand's flag set whose help goes to stdout
// when asked for.
func newHostFlags(name, summary string, args []string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [flags]\n\n%s\n\nflags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseHostFlags parses args; done reports an exit status to return.
func parseHostFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return 2, true
	}
	return 0, false
}

func hostSetupMain(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs := newHostFlags(name, "Finds this host's configuration in the config partition (MBR type 0xda) of its disks and lays\n"+
		"it out under the root (host.json, the TLS files, the hostname) before the role's daemons start.", args, stdout, stderr)
	root := fs.String("root", "/", "root of the file system to write the configuration into")
	devices := fs.String("devices", "", "comma-separated disks to search (default: every whole disk in /sys/block)")
	wait := fs.Duration("wait", DefaultSetupWait, "how long to wait for a disk with a configuration to appear")
	if code, done := parseHostFlags(fs, args, stderr); done {
		return code
	}
	var cfg hostconfig.Config
	var dev string
	var err error
	deadline := time.Now().Add(*wait)
	for {
		devs := strings.FieldsFunc(*devices, func(r rune) bool { return r == ',' })
		if len(devs) == 0 {
			devs = WholeDisks("/sys/block")
		}
		cfg, dev, err = hostconfig.ReadDevices(devs)
		if err == nil || time.Now().After(deadline) {
			if err != nil {
				on := strings.Join(devs, ", ")
				if on == "" {
					on = "any disk (none found)"
				}
				fmt.Fprintf(stderr, "%s: no host configuration on %s: %s\n", name, on, joinLines(err))
				return 1
			}
			break
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "%s: %v\n", name, context.Cause(ctx))
			return 1
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err := hostconfig.Setup(*root, cfg); err != nil {
		fmt.Fprintf(stderr, "%s: lay out the configuration from %s: %v\n", name, dev, err)
		return 1
	}
	if filepath.Clean(*root) == "/" && cfg.Hostname != "" {
		if err := syscall.Sethostname([]byte(cfg.Hostname)); err != nil {
			fmt.Fprintf(stderr, "%s: sethostname %s: %v\n", name, cfg.Hostname, err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "%s: host %s (%s, %s) configured from %s\n", name, cfg.HostID, cfg.Hostname, cfg.Role, dev)
	return 0
}

// joinLines joins a multi-line error's lines.
func joinLines(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// WholeDisks lists the whole disks under sysBlock (/sys/block) as device
// paths (/dev/vda), leaving out loop, RAM, zram and optical devices.
func WholeDisks(sysBlock string) []string {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") ||
			strings.HasPrefix(n, "sr") || strings.HasPrefix(n, "fd") {
			continue
		}
		out = append(out, "/dev/"+n)
	}
	slices.Sort(out)
	return out
}

func hostRunMain(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs := newHostFlags(name, "Calls in to the boot service forever (POST {boot_url}/boot/{mac}/heartbeat with the host's\n"+
		"token), as configured in "+hostconfig.FileConfig+" by host-setup.", args, stdout, stderr)
	root := fs.String("root", "/", "root of the file system holding the configuration, proc and dev")
	if code, done := parseHostFlags(fs, args, stderr); done {
		return code
	}
	h, err := newHostAgent(*root, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	h.run(ctx)
	return 0
}

// hostAgent sends an installed host's heartbeats.
type hostAgent struct {
	root           string
	cfg            hostconfig.Config
	url            string
	interval       time.Duration
	retryMin       time.Duration // the first backoff after a failure
	client         *http.Client
	stdout, stderr io.Writer
}

func newHostAgent(root string, stdout, stderr io.Writer) (*hostAgent, error) {
	b, err := os.ReadFile(filepath.Join(root, hostconfig.FileConfig))
	if err != nil {
		return nil, fmt.Errorf("host config (run host-setup first): %w", err)
	}
	var c hostconfig.Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("host config %s: %w", hostconfig.FileConfig, err)
	}
	if c.HostID == "" || c.MAC == "" || c.BootURL == "" || c.Token == "" {
		return nil, fmt.Errorf("host config %s: host_id, mac, boot_url and token are required", hostconfig.FileConfig)
	}
	iv := DefaultHeartbeatInterval
	if c.HeartbeatSeconds > 0 {
		iv = time.Duration(c.HeartbeatSeconds) * time.Second
	}
	return &hostAgent{
		root: root, cfg: c, interval: iv, retryMin: time.Second,
		url:    strings.TrimSuffix(c.BootURL, "/") + "/boot/" + strings.ToLower(c.MAC) + "/heartbeat",
		client: &http.Client{Timeout: heartbeatTimeout},
		stdout: stdout, stderr: stderr,
	}, nil
}

// run heartbeats until ctx ends: every interval while answered, with a
// doubling backoff (retryMin, 1 s, up to the interval or a minute) after
// failures.
func (h *hostAgent) run(ctx context.Context) {
	ok := false
	failures := 0
	for {
		wait := h.interval
		if err := h.beat(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait = min(h.retryMin<<min(failures-1, 6), max(h.interval, maxBackoff))
			fmt.Fprintf(h.stderr, "rackcloud-agent host: heartbeat to %s failed (%d in a row, next in %s): %v\n",
				h.url, failures, wait, err)
		} else {
			failures = 0
			if !ok {
				ok = true
				h.announce(HeartbeatMarker + " mac=" + strings.ToLower(h.cfg.MAC))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// announce prints line on stdout and on the console, where a host's
// operator (or a test reading the serial console) sees it.
func (h *hostAgent) announce(line string) {
	fmt.Fprintln(h.stdout, line)
	if f, err := os.OpenFile(filepath.Join(h.root, "dev/console"), os.O_WRONLY|syscall.O_NOCTTY, 0); err == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
}

// heartbeat reads the host's state under root.
func (h *hostAgent) heartbeat() Heartbeat {
	read := func(p string) string {
		b, _ := os.ReadFile(filepath.Join(h.root, p))
		return strings.TrimSpace(string(b))
	}
	hb := Heartbeat{HostID: h.cfg.HostID, Role: h.cfg.Role, Hostname: h.cfg.Hostname,
		BootID: read("proc/sys/kernel/random/boot_id"), Kernel: read("proc/sys/kernel/osrelease")}
	if n := read("etc/hostname"); n != "" {
		hb.Hostname = n
	}
	if up, _, _ := strings.Cut(read("proc/uptime"), " "); up != "" {
		hb.UptimeS, _ = strconv.ParseFloat(up, 64)
	}
	return hb
}

func (h *hostAgent) beat(ctx context.Context) error {
	body, err := json.Marshal(h.heartbeat())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, heartbeatTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+h.cfg.Token)
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

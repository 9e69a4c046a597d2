package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
)

// Main is the agent's command line, shared by the small rackcloud-agent
// binary of the boot images and `rackcloud agent`: name is the command's
// name for its usage line, args its arguments. It returns the exit
// status: 0, 1 when collecting or reporting failed, 2 for a usage error.
//
//	--root DIR        the file system to inspect (default /)
//	--report URL      POST the inventory there (else print it)
//	--token T         this boot's token (Authorization: Bearer)
//	--from-cmdline    take the URL and token from /proc/cmdline
//	                  (rackcloud.mac, rackcloud.callback, rackcloud.token);
//	                  with rackcloud.state=deprovisioning, wipe every disk
//	                  (Wipe) before reporting; with
//	                  rackcloud.state=provisioning, install the host's
//	                  image instead (Install)
//	--retry-for D     how long to keep trying (default 2m)
func Main(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs := newHostFlags(name, "Collects this machine's hardware inventory (CPU, memory, disks, NICs, DMI, firmware) and\n"+
		"reports it to the boot service with this boot's token, or prints it as JSON.", args, stdout, stderr)
	root := fs.String("root", "/", "root of the file system to inspect (where proc and sys are)")
	report := fs.String("report", "", "POST the inventory to this URL (the boot service's /boot/{mac}/inventory) instead of printing it")
	token := fs.String("token", "", "this boot's token, sent as \"Authorization: Bearer\"")
	fromCmdline := fs.Bool("from-cmdline", false, "take the report URL and token from the kernel command line ("+
		ParamMAC+", "+ParamCallback+", "+ParamToken+")")
	retryFor := fs.Duration("retry-for", DefaultRetryFor, "keep trying this long after transport errors and 5xx answers")
	standby := fs.Duration("standby", 0, "with --from-cmdline, after reporting stay up this long asking for an install plan, and install when one comes (fast track: no second boot into the installer)")
	marker := fs.String("reported-marker", "", "print this line on stdout once the inventory is reported (before standing by)")
	if code, done := parseHostFlags(fs, args, stderr); done {
		return code
	}
	cfg := Config{Root: os.DirFS(*root), ReportURL: *report, Token: *token, RetryFor: *retryFor, Log: stderr}
	if *fromCmdline {
		b, err := readCmdline(*root)
		if err == nil {
			cfg.ReportURL, err = b.ReportURL()
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		if cfg.Token == "" {
			cfg.Token = b.Token
		}
		if b.State == StateDeprovisioning {
			cfg.WipeDir = strings.TrimSuffix(*root, "/") + "/dev"
		}
		if b.State == StateProvisioning {
			return runInstall(ctx, name, cfg, b, strings.TrimSuffix(*root, "/")+"/dev", stderr)
		}
		if b.State != StateDeprovisioning && *standby > 0 {
			cfg.StandbySeconds = int(standby.Seconds())
		}
	}
	if err := Run(ctx, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	if *marker != "" {
		fmt.Fprintln(stdout, *marker)
	}
	if cfg.StandbySeconds > 0 {
		b, _ := readCmdline(*root)
		base, err := b.BaseURL()
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		inv, err := Collect(cfg.Root)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		mac, _ := rackcloud.NormalizeMAC(b.MAC)
		in := &Install{Base: base, MAC: mac, Token: cfg.Token, DevDir: strings.TrimSuffix(*root, "/") + "/dev", Disks: inv.Disks, Report: cfg}
		fmt.Fprintf(stderr, "%s: standing by %s for an install plan\n", name, *standby)
		if err := in.Standby(ctx, *standby, time.Second); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
	}
	return 0
}

func readCmdline(root string) (Boot, error) {
	b, err := os.ReadFile(strings.TrimSuffix(root, "/") + "/proc/cmdline")
	if err != nil {
		return Boot{}, err
	}
	return ParseCmdline(string(b)), nil
}

// runInstall installs the host's image (the boot of a provisioning host).
func runInstall(ctx context.Context, name string, cfg Config, b Boot, devDir string, stderr io.Writer) int {
	inv, err := Collect(cfg.Root)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	base, err := b.BaseURL()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	mac, _ := rackcloud.NormalizeMAC(b.MAC)
	in := &Install{Base: base, MAC: mac, Token: cfg.Token, DevDir: devDir, Disks: inv.Disks, Report: cfg}
	if err := in.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

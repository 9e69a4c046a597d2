package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/qemu"
	"github.com/rackcloud/rackcloud/lab/rack"
)

func init() {
	register(command{name: "simrack", summary: "lab: run a simulated rack of servers with IPMI and Redfish BMCs ('simrack up')", run: runRack})
}

func runRack(ctx context.Context, args []string) error {
	if len(args) > 0 && wantsHelp(args[:1]) {
		fmt.Fprintln(stdout, "usage: rackcloud simrack up [flags]   (rackcloud simrack up --help for the flags)")
		return flag.ErrHelp
	}
	if len(args) == 0 || args[0] != "up" {
		return errUsage("rackcloud simrack up [flags]")
	}
	fs := newFlagSet("rackcloud simrack up", "", "Starts a simulated rack (QEMU servers with IPMI and Redfish BMCs) and waits.")
	var common commonFlags
	common.bind(fs)
	var cfg rack.Config
	fs.StringVar(&cfg.Name, "name", rack.DefaultName, "rack name (prefix of the server names)")
	fs.IntVar(&cfg.Nodes, "nodes", rack.DefaultNodes, "number of servers")
	fs.StringVar(&cfg.Dir, "dir", "/var/lib/rackcloud-lab/rack", "state directory (disks, consoles, BMC state); wiped per server at start")
	fs.StringVar(&cfg.User, "bmc-user", rack.DefaultUser, "BMC user name")
	fs.StringVar(&cfg.Password, "bmc-password", "", "BMC password (random when empty)")
	fs.BoolVar(&cfg.Redfish, "redfish", true, "give every server a Redfish BMC beside the IPMI one")
	fs.BoolVar(&cfg.Virtual, "virtual", false, "no QEMU: powering on only flips the state (BMC work without machines)")
	firmware := fs.String("firmware", "bios", "comma-separated firmware handed out in turn: bios, uefi")
	ns := fs.String("netns", "", "existing network namespace with bridge br0 for the servers' NICs (created when empty)")
	gw := fs.String("gateway", "10.89.0.1/24", "gateway of the namespace created when --netns is empty")
	jsonOut := fs.String("json", "", "also write the servers and their BMCs as JSON to this file")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	log, err := common.logger()
	if err != nil {
		return err
	}
	cfg.Logger = log
	for _, f := range strings.Split(*firmware, ",") {
		switch qemu.Firmware(strings.TrimSpace(f)) {
		case qemu.BIOS, qemu.UEFI:
			cfg.Firmware = append(cfg.Firmware, qemu.Firmware(strings.TrimSpace(f)))
		default:
			return fmt.Errorf("--firmware %q: want bios or uefi", f)
		}
	}
	if !cfg.Virtual {
		net, cleanup, err := rackNet(ctx, *ns, *gw, log)
		if err != nil {
			return err
		}
		defer cleanup()
		cfg.Net = net
	}
	r, err := rack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		log.Info("rack: stopping")
		if err := r.Stop(); err != nil {
			log.Error("rack: stop", "err", err)
		}
	}()
	r.Print(os.Stdout)
	if *jsonOut != "" {
		b, err := json.MarshalIndent(r.Describe(), "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o600); err != nil {
			return err
		}
	}
	fmt.Println("servers are powered off; Ctrl-C stops the rack")
	<-ctx.Done()
	return nil
}

// rackNet opens the named namespace, or creates one (deleted by cleanup).
func rackNet(ctx context.Context, name, gateway string, log *slog.Logger) (*netns.Net, func(), error) {
	if name != "" {
		if _, err := os.Stat(netns.Path(name)); err != nil {
			return nil, nil, fmt.Errorf("--netns %s: %w", name, err)
		}
		return &netns.Net{Name: name, Bridge: netns.DefaultBridge}, func() {}, nil
	}
	gw, err := netip.ParsePrefix(gateway)
	if err != nil {
		return nil, nil, fmt.Errorf("--gateway: %w", err)
	}
	name = fmt.Sprintf("rackcloud-rack-%d", os.Getpid())
	n, err := netns.New(ctx, name, gw)
	if err != nil {
		return nil, nil, err
	}
	log.Info("rack: created network namespace", "netns", name, "gateway", gw, "path", filepath.Clean(n.Path()))
	return n, func() {
		if err := n.Close(); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Error("rack: delete namespace", "err", err)
		}
	}, nil
}

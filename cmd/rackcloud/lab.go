package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab"
)

func init() {
	register(command{name: "lab", summary: "bring the whole system up on this machine (make run)", run: runLab})
}

func runLab(ctx context.Context, args []string) error {
	fs := newFlagSet("rackcloud lab", "", "Brings the whole system up on this machine (make run).")
	var common commonFlags
	common.bind(fs)
	c := lab.Config{CLI: os.Args[0]}
	fs.StringVar(&c.Dir, "dir", "/var/lib/rackcloud-lab", "state directory; PostgreSQL keeps its data here across runs (env RACKCLOUD_DIR)")
	fs.IntVar(&c.APIPort, "api-port", lab.DefaultAPIPort, "rackcloud API port on 127.0.0.1")
	fs.IntVar(&c.PostgresPort, "postgres-port", lab.DefaultPostgresPort, "PostgreSQL port on 127.0.0.1")
	fs.IntVar(&c.PrometheusPort, "prometheus-port", lab.DefaultPrometheusPort, "Prometheus port on 127.0.0.1")
	fs.IntVar(&c.AlertmanagerPort, "alertmanager-port", lab.DefaultAlertmanagerPort, "Alertmanager port on 127.0.0.1")
	fs.IntVar(&c.NodeExporterPort, "node-exporter-port", lab.DefaultNodeExporterPort, "node exporter port on 127.0.0.1")
	fs.IntVar(&c.IPMIPort, "ipmi-port", lab.DefaultIPMIPort, "node 1's IPMI BMC port on 127.0.0.1 (UDP); node i uses port+i-1; 0 picks free ports")
	fs.IntVar(&c.RedfishPort, "redfish-port", lab.DefaultRedfishPort, "node 1's Redfish BMC port on 127.0.0.1 (HTTPS); node i uses port+i-1; 0 picks free ports")
	fs.IntVar(&c.Nodes, "nodes", lab.DefaultNodes, "simulated servers in the rack (QEMU with IPMI and Redfish BMCs); 0 for none")
	fs.BoolVar(&c.Onboard, "onboard", true, "power the rack's servers on into PXE through their BMCs at start, so that they are discovered, inspected and made available by themselves")
	roles := fs.String("roles", "kvm,docker,bm,docker", "roles the rack's servers are installed with, in turn, by enroll rules the lab writes (the host images are built once and cached); empty installs nothing")
	demo := fs.Bool("demo", true, "once the rack is ready, run the demo project's guests: one container on the Docker host, one VM on the KVM host")
	fs.StringVar(&c.Netns, "netns", lab.DefaultNetns, "network namespace of the provisioning network")
	gw := fs.String("gateway", lab.DefaultGateway, "bridge address of the provisioning network")
	var err error
	if err = parse(fs, args); err != nil {
		return err
	}
	if c.Gateway, err = netip.ParsePrefix(*gw); err != nil {
		return fmt.Errorf("--gateway: %w", err)
	}
	for _, r := range strings.FieldsFunc(*roles, func(r rune) bool { return r == ',' || r == ' ' }) {
		role := rackcloud.HostRole(r)
		if !slices.Contains(rackcloud.HostRoles(), role) {
			return fmt.Errorf("--roles: %q: want bm, kvm or docker", r)
		}
		c.Roles = append(c.Roles, role)
	}
	log, err := common.logger()
	if err != nil {
		return err
	}
	l, err := lab.Up(ctx, c, log)
	if err != nil {
		return err
	}
	defer l.Down()
	l.Print(os.Stdout)
	if c.Onboard && len(c.Roles) > 0 {
		go func() {
			l.Follow(ctx, os.Stdout)
			// With the rack ready, the demo project runs its first guests.
			if ctx.Err() == nil && *demo {
				if err := l.Demo(ctx, os.Stdout); err != nil {
					log.Warn("lab: demo guests", "err", err)
				}
			}
		}()
	}
	<-ctx.Done()
	log.Info("lab: stopping")
	return nil
}

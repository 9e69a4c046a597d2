//go:build tools

package rackcloud

import (
	_ "github.com/bmc-toolbox/bmclib/v2"
	_ "github.com/danielgtaylor/huma/v2"
	_ "github.com/digitalocean/go-libvirt"
	_ "github.com/insomniacslk/dhcp/dhcpv4"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/moby/moby/client"
	_ "github.com/pin/tftp/v3"
	_ "github.com/prometheus/alertmanager/api/v2/client"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/riverqueue/river"
	_ "github.com/riverqueue/river/riverdriver/riverpgxv5"
	_ "github.com/peterbourgon/ff/v4"
	_ "gopkg.in/yaml.v3"
	_ "github.com/stretchr/testify/require"
	_ "github.com/google/go-cmp/cmp"
	_ "golang.org/x/sync/errgroup"
)

//go:build tools

// This file pins the project's chosen dependencies in go.mod before every
// one of them is imported by real code.
package rackcloud

import (
	_ "github.com/bmc-toolbox/bmclib/v2"
	_ "github.com/danielgtaylor/huma/v2"
	_ "github.com/digitalocean/go-libvirt"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/insomniacslk/dhcp/dhcpv4"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/moby/moby/client"
	_ "github.com/peterbourgon/ff/v3"
	_ "github.com/pin/tftp/v3"
	_ "github.com/prometheus/alertmanager/api/v2/client"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/riverqueue/river"
	_ "github.com/riverqueue/river/riverdriver/riverpgxv5"
	_ "github.com/stretchr/testify/require"
	_ "golang.org/x/sync/errgroup"
	_ "gopkg.in/yaml.v3"
)

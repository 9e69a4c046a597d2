package bmc

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/common"
	"github.com/stmcginnis/gofish/redfish"

	"github.com/rackcloud/rackcloud"
)

// bmclib's gofish provider exposes no sensors, little identity and no NICs
// of their own (its Inventory reads MACs only through NetworkAdapters and
// NetworkPorts, and needs the UpdateService and known resource IDs), so
// these use gofish directly: one short connection per call, bound to the
// call's context, logged out at the end.

func (c *Client) gofish(ctx context.Context, cl *call) (*gofish.APIClient, error) {
	c.mu.Lock()
	ep, host, port := c.ep, c.host, c.port
	c.mu.Unlock()
	cl.via, cl.provider = "direct", "gofish"
	return gofish.ConnectContext(ctx, gofish.ClientConfig{
		Endpoint:   "https://" + net.JoinHostPort(host, strconv.Itoa(port)),
		Username:   ep.Username,
		Password:   ep.Password.Reveal(),
		HTTPClient: c.httpClient(),
		BasicAuth:  c.m.cfg.RedfishBasicAuth,
	})
}

func (c *Client) redfishSensors(ctx context.Context, cl *call) ([]Sensor, error) {
	api, err := c.gofish(ctx, cl)
	if err != nil {
		return nil, err
	}
	defer api.Logout()
	chassis, err := api.Service.Chassis()
	if err != nil {
		return nil, err
	}
	var ss []Sensor
	for _, ch := range chassis {
		th, err := ch.Thermal()
		if err != nil {
			return nil, err
		}
		if th != nil {
			for _, t := range th.Temperatures {
				ss = append(ss, Sensor{Name: t.Name, Kind: SensorTemperature, Value: float64(t.ReadingCelsius), Unit: "C"})
			}
			for _, f := range th.Fans {
				if f.ReadingUnits != "" && f.ReadingUnits != redfish.RPMReadingUnits {
					continue // percent of maximum: not comparable
				}
				ss = append(ss, Sensor{Name: f.Name, Kind: SensorFan, Value: float64(f.Reading), Unit: "RPM"})
			}
		}
		pw, err := ch.Power()
		if err != nil {
			return nil, err
		}
		if pw != nil {
			n := len(ss)
			for _, p := range pw.PowerControl {
				ss = append(ss, Sensor{Name: p.Name, Kind: SensorPower, Value: float64(p.PowerConsumedWatts), Unit: "W"})
			}
			if len(ss) == n { // no PowerControl: the supplies' output
				for _, p := range pw.PowerSupplies {
					ss = append(ss, Sensor{Name: p.Name, Kind: SensorPower, Value: float64(p.LastPowerOutputWatts), Unit: "W"})
				}
			}
		}
	}
	return ss, nil
}

func (c *Client) redfishIdentity(ctx context.Context, cl *call) (Identity, error) {
	api, err := c.gofish(ctx, cl)
	if err != nil {
		return Identity{}, err
	}
	defer api.Logout()
	ms, err := api.Service.Managers()
	if err != nil {
		return Identity{}, err
	}
	if len(ms) == 0 {
		return Identity{}, fmt.Errorf("%w: no managers", ErrUnsupported)
	}
	m := ms[0]
	for _, x := range ms {
		if x.ManagerType == redfish.BMCManagerType {
			m = x
			break
		}
	}
	return Identity{
		Protocol:        rackcloud.BMCRedfish,
		Manufacturer:    m.Manufacturer,
		Model:           m.Model,
		Firmware:        m.FirmwareVersion,
		GUID:            m.UUID,
		ProtocolVersion: api.Service.RedfishVersion,
	}, nil
}

func (c *Client) redfishNICs(ctx context.Context, cl *call) ([]NIC, error) {
	api, err := c.gofish(ctx, cl)
	if err != nil {
		return nil, err
	}
	defer api.Logout()
	systems, err := api.Service.Systems()
	if err != nil {
		return nil, err
	}
	var nics []NIC
	seen := map[string]bool{}
	for _, sys := range systems {
		eths, err := sys.EthernetInterfaces()
		if err != nil {
			return nil, err
		}
		for _, e := range eths {
			nic, ok, err := nicOf(redfishNIC{
				ID: e.ID, Name: e.Name, MACAddress: e.MACAddress, PermanentMACAddress: e.PermanentMACAddress,
				SpeedMbps: e.SpeedMbps, InterfaceEnabled: e.InterfaceEnabled, StatusEnabled: e.Status.State == common.EnabledState,
			})
			if err != nil {
				return nil, err
			}
			if ok && !seen[nic.MAC] {
				seen[nic.MAC] = true
				nics = append(nics, nic)
			}
		}
	}
	// gofish fetches a collection's members concurrently: give them an
	// order that does not depend on which answered first.
	slices.SortFunc(nics, func(a, b NIC) int { return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.MAC, b.MAC)) })
	return nics, nil
}

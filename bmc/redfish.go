package bmc

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/redfish"

	"github.com/rackcloud/rackcloud"
)

// bmclib's gofish provider exposes no sensors and little identity, so these
// use gofish directly: one short connection per call, bound to the call's
// context, logged out at the end.

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

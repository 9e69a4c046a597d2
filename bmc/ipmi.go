package bmc

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc/ipmilan"
)

// bmclib has no sensors or device identity. Sensors are read through
// ipmilan's session when the client has one; otherwise these run ipmitool
// directly with the same arguments bmclib uses: lanplus, the
// configured cipher suite, the password in the environment (never on the
// command line, where ps would show it).

func (c *Client) ipmitool(ctx context.Context, cl *call, args ...string) (string, error) {
	c.mu.Lock()
	ep, host, port := c.ep, c.host, c.port
	c.mu.Unlock()
	cl.via, cl.provider = "direct", "ipmitool"
	a := []string{"-I", "lanplus", "-H", host, "-p", strconv.Itoa(port), "-U", ep.Username, "-E",
		"-C", c.m.cfg.CipherSuite, "-N", "2", "-R", "3"}
	cmd := exec.CommandContext(ctx, c.m.cfg.IpmitoolPath, append(a, args...)...)
	cmd.Env = []string{"IPMITOOL_PASSWORD=" + ep.Password.Reveal()}
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("ipmitool %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func (c *Client) ipmiSensors(ctx context.Context, cl *call) ([]Sensor, error) {
	c.mu.Lock()
	native := c.native
	c.mu.Unlock()
	if native != nil {
		cl.via, cl.provider = "direct", ipmilan.ProviderName
		rs, err := native.Sensors(ctx)
		if err != nil {
			return nil, err
		}
		ss := make([]Sensor, 0, len(rs))
		for _, r := range rs {
			ss = append(ss, Sensor{Name: r.Name, Kind: SensorKind(r.Kind), Value: r.Value, Unit: r.Unit})
		}
		return ss, nil
	}
	out, err := c.ipmitool(ctx, cl, "sdr", "elist", "full")
	if err != nil {
		return nil, err
	}
	return parseSDR(out), nil
}

// parseSDR reads `ipmitool sdr elist full`:
//
//	CPU Temp         | 01h | ok  |  3.1 | 42 degrees C
//	Fan1             | 02h | ok  | 29.1 | 4800 RPM
//
// keeping temperatures, fans and power readings; sensors without a
// reading are skipped. It is pure and fuzzed.
func parseSDR(out string) []Sensor {
	var ss []Sensor
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "|")
		if len(f) != 5 {
			continue
		}
		name := strings.TrimSpace(f[0])
		v, unit, ok := strings.Cut(strings.TrimSpace(f[4]), " ")
		if !ok || name == "" {
			continue
		}
		val, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		s := Sensor{Name: name, Value: val}
		switch strings.ToLower(strings.TrimSpace(unit)) {
		case "degrees c":
			s.Kind, s.Unit = SensorTemperature, "C"
		case "rpm":
			s.Kind, s.Unit = SensorFan, "RPM"
		case "watts":
			s.Kind, s.Unit = SensorPower, "W"
		default:
			continue
		}
		ss = append(ss, s)
	}
	return ss
}

func (c *Client) ipmiIdentity(ctx context.Context, cl *call) (Identity, error) {
	out, err := c.ipmitool(ctx, cl, "mc", "info")
	if err != nil {
		return Identity{}, err
	}
	kv := parseColonKV(out)
	id := Identity{
		Protocol:        rackcloud.BMCIPMI,
		Manufacturer:    kv["Manufacturer Name"],
		Model:           kv["Product Name"],
		Firmware:        kv["Firmware Revision"],
		ProtocolVersion: kv["IPMI Version"],
	}
	if id.Manufacturer == "" || strings.HasPrefix(id.Manufacturer, "Unknown") {
		id.Manufacturer = "manufacturer " + kv["Manufacturer ID"]
	}
	if id.Model == "" || strings.HasPrefix(id.Model, "Unknown") {
		id.Model = "product " + kv["Product ID"]
	}
	if id.Firmware == "" {
		return Identity{}, fmt.Errorf("%w: mc info has no firmware revision", ErrBadResponse)
	}
	if out, err := c.ipmitool(ctx, cl, "mc", "guid"); err == nil {
		id.GUID = parseColonKV(out)["System GUID"]
	}
	return id, nil
}

// parseColonKV reads "Key : Value" lines (the first colon splits).
func parseColonKV(out string) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := kv[k]; !dup && k != "" {
			kv[k] = strings.TrimSpace(v)
		}
	}
	return kv
}

// Sensors reads the BMC's temperature, fan and power sensors. A BMC
// without any gives ErrUnsupported.
func (c *Client) Sensors(ctx context.Context) ([]Sensor, error) {
	v, err := c.doDirect(ctx, "sensors", func(ctx context.Context, cl *call) (any, error) {
		var ss []Sensor
		var err error
		if c.Endpoint().Protocol == rackcloud.BMCRedfish {
			ss, err = c.redfishSensors(ctx, cl)
		} else {
			ss, err = c.ipmiSensors(ctx, cl)
		}
		if err == nil && len(ss) == 0 {
			err = fmt.Errorf("%w: no temperature, fan or power sensors", ErrUnsupported)
		}
		return ss, err
	})
	if err != nil {
		return nil, err
	}
	return v.([]Sensor), nil
}

// Identity reads who the BMC is: manufacturer, model, firmware, GUID.
func (c *Client) Identity(ctx context.Context) (Identity, error) {
	v, err := c.doDirect(ctx, "identity", func(ctx context.Context, cl *call) (any, error) {
		if c.Endpoint().Protocol == rackcloud.BMCRedfish {
			return c.redfishIdentity(ctx, cl)
		}
		return c.ipmiIdentity(ctx, cl)
	})
	if err != nil {
		return Identity{}, err
	}
	return v.(Identity), nil
}

package ipmilan

import (
	"context"
	"fmt"
	"strings"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Kinds of Reading (the same words as package bmc's SensorKind).
const (
	KindTemperature = "temperature" // degrees Celsius
	KindFan         = "fan"         // RPM
	KindPower       = "power"       // watts
)

// Reading is one sensor's value.
type Reading struct {
	Name  string
	Kind  string  // KindTemperature, KindFan or KindPower
	Value float64 // after the SDR's linear conversion
	Unit  string  // "C", "RPM" or "W"
}

// maxSDRs bounds a walk of the SDR repository, whose records are linked by
// "next record ID": a BMC whose links loop must not keep us forever.
const maxSDRs = 1024

// Sensors reads the temperature, fan and power sensors: the SDR repository
// once per session (Get SDR), then one Get Sensor Reading per sensor,
// converted with the record's linear factors. Sensors without a reading
// (not present, scanning disabled, reading unavailable) are left out.
func (c *Conn) Sensors(ctx context.Context) ([]Reading, error) {
	var out []Reading
	err := c.do(ctx, true, func(ctx context.Context, cl *client.Client) error {
		c.mu.Lock()
		ss := c.sensors
		c.mu.Unlock()
		if ss == nil {
			var err error
			if ss, err = readSDRs(ctx, cl); err != nil {
				return err
			}
			c.mu.Lock()
			if c.cl == cl {
				c.sensors = ss
			}
			c.mu.Unlock()
		}
		out = out[:0]
		for _, s := range ss {
			rctx := client.WithCommandContext(ctx, (&client.CommandContext{}).
				WithResponderAddr(uint8(s.GeneratorID.OwnerID())).WithResponderLUN(uint8(s.GeneratorID.LUN())))
			res, err := cl.GetSensorReading(rctx, s.Number)
			if err != nil {
				if answered(err) {
					continue // this sensor is not there now
				}
				return err
			}
			if res == nil || res.SensorScanningDisabled || res.ReadingUnavailable {
				continue
			}
			r, ok := reading(s, res.Reading)
			if ok {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readSDRs walks the SDR repository and keeps the analog threshold
// sensors whose unit is one of ours.
func readSDRs(ctx context.Context, cl *client.Client) ([]*types.Sensor, error) {
	var out []*types.Sensor
	seen := map[uint16]bool{}
	id := uint16(0)
	for i := 0; ; i++ {
		if i == maxSDRs || seen[id] {
			return nil, fmt.Errorf("%w: the SDR repository's records loop (record %#04x)", ErrBadResponse, id)
		}
		seen[id] = true
		sdr, err := cl.GetSDREnhanced(ctx, id)
		if err != nil {
			return nil, err
		}
		if sdr == nil || sdr.RecordHeader == nil {
			return nil, fmt.Errorf("%w: SDR record %#04x has no header", ErrBadResponse, id)
		}
		if s := sensorOf(sdr); s != nil {
			out = append(out, s)
		}
		if sdr.NextRecordID == 0xffff {
			return out, nil
		}
		id = sdr.NextRecordID
	}
}

// sensorOf is the sensor an SDR describes, or nil when it is not an analog
// threshold sensor of temperature, fan speed or power. It is pure.
func sensorOf(sdr *types.SDR) *types.Sensor {
	s := &types.Sensor{SDRRecordType: sdr.RecordHeader.RecordType, HasAnalogReading: sdr.HasAnalogReading()}
	switch {
	case sdr.RecordHeader.RecordType == types.SDRRecordTypeFullSensor && sdr.Full != nil:
		f := sdr.Full
		s.GeneratorID, s.Number, s.Name = f.GeneratorID, uint8(f.SensorNumber), strings.TrimSpace(string(f.IDStringBytes))
		s.SensorUnit, s.SensorType, s.EventReadingType = f.SensorUnit, f.SensorType, f.SensorEventReadingType
		s.Threshold.LinearizationFunc = f.LinearizationFunc
		s.Threshold.ReadingFactors = f.ReadingFactors
	case sdr.RecordHeader.RecordType == types.SDRRecordTypeCompactSensor && sdr.Compact != nil:
		// Compact records have no conversion factors: readings are raw.
		f := sdr.Compact
		s.GeneratorID, s.Number, s.Name = f.GeneratorID, uint8(f.SensorNumber), strings.TrimSpace(string(f.IDStringBytes))
		s.SensorUnit, s.SensorType, s.EventReadingType = f.SensorUnit, f.SensorType, f.SensorEventReadingType
	default:
		return nil
	}
	if !s.EventReadingType.IsThreshold() || !s.SensorUnit.IsAnalog() || s.Threshold.LinearizationFunc.IsNonLinear() {
		return nil
	}
	if _, _, ok := kindOfUnit(s.SensorUnit.BaseUnit); !ok {
		return nil
	}
	return s
}

// kindOfUnit maps an IPMI base unit to our kinds.
func kindOfUnit(u types.SensorUnitType) (kind, unit string, ok bool) {
	switch u {
	case types.SensorUnitType_DegreesC:
		return KindTemperature, "C", true
	case types.SensorUnitType_RPM:
		return KindFan, "RPM", true
	case types.SensorUnitType_Watts:
		return KindPower, "W", true
	}
	return "", "", false
}

// reading converts a raw reading of s. It is pure.
func reading(s *types.Sensor, raw uint8) (Reading, bool) {
	kind, unit, ok := kindOfUnit(s.SensorUnit.BaseUnit)
	if !ok || s.Name == "" {
		return Reading{}, false
	}
	v := float64(raw)
	if s.SDRRecordType == types.SDRRecordTypeFullSensor {
		v = s.ConvertReading(raw)
	}
	return Reading{Name: s.Name, Kind: kind, Value: v, Unit: unit}, true
}

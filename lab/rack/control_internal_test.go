package rack

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/qemu"
)

func virtualNode(t *testing.T) *Node {
	t.Helper()
	r := &Rack{
		cfg: Config{Name: "t", Dir: t.TempDir(), Virtual: true, Sizes: DefaultSizes, Firmware: []qemu.Firmware{qemu.BIOS}},
		log: slog.New(slog.DiscardHandler),
	}
	n, err := newNode(r, 1, identity{ID: "0102", Seed: "0a0b0c0d0e", Password: "pw"})
	require.NoError(t, err)
	r.Nodes = []*Node{n}
	return n
}

// TestChassisProtocol covers the chassis_control requests ipmi_sim sends,
// and refuses malformed ones without changing anything.
func TestChassisProtocol(t *testing.T) {
	n := virtualNode(t)
	steps := []struct {
		op, want string
		args     []string
		wantErr  bool
		power    rackcloud.PowerState
		boot     BootDevice
	}{
		{op: "get", args: []string{"power", "boot"}, want: "power:0\nboot:none\n", power: rackcloud.PowerOff, boot: BootNone},
		{op: "set", args: []string{"boot", "pxe"}, power: rackcloud.PowerOff, boot: BootPXE},
		{op: "get", args: []string{"boot", "identify"}, want: "boot:pxe\nidentify:0\n", power: rackcloud.PowerOff, boot: BootPXE},
		{op: "set", args: []string{"power", "1"}, power: rackcloud.PowerOn, boot: BootNone},
		{op: "set", args: []string{"boot", "default"}, power: rackcloud.PowerOn, boot: BootDisk},
		{op: "get", args: []string{"power", "boot"}, want: "power:1\nboot:default\n", power: rackcloud.PowerOn, boot: BootDisk},
		{op: "set", args: []string{"identify", "15", "0"}, power: rackcloud.PowerOn, boot: BootDisk},
		{op: "set", args: []string{"power", "2"}, wantErr: true, power: rackcloud.PowerOn, boot: BootDisk},
		{op: "set", args: []string{"power"}, wantErr: true, power: rackcloud.PowerOn, boot: BootDisk},
		{op: "set", args: []string{"boot", "floppy"}, wantErr: true, power: rackcloud.PowerOn, boot: BootDisk},
		{op: "set", args: []string{"warp", "9"}, wantErr: true, power: rackcloud.PowerOn, boot: BootDisk},
		{op: "frob", wantErr: true, power: rackcloud.PowerOn, boot: BootDisk},
		{op: "set", args: []string{"shutdown", "1"}, power: rackcloud.PowerOff, boot: BootDisk},
	}
	for i, s := range steps {
		out, err := n.chassis(s.op, s.args)
		if s.wantErr {
			require.Error(t, err, "step %d", i)
		} else {
			require.NoError(t, err, "step %d", i)
			require.Equal(t, s.want, out, "step %d", i)
		}
		require.Equal(t, s.power, n.Power(), "step %d", i)
		require.Equal(t, s.boot, n.BootOverride().Device, "step %d", i)
	}
}

// TestSensorRecords checks the SDR encoding ipmi_sim is given.
func TestSensorRecords(t *testing.T) {
	for _, s := range sensorSDRs {
		b := s.bytes()
		require.Equal(t, byte(0x51), b[2], "SDR version")
		require.Equal(t, byte(0x01), b[3], "full sensor record")
		require.Equal(t, len(b)-5, int(b[4]), "record length")
		require.Equal(t, s.num, b[7])
		require.Equal(t, byte(0xc0|len(s.name)), b[47])
		require.Equal(t, s.name, string(b[48:]))
	}
}

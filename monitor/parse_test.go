package monitor_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/monitor"
)

func TestParseBootServices(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		in   string
		want []monitor.BootService
		bad  bool
	}{
		"empty": {in: ""},
		"two": {in: "rack1=10.88.0.1:8080@lab/z1/r1, rack2=[fd88::1]:8080", want: []monitor.BootService{
			{Name: "rack1", Address: "10.88.0.1:8080", Region: "lab", Zone: "z1", Rack: "r1"},
			{Name: "rack2", Address: "[fd88::1]:8080"}}},
		"no port":      {in: "rack1=10.88.0.1", bad: true},
		"no name":      {in: "=10.88.0.1:8080", bad: true},
		"short where":  {in: "rack1=10.88.0.1:8080@lab/z1", bad: true},
		"no separator": {in: "10.88.0.1:8080", bad: true},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := monitor.ParseBootServices(c.in)
			if c.bad {
				require.ErrorIs(t, err, rackcloud.ErrInvalid)
				return
			}
			require.NoError(t, err)
			require.Empty(t, cmp.Diff(c.want, got))
		})
	}
}

func FuzzParseBootServices(f *testing.F) {
	f.Add("rack1=10.88.0.1:8080@lab/z1/r1,rack2=[fd88::1]:8080")
	f.Fuzz(func(t *testing.T, s string) {
		bs, err := monitor.ParseBootServices(s)
		for _, b := range bs {
			if err == nil && (b.Name == "" || b.Address == "") {
				t.Fatalf("%q: empty name or address in %+v", s, b)
			}
		}
	})
}

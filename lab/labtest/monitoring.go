package labtest

import (
	"context"
	"testing"

	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/lab/monlab"
)

// Alertmanager starts the lab's monitoring stack (no node exporter) for
// the test, stopped when it ends, and returns it with rackcloud's client
// of its Alertmanager.
func Alertmanager(t testing.TB) (*monlab.Stack, *alerts.AM) {
	t.Helper()
	Need(t, "prometheus", "prometheus-alertmanager")
	s, err := monlab.Start(context.Background(), monlab.Config{Dir: t.TempDir(), NoNodeExporter: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	am, err := alerts.NewAM([]string{s.AlertmanagerURL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, am
}

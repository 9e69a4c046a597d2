package pxe

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
)

// TestInventoryReport: POST /boot/{mac}/inventory takes the current
// boot's token only (the callback's check: refusals counted by the same
// reasons), a JSON object of at most maxInventoryBody bytes, and records
// it as an inventory event whose Data is the inventory, with its strings
// cleaned, delivered to the API through the event queue.
func TestInventoryReport(t *testing.T) {
	const mac = "52:54:00:aa:08:01"
	api := startFakeAPI(t)
	client := newClient(t, api, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var logs labtest.LogBuffer
	s, err := New(unitConfig(t), Deps{Profiles: &StaticProfiles{}, Events: client, Registerer: prometheus.NewRegistry(),
		Logger: slogTo(&logs)})
	require.NoError(t, err)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	url := srv.URL + "/boot/" + mac + "/inventory"

	first := bootToken(t, srv.URL, mac)
	current := bootToken(t, srv.URL, mac)
	inv := rackcloud.Inventory{CPUs: 2, MemoryMiB: 459, CPUModel: "QEMU Virtual CPU\u001b[2J", Firmware: "bios",
		Disks: []rackcloud.InventoryDisk{{Name: "vda", SizeBytes: 64 << 20}},
		NICs:  []rackcloud.InventoryNIC{{Name: "eth0", MAC: mac}}}
	body, err := json.Marshal(inv)
	require.NoError(t, err)

	for _, r := range []struct{ token, reason string }{
		{"", tokenMissing},
		{strings.Repeat("A", len(current)), tokenWrong},
		{first, tokenReplayed},
		{bootTokenOtherMAC(t, srv.URL), tokenWrong},
	} {
		code, answer := postCallback(t, url, r.token, string(body))
		require.Equal(t, http.StatusForbidden, code, r.reason)
		require.Contains(t, answer, "inventory refused: "+r.reason)
	}
	require.Equal(t, 1.0, counterValue(s.m.callbacksRefused.WithLabelValues(tokenMissing)))
	require.Equal(t, 2.0, counterValue(s.m.callbacksRefused.WithLabelValues(tokenWrong)))
	require.Equal(t, 1.0, counterValue(s.m.callbacksRefused.WithLabelValues(tokenReplayed)))
	require.Contains(t, logs.String(), "inventory refused")

	for name, b := range map[string]string{
		"not JSON":    `{"cpus":`,
		"an array":    `[{"cpus":2}]`,
		"a string":    `"cpus"`,
		"empty":       ``,
		"two objects": `{} {}`,
	} {
		code, _ := postCallback(t, url, current, b)
		require.Equal(t, http.StatusBadRequest, code, name)
	}
	code, _ := postCallback(t, url, current, `{"x":"`+strings.Repeat("a", maxInventoryBody)+`"}`)
	require.Equal(t, http.StatusRequestEntityTooLarge, code)
	for _, e := range s.Timeline(mac) {
		require.NotEqual(t, EventInventory, e.Kind, "a refused report records nothing")
	}

	code, answer := postCallback(t, url, current, string(body))
	require.Equal(t, http.StatusAccepted, code, answer)
	evs := s.Timeline(mac)
	got := evs[len(evs)-1]
	require.Equal(t, EventInventory, got.Kind)
	var back rackcloud.Inventory
	require.NoError(t, json.Unmarshal(got.Data, &back))
	want := inv
	want.CPUModel = "QEMU Virtual CPU [2J"
	require.Equal(t, want, back, "the inventory, its text cleaned")

	pollUntil(t, 10*time.Second, "the inventory event reaches the API", func() bool {
		return containsKind(api.kinds(mac), EventInventory)
	})
	for _, e := range api.received() {
		if e.Kind == EventInventory {
			require.JSONEq(t, string(got.Data), string(e.Data))
		}
	}
	all, err := json.Marshal(api.received())
	require.NoError(t, err)
	require.NotContains(t, string(all), current)
	require.NotContains(t, logs.String(), current)
}

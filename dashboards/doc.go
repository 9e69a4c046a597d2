// Package dashboards holds the Grafana dashboards (fleet, provisioning,
// capacity, host, guest, control plane) and their provisioning files, with
// tests that run every panel's query against a real Prometheus. The Grafana
// data-source plugin (grafana-plugin-sdk-go) lives in its own Go module.
package dashboards

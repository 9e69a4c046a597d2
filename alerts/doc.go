// Package alerts turns the alert rules of the API into Prometheus rule
// files (checked by promtool), reloads Prometheus, configures Alertmanager
// routing, and receives Alertmanager's webhook so that the availability
// controller can fence a dead host and restart its guests elsewhere
// (DESIGN.md section 8).
package alerts

// Package monitor exports what rackcloud knows to Prometheus: host, guest,
// BMC and control-plane metrics, and the HTTP service discovery that lets
// Prometheus find every host and guest with its region, zone, rack, role and
// project labels (DESIGN.md section 8).
package monitor

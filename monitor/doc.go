// Package monitor exports what rackcloud knows to Prometheus: host, guest,
// BMC and control-plane metrics, and the HTTP service discovery that lets
// Prometheus find every host and guest with its region, zone, rack, role and
// project labels (DESIGN.md section 8).
//
// Everything is answered from memory: an Inventory keeps one snapshot of
// every host and guest (store.MonitorInventory), reloaded in the
// background when it is older than its max age; SD (GET
// /v1/sd/{hosts,bmcs,guests,boot}), the Fleet and HostInfo collectors read it, and
// GuestStats serves the drivers' guest stats (vmctl.StatsReader) from a
// cache polled once per host per interval while someone scrapes. No
// request or scrape queries per host, and none waits for a host.
package monitor

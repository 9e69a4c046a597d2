// Package pxe is rackcloud's boot path: the service that network-boots
// servers on a provisioning network. It runs DHCP (a full server for an
// isolated network, or a proxyDHCP beside the site's DHCP server), TFTP for
// the iPXE binaries, HTTP for iPXE scripts, kernels, initrds and images,
// and IPv6 router advertisements, all from one Service with Start and Stop
// (`rackcloud boot` runs it; the server can embed it).
//
// # Boot flow
//
// DHCP tells clients apart with Classify (options 60, 77, 93, 175): BIOS
// PXE firmware gets Config.BIOSBootFile (undionly.kpxe) and UEFI PXE
// firmware Config.UEFIBootFile (snponly.efi) over TFTP, UEFI HTTP boot gets
// the same binary as http://server/ipxe/FILE, and iPXE gets the URL of its
// script, http://server/boot/{mac}.ipxe, with iPXE's no-pxedhcp setting so
// that it does not wait for ProxyDHCP offers. The script depends on the
// host's lifecycle state (ActionFor): discovered, inspecting and available
// hosts, and unknown MACs when Config.AutoDiscovery is on, boot the
// inspection image; provisioning hosts boot the kernel of their profile
// (the installer); ready, draining, maintenance and failed hosts leave iPXE
// to boot their local disk. Every netboot kernel gets rackcloud.mac,
// rackcloud.callback and rackcloud.state on its command line; the booted
// image POSTs JSON to the callback URL.
//
// Every DHCP, TFTP and HTTP step is an Event recorded per MAC (see
// Service.Timeline and GET /boot/{mac}/events) and counted in the
// rackcloud_boot_* metrics.
//
// # Control plane wire format
//
// The service learns about hosts through a ProfileSource. APIClient is the
// HTTP implementation a boot service running near the hosts uses; the API
// serves it:
//
//	GET {api}/v1/boot/profiles/{mac}       (mac: lower-case, colons)
//	Authorization: Bearer {token}          (when configured)
//
//	200 application/json: a Profile
//	  {"mac": "52:54:00:aa:01:01", "host_id": "…", "hostname": "node1",
//	   "state": "provisioning", "state_reason": "",
//	   "boot": {"kernel": "install/vmlinuz", "initrd": "install/initrd.img",
//	            "cmdline": "console=ttyS0", "script": ""},
//	   "ipv4": "10.88.0.21", "version": 7}
//	404: the MAC is unknown (the host may be discovered)
//	5xx or no answer: the control plane is unavailable
//
// boot.kernel and boot.initrd are paths under the boot service's /files/
// or absolute http(s) URLs; boot.script, when set, is a text/template iPXE
// script rendered with ScriptData; ipv4 is an optional DHCP reservation.
//
// Boot events go the other way, in order, in batches of up to 500:
//
//	POST {api}/v1/boot/events
//	Content-Type: application/json
//	[{"time": "2026-01-02T03:04:05.678Z", "mac": "52:54:00:aa:01:01",
//	  "kind": "dhcp.ack", "client": "ipxe", "ip": "10.88.0.21",
//	  "file": "http://10.88.0.1:8080/boot/52:54:00:aa:01:01.ipxe",
//	  "state": "provisioning"}, …]
//	2xx: accepted; 5xx or no answer: retried later; other 4xx: dropped
//
// An unknown MAC's first dhcp.discover event is how the control plane
// learns about a newly racked server.
//
// # Availability
//
// The boot path favours availability: APIClient caches every profile it
// reads in a file, answers from it while the API is unreachable (known
// hosts keep booting what they booted; unknown hosts get the discovery
// image), probes the API every few seconds, and then refreshes the cache
// and sends the events it queued meanwhile. Events queued while the API is
// down are also spooled to a file beside the cache (every probe and at
// stop), so that a boot service restarted during the outage still sends
// them; a kill -9 loses at most the events of the last probe interval.
//
// # Leases and files
//
// In full mode leases are kept in Config.StateDir/leases.json (rewritten
// atomically soon after each change and at Stop); a corrupt file stops
// Start with an error and is left for the operator. TFTP is read-only and
// serves Config.TFTPRoot through an os.Root, so neither ".." nor symlinks
// escape it; blksize and tsize are negotiated. HTTP serves
// Config.FilesDir under /files/ with Range requests and the SHA-256 of
// each file in Repr-Digest, X-Checksum-Sha256 and ETag (and GET
// /files/{path}.sha256).
//
// # Network namespaces
//
// With Config.Netns set, every socket is opened inside that namespace
// while the process (and its calls to the API) stays where it is: the lab
// and the tests run the service on a bridge inside a namespace.
package pxe

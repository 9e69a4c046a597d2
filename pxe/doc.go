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
// rackcloud.callback, rackcloud.state and rackcloud.token on its command
// line; the booted image POSTs JSON to the callback URL.
//
// # Callback tokens
//
// Every netboot script rendered mints a new token for its MAC (32 random
// bytes, base64url), in the service itself, so that it works while the
// control plane is down:
//
//	kernel ... rackcloud.mac=52:54:00:aa:01:01 rackcloud.callback=http://10.88.0.1:8080/boot/52:54:00:aa:01:01/callback rackcloud.state=discovered rackcloud.token=TOKEN
//
//	POST /boot/{mac}/callback
//	Authorization: Bearer TOKEN
//	Content-Type: application/json
//	{"mac": "…", "ip": "…", "cmdline": "… rackcloud.token=REDACTED …"}
//
//	204: recorded as a callback event
//	403 (text/plain, "callback refused: missing|wrong|replayed boot token"):
//	     no token, a wrong one, or the token of an earlier boot of that MAC;
//	     nothing is recorded, rackcloud_boot_callbacks_refused_total{reason}
//	     counts it and a warning is logged (at most 10 lines a minute)
//
// The inspection agent (package agent, /bin/rackcloud-agent in the
// inspection image) reports the machine's inventory the same way, with
// the same token, to the URL it derives from rackcloud.callback:
//
//	POST /boot/{mac}/inventory
//	Authorization: Bearer TOKEN
//	Content-Type: application/json
//	{"cpu_model": "…", "cpus": 2, "memory_mib": 459,
//	 "disks": [{"name": "vda", "size_bytes": 67108864, "rotational": true}],
//	 "nics": [{"name": "eth0", "mac": "52:54:00:aa:01:01"}],
//	 "vendor": "QEMU", "product": "…", "firmware": "bios"}
//
//	202: recorded as an inventory event, Data the body (a
//	     rackcloud.Inventory, its strings cleaned), and queued to the
//	     control plane like every event
//	400: the body is not one JSON object
//	403: as for the callback (same token check, same counter and log)
//	413: the body is over 256 KiB
//
// The agent sends it again after a transport error or a 5xx, for a
// bounded time; it gives up at once on a 4xx.
//
// The current boot's token may call back (and report) more than once
// (the image retries). Only SHA-256 hashes are kept: per MAC the current one and the
// previous four (to tell a replay from a forgery), for up to 4096 MACs, in
// Config.StateDir/boot-tokens.json (replaced atomically before the script
// is served, so that a restarted service accepts the callback of a boot it
// began; memory only without a StateDir). The http.script event carries
// the current hash as boot_token_sha256, for the control plane to check
// what the booted host presents later; a token itself is never recorded
// or logged, and the callback body's strings are cleaned and any
// rackcloud.token= value in them is redacted.
//
// Every DHCP, TFTP and HTTP step is an Event recorded per MAC (see
// Service.Timeline and GET /boot/{mac}/events) and counted in the
// rackcloud_boot_* metrics. Text from the network (TFTP file names and
// client error messages, DHCP vendor and user classes, HTTP paths and
// Range headers, callback bodies) is made valid UTF-8 without control
// characters (NULs dropped, others turned into spaces) and bounded where
// it is read, and again when the event is recorded.
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
// over HTTP or HTTPS (APIConfig.CAFile, `rackcloud boot --api-ca-file`,
// adds CAs to the system's for the API's certificate).
//
//	200 application/json: a Profile
//	  {"mac": "52:54:00:aa:01:01", "host_id": "…", "hostname": "node1",
//	   "state": "provisioning", "state_reason": "",
//	   "action": "netboot", "purpose": "install",
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
//	  "state": "provisioning", "boot_token_sha256": "…"}, …]
//
//	2xx: accepted
//	4xx but 401, 403, 408, 429: refused: the batch is split in halves until
//	     the events refused alone are found; each is dropped with a log line
//	     (MAC, kind, the problem document's detail) and counted in
//	     rackcloud_boot_events_rejected_total{reason} (invalid: 400 and 422,
//	     too_large: 413, refused: the rest); the others are delivered in order
//	5xx, 401, 403, 408, 429, no answer: nothing is dropped; the batch is
//	     sent again after a backoff that starts at APIConfig.Retry, doubles
//	     up to RetryMax (±20% jitter, at least a Retry-After) and is logged
//	     (401 and 403 at error level: the token is wrong)
//
// An API that answers 5xx to one poisoned event forever (an older API
// given a NUL) would block every event behind it: after
// APIConfig.PoisonAfter (3) 5xx answers in a row to the same batch, 5xx
// answers are split like refusals, and an event that alone gets
// PoisonAfter of them in a row is dropped (reason server_error) if the API
// then takes one of the up to 8 events queued after it, sent alone. If it
// takes none (an API whose database is down fails them all), or nothing
// is queued after it, nothing is dropped and the round is retried later.
// The API drops the duplicates this may send (same MAC, kind and time).
// The spool is delivered the same way at start.
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

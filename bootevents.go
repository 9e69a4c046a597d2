package rackcloud

// BootEventKind names one step of a network boot, as the boot service
// (package pxe) records it and the API stores it. The kinds are listed
// once, here, for both.
type BootEventKind string

// Boot event kinds, in the order a boot produces them.
const (
	BootEventDHCPDiscover BootEventKind = "dhcp.discover"
	BootEventDHCPOffer    BootEventKind = "dhcp.offer"
	BootEventDHCPRequest  BootEventKind = "dhcp.request"
	BootEventDHCPAck      BootEventKind = "dhcp.ack"
	BootEventDHCPNak      BootEventKind = "dhcp.nak"
	BootEventDHCPInform   BootEventKind = "dhcp.inform"
	BootEventDHCPDecline  BootEventKind = "dhcp.decline"
	BootEventDHCPRelease  BootEventKind = "dhcp.release"
	BootEventTFTPStart    BootEventKind = "tftp.start"
	BootEventTFTPDone     BootEventKind = "tftp.done"
	// BootEventTFTPError is a transfer that did not complete; its detail
	// says whether the client aborted it on purpose (UEFI firmware asks
	// for the size first, then aborts with TFTP error 8).
	BootEventTFTPError  BootEventKind = "tftp.error"
	BootEventHTTPScript BootEventKind = "http.script"
	BootEventHTTPKernel BootEventKind = "http.kernel"
	BootEventHTTPInitrd BootEventKind = "http.initrd"
	BootEventHTTPFile   BootEventKind = "http.file"
	// BootEventCallback is the booted image calling back (POST
	// /boot/{mac}/callback); its data is the image's JSON body.
	BootEventCallback BootEventKind = "callback"
	// BootEventInventory is the inspection agent's report (POST
	// /boot/{mac}/inventory, with the boot's token); its data is an
	// Inventory as JSON.
	BootEventInventory BootEventKind = "inventory"
	// BootEventInstall is the installer's report (POST
	// /boot/{mac}/install, with the boot's token); its data is an
	// InstallReport as JSON.
	BootEventInstall BootEventKind = "install"
	// BootEventHeartbeat is an installed host's agent calling in (POST
	// /boot/{mac}/heartbeat, with the host's token); its data is a
	// Heartbeat as JSON.
	BootEventHeartbeat BootEventKind = "heartbeat"
)

// Install phases an installer reports.
const (
	InstallStarted  = "started"
	InstallProgress = "progress"
	InstallWritten  = "written"
	InstallFailed   = "failed"
)

// InstallReport is what the installer reports while it writes the image.
type InstallReport struct {
	// Phase is started, progress, written or failed.
	Phase string `json:"phase"`
	// Disk is the target disk (/dev/vda).
	Disk string `json:"disk,omitempty"`
	// Bytes of Total written so far, at MBps over the install so far.
	Bytes int64   `json:"bytes,omitempty"`
	Total int64   `json:"total,omitempty"`
	MBps  float64 `json:"mbps,omitempty"`
	// Resumes counts downloads resumed with Range after a dropped
	// connection.
	Resumes int `json:"resumes,omitempty"`
	// SHA256 is the checksum read back from the disk (written).
	SHA256 string `json:"sha256,omitempty"`
	// Reason (a FailureReason) and Error say why it failed.
	Reason FailureReason `json:"reason,omitempty"`
	Error  string        `json:"error,omitempty"`
}

// Heartbeat is what an installed host's agent sends.
type Heartbeat struct {
	HostID   string   `json:"host_id"`
	Role     HostRole `json:"role,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
	BootID   string   `json:"boot_id,omitempty"`
	UptimeS  float64  `json:"uptime_s,omitempty"`
	Kernel   string   `json:"kernel,omitempty"`
}

// BootEventKinds returns every boot event kind, in the order a boot
// produces them. The slice is new on every call.
func BootEventKinds() []BootEventKind {
	return []BootEventKind{
		BootEventDHCPDiscover, BootEventDHCPOffer, BootEventDHCPRequest, BootEventDHCPAck, BootEventDHCPNak,
		BootEventDHCPInform, BootEventDHCPDecline, BootEventDHCPRelease, BootEventTFTPStart, BootEventTFTPDone,
		BootEventTFTPError, BootEventHTTPScript, BootEventHTTPKernel, BootEventHTTPInitrd, BootEventHTTPFile,
		BootEventCallback, BootEventInventory, BootEventInstall, BootEventHeartbeat,
	}
}

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
)

// BootEventKinds returns every boot event kind, in the order a boot
// produces them. The slice is new on every call.
func BootEventKinds() []BootEventKind {
	return []BootEventKind{
		BootEventDHCPDiscover, BootEventDHCPOffer, BootEventDHCPRequest, BootEventDHCPAck, BootEventDHCPNak,
		BootEventDHCPInform, BootEventDHCPDecline, BootEventDHCPRelease, BootEventTFTPStart, BootEventTFTPDone,
		BootEventTFTPError, BootEventHTTPScript, BootEventHTTPKernel, BootEventHTTPInitrd, BootEventHTTPFile,
		BootEventCallback, BootEventInventory,
	}
}

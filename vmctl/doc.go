// Package vmctl places and runs guests (DESIGN.md sections 6 and 7):
// placement filters and weighs hosts from a snapshot and returns a plan that
// is committed with its capacity claim in one transaction; drivers run the
// guests: VMs through libvirt, containers through the Docker Engine API, and
// whole machines as bare-metal guests.
package vmctl

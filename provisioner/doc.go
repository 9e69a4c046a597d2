// Package provisioner moves hosts through their lifecycle (DESIGN.md
// section 3): discovered -> inspecting -> available -> provisioning -> ready,
// and back through draining, maintenance and deprovisioning. Each transition
// is a task whose steps drive the BMC (bmc), the boot profile served to the
// host's MACs (pxe) and the agent running in the inspection and install
// images, so that a racked server becomes a ready bare-metal, KVM or Docker
// host with no hand work.
package provisioner

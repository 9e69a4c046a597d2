// Package bootimg builds the images hosts network-boot into: a real Debian
// kernel (fetched once with apt-get download and unpacked with dpkg -x into
// a cache directory) and a small initramfs written from Go as a newc cpio
// archive: busybox-static, the NIC and disk modules of that kernel, and an
// /init that brings the NIC up with udhcpc and calls the boot service back
// over HTTP. Extra files can be added to the image; /init runs the
// programs in HooksDir after the callback. The inspection image
// (Inspection) adds the static agent built from cmd/rackcloud-agent and a
// hook that reports the inventory to the boot service.
package bootimg

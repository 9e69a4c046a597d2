// Package guestimg makes the guest images the lab and the tests run,
// without a registry or the network: a container image (Container, a
// docker-archive of Debian's static busybox) and a bootable VM disk (VM,
// a Debian kernel and a busybox initramfs that prints a marker on the
// serial console). Built images are cached by a hash of their recipe under
// the same cache root as lab/hostimg, so test packages share them.
package guestimg

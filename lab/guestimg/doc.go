// Package guestimg builds the tiny guest images the lab's tests run on
// rackcloud's hosts: a bootable VM disk (VM) and container images.
package guestimg

// Package linuxtest holds the Linux-guest tests: gureum's default image
// (docs/images.md: a stock Debian kernel, cloud and generic, with its
// initramfs and busybox root disk) booted under gureum-vmm with two vCPUs,
// the root file system on virtio-blk, eth0 on virtio-net, its web server
// reached from the host side of the tap, what it writes found in the disk
// image afterwards, and the guest's poweroff and reboot and the VMM's
// shutdown action checked to end the VMM the documented ways. One guest
// also boots inside a VPC (network/vpc) and takes its address from the
// VPC's DHCP server and its instance-id and user-data from the metadata
// service with an IMDSv2 token.
//
// A stock kernel needs hardware-style KVM (VT-x or AMD-V). On a machine
// that has it, `go test ./vmm/linuxtest` runs the tests directly and takes
// the default image from its cache, building it if needed
// (images/nested.DefaultImageGuests, the same code as `gureum image
// build`). On machines whose /dev/kvm is PVM, the tests skip here and run
// inside the nested test host instead (images/nested, `make e2e-nested`),
// which sets GUREUM_LINUX_GUESTS to the guests it put into L1 and
// GUREUM_NESTED_HOST=1.
package linuxtest

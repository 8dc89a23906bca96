// Package linuxtest holds the Linux-guest tests: stock Debian kernels (cloud
// and generic) booted under gureum-vmm with two vCPUs, the root file system
// on virtio-blk, eth0 on virtio-net, and the guest's poweroff and reboot
// checked to end the VMM the documented ways.
//
// A stock kernel needs hardware-style KVM (VT-x or AMD-V). On a machine
// that has it, `go test ./vmm/linuxtest` runs the tests directly and
// builds the guests itself (images/nested.BuildGuest). On machines whose
// /dev/kvm is PVM, the tests skip here and run inside the nested test host
// instead (images/nested, `make e2e-nested`), which sets GUREUM_LINUX_GUESTS
// to the guests it built and GUREUM_NESTED_HOST=1.
package linuxtest

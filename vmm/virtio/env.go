// Package virtio holds the virtio 1.x machinery shared by gureum's devices:
// split virtqueues with a bounds-checked descriptor-chain walker, and the
// modern virtio-pci transport. Device models (blk, net) live in
// subpackages and see only the Env below.
package virtio

import "gureum/vmm/guestmem"

// MSIController delivers a message-signalled interrupt (address and data as
// the guest programmed them into an MSI-X table entry).
type MSIController interface {
	SignalMSI(addr uint64, data uint32) error
}

// NotifyHub turns guest queue notifications into calls on the event loop.
// RegisterIOEvent asks KVM for an ioeventfd on a 2- or 4-byte MMIO write to
// addr; onKick then runs on the event loop goroutine each time the guest
// writes there. The returned function removes the registration.
//
// A transport must still handle a plain MMIO write to the same address
// (before registration, or when registration failed) by calling its own
// notify handler: ioeventfd is an optimisation, not the only path.
type NotifyHub interface {
	RegisterIOEvent(addr uint64, size int, onKick func()) (unregister func(), err error)
}

// Loop lets a device run work on the event loop goroutine from elsewhere
// (for example a goroutine that waited for a tap fd to become readable).
type Loop interface {
	Post(fn func())
}

// Env is everything of the machine a virtio device may touch.
type Env struct {
	Mem    *guestmem.Memory
	MSI    MSIController
	Notify NotifyHub
	Loop   Loop
}

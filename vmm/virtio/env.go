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
// addr; onKick then runs as device code (under the event loop's device
// lock) each time the guest writes there. The returned function removes
// the registration.
//
// A transport must still handle a plain MMIO write to the same address
// (before registration, or when registration failed) by calling its own
// notify handler: ioeventfd is an optimisation, not the only path.
type NotifyHub interface {
	RegisterIOEvent(addr uint64, size int, onKick func()) (unregister func(), err error)
}

// Loop lets a device run work on the event loop from elsewhere (a timer,
// a goroutine that waited for something).
type Loop interface {
	Post(fn func())
}

// FDWatcher lets a device have the event loop wait for an fd itself: fn
// runs on the loop each time fd may have become readable. It is
// edge-triggered: after fn has read the fd empty, the next arrival calls
// it again; fn left something unread, nothing calls it until more
// arrives. A watch made while the fd is readable calls fn soon. The fd
// stays the caller's; stop ends the watch (from any goroutine, or from
// device code).
type FDWatcher interface {
	WatchReadable(fd int, fn func()) (stop func(), err error)
}

// Env is everything of the machine a virtio device may touch.
type Env struct {
	Mem    *guestmem.Memory
	MSI    MSIController
	Notify NotifyHub
	Loop   Loop
	// Watch is optional: without it, devices wait for fds in goroutines
	// of their own and post to Loop.
	Watch FDWatcher
}

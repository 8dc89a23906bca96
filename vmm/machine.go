package vmm

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"gureum/vmm/devices"
	"gureum/vmm/guestmem"
	"gureum/vmm/kvm"
	"gureum/vmm/layout"
)

// EndKind says how a VM's run ended.
type EndKind string

// End kinds. A guest poweroff, a guest reboot (with NoReboot) and a crash
// are told apart; EndStopped is a stop from outside (API, signal).
const (
	EndPoweroff EndKind = "poweroff"
	EndReboot   EndKind = "reboot"
	EndCrash    EndKind = "crash"
	EndStopped  EndKind = "stopped"
)

// event is something that ends one boot of the machine.
type event struct {
	kind   EndKind
	reason string
}

// machine is one boot of a VM: the KVM VM, guest RAM, devices and vCPUs.
// A guest reboot tears it down and builds a new one over the same
// backends (disks, taps, console), as a reset would on real hardware.
type machine struct {
	vm   *kvm.VM
	mem  *guestmem.Memory
	loop *eventLoop
	pio  devices.Bus
	mmio devices.Bus

	vcpus    []*vcpuRunner
	stopping atomic.Bool
	// ending is set by the first event that ends the boot, so that a vCPU
	// does not re-enter the guest after (say) its poweroff write.
	ending atomic.Bool
	runMu  sync.Mutex // guards resume channels and paused
	paused bool
	events chan event // first event ends the boot

	irqLines []*irqLine
	devices  []deviceCounters
	// describers tell their state for DebugState (device code).
	describers []namedDescriber
	bootedAt   time.Time
	// ctrlAltDel presses Ctrl-Alt-Del on the keyboard controller (runs on
	// the event loop); nil until the i8042 is wired.
	ctrlAltDelKeys func()
	cleanup        []func() // undone in reverse order by close

	unhandledIO, unhandledMMIO atomic.Uint64
	wg                         sync.WaitGroup

	// anyLengthKicks: KVM takes zero-length MMIO ioeventfds, which match
	// a write of any width and, on Intel VT-x, skip decoding the guest's
	// instruction (KVM's "fast MMIO" path), as QEMU uses them.
	anyLengthKicks bool
}

// guestEvent records the event that ends this boot; later ones are dropped.
func (m *machine) guestEvent(ev event) {
	m.ending.Store(true)
	select {
	case m.events <- ev:
	default:
	}
}

func (m *machine) onCleanup(fn func()) { m.cleanup = append(m.cleanup, fn) }

// newMachine creates the KVM VM with its memory and in-kernel interrupt
// controllers. Devices and vCPUs are added by the caller.
func newMachine(sys *kvm.System, memMiB uint64) (_ *machine, err error) {
	loop, err := newEventLoop()
	if err != nil {
		return nil, err
	}
	m := &machine{loop: loop, events: make(chan event, 1)}
	if n, _ := sys.CheckExtension(kvm.CapIOEventFDNoLen); n > 0 {
		m.anyLengthKicks = true
	}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	loop.start()
	m.onCleanup(loop.stop)

	vm, err := sys.CreateVM()
	if err != nil {
		return nil, err
	}
	m.vm = vm
	m.onCleanup(func() { vm.Close() })
	// Intel VMX needs these pages below 4 GiB and outside RAM for real
	// mode; the top of the 32-bit hole, below the IOAPIC, is free.
	if err := vm.SetIdentityMapAddr(0xfeffc000); err != nil {
		return nil, err
	}
	if err := vm.SetTSSAddr(0xfeffd000); err != nil {
		return nil, err
	}
	if err := vm.CreateIRQChip(); err != nil {
		return nil, err
	}
	if err := vm.CreatePIT2(kvm.PITSpeakerDummy); err != nil {
		return nil, err
	}

	size := memMiB << 20
	mem, err := guestmem.New(size, layout.RAMRegions(size))
	if err != nil {
		return nil, err
	}
	m.mem = mem
	m.onCleanup(func() { mem.Close() })
	for i, r := range mem.Regions() {
		if err := vm.SetMemory(uint32(i), r.GPA, r.Data); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// close releases everything in reverse order of creation.
func (m *machine) close() {
	for i := len(m.cleanup) - 1; i >= 0; i-- {
		m.cleanup[i]()
	}
	m.cleanup = nil
}

// irqLine is a devices.Line backed by an irqfd: writing the eventfd makes
// KVM pulse the GSI inside the kernel.
type irqLine struct {
	gsi      uint32
	efd      int
	triggers atomic.Uint64
}

func (m *machine) newIRQLine(gsi uint32) (*irqLine, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd for GSI %d: %w", gsi, err)
	}
	if err := m.vm.RegisterIRQFD(efd, gsi); err != nil {
		unix.Close(efd)
		return nil, err
	}
	l := &irqLine{gsi: gsi, efd: efd}
	m.irqLines = append(m.irqLines, l)
	m.onCleanup(func() { unix.Close(efd) })
	return l, nil
}

var eventfdOne = []byte{1, 0, 0, 0, 0, 0, 0, 0}

// Trigger raises the interrupt.
func (l *irqLine) Trigger() error {
	l.triggers.Add(1)
	_, err := unix.Write(l.efd, eventfdOne)
	if err == unix.EAGAIN { // counter saturated: an interrupt is pending anyway
		return nil
	}
	return err
}

// SignalMSI delivers an MSI through KVM (virtio.MSIController).
func (m *machine) SignalMSI(addr uint64, data uint32) error {
	_, err := m.vm.SignalMSI(addr, data)
	return err
}

// RegisterIOEvent implements virtio.NotifyHub with an ioeventfd: the
// guest's write to addr signals an eventfd inside KVM (the vCPU does not
// leave the kernel), and the event loop's thread, asleep in epoll_wait on
// that eventfd, wakes and runs onKick.
//
// When KVM allows it the ioeventfd has length zero: it then matches a
// write of any width at addr, not only of size bytes (anyLengthKicks).
func (m *machine) RegisterIOEvent(addr uint64, size int, onKick func()) (func(), error) {
	if m.anyLengthKicks {
		size = 0
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd for ioevent at %#x: %w", addr, err)
	}
	if err := m.vm.RegisterIOEventFD(efd, addr, uint32(size), false); err != nil {
		unix.Close(efd)
		return nil, err
	}
	var buf [8]byte
	remove, err := m.loop.watch(efd, false, func() {
		// Reading resets the counter: several kicks since the last
		// look are one notification, as the queue is read whole.
		if _, err := unix.Read(efd, buf[:]); err == nil {
			onKick()
		}
	})
	if err != nil {
		m.vm.UnregisterIOEventFD(efd, addr, uint32(size), false)
		unix.Close(efd)
		return nil, err
	}
	var once sync.Once
	unregister := func() {
		once.Do(func() {
			m.vm.UnregisterIOEventFD(efd, addr, uint32(size), false)
			remove() // the loop closes efd
		})
	}
	m.onCleanup(unregister)
	return unregister, nil
}

// WatchReadable implements virtio.FDWatcher: fn runs on the event loop
// each time fd may have become readable (edge-triggered: after fn has
// seen the fd empty, the next arrival calls it again). The fd stays the
// caller's: it is duplicated for the poll set.
func (m *machine) WatchReadable(fd int, fn func()) (func(), error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("watch fd %d: %w", fd, err)
	}
	remove, err := m.loop.watch(dup, true, fn)
	if err != nil {
		unix.Close(dup)
		return nil, err
	}
	return remove, nil
}

// Post runs fn on the event loop (virtio.Loop). Work posted after the loop
// stopped is dropped: the machine is going away.
func (m *machine) Post(fn func()) { m.loop.Post(fn) }

// ctrlAltDel sends Ctrl-Alt-Del to the guest's keyboard controller.
func (m *machine) ctrlAltDel() error {
	if m.ctrlAltDelKeys == nil {
		return errors.New("no keyboard controller")
	}
	if !m.loop.Post(m.ctrlAltDelKeys) {
		return errors.New("machine stopped")
	}
	return nil
}

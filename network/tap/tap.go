// Package tap opens Linux tap devices: virtual Ethernet interfaces whose
// "wire" is a file descriptor. Every frame the host kernel sends out of the
// interface can be read from the fd, and every frame written to the fd
// arrives on the interface as if it had been received from a cable. A VM's
// virtio-net device sits on the other end of that fd.
//
// Taps are opened with a virtio_net_hdr in front of every frame
// (IFF_VNET_HDR). That header is the same one a virtio-net driver puts in
// front of its frames, so checksum and segmentation offloads pass between
// guest and host kernel untouched: a guest TCP stack can hand over one 64 KiB
// segment and let the host split it, or never compute a checksum that the
// host would only verify again.
//
// The fd is non-blocking and registered with Go's network poller, so a
// goroutine can wait for it to become readable without a thread and without
// polling (WaitReadable), while reads and writes themselves happen wherever
// the caller wants (the VMM's event loop).
package tap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// VnetHdrLen is the length of the header in front of each frame on a tap
// opened by this package: struct virtio_net_hdr_v1 (flags, gso_type,
// hdr_len, gso_size, csum_start, csum_offset, num_buffers). The kernel
// fills and reads only the first 10 bytes; it skips num_buffers.
const VnetHdrLen = 12

// Offload flags for SetOffload (TUN_F_* in linux/if_tun.h). Each one tells
// the kernel that the reader of the tap accepts frames in that form: TSO
// frames are up to 64 KiB with a gso_size to cut them by, CSUM frames carry
// a partial checksum to be completed at csum_start+csum_offset.
const (
	OffloadCsum   = 0x01 // TUN_F_CSUM: partial checksums
	OffloadTSO4   = 0x02 // TUN_F_TSO4: TCP segmentation, IPv4 (needs Csum)
	OffloadTSO6   = 0x04 // TUN_F_TSO6: TCP segmentation, IPv6 (needs Csum)
	OffloadTSOECN = 0x08 // TUN_F_TSO_ECN: TSO frames with ECN (CWR) set
	OffloadUFO    = 0x10 // TUN_F_UFO: UDP fragmentation (needs Csum)
)

// tunDevice is the clone device: opening it and calling TUNSETIFF makes (or
// attaches to) a tun/tap interface bound to the new fd.
const tunDevice = "/dev/net/tun"

// tapFlags selects a tap (Ethernet frames, not IP packets), without the
// 4-byte packet-information prefix, with a virtio_net_hdr prefix, and with
// one queue (IFF_MULTI_QUEUE left off: one fd carries all traffic).
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR

// aLongTimeAgo is a read deadline in the past: setting it wakes a goroutine
// blocked in WaitReadable.
var aLongTimeAgo = time.Unix(1, 0)

// Tap is an open tap fd.
//
// ReadPacket and WritePacket may be called from one goroutine each while
// another goroutine is blocked in WaitReadable; they never block. Close may
// be called from any goroutine and wakes WaitReadable.
type Tap struct {
	name string
	file *os.File
	raw  syscall.RawConn
}

// Open attaches to the tap interface name in the calling thread's network
// namespace, creating it (non-persistent: it disappears with the last fd) if
// it does not exist. name may contain a %d pattern, as in "tap%d", for the
// kernel to pick a free number; Name reports the result.
//
// A VMM that runs in a VPC must call Open on a thread that is in the VPC's
// namespace (or be handed the fd with FromFile).
func Open(name string) (*Tap, error) {
	fd, actual, err := openTap(name)
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: set vnet header size: %w", actual, err)
	}
	t, err := fromFD(fd, actual)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Create makes a persistent tap interface: it outlives the fd that made it
// until Destroy (or until its network namespace goes away). It returns the
// interface's name (useful when name holds %d).
func Create(name string) (string, error) {
	fd, actual, err := openTap(name)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		return "", fmt.Errorf("tap %s: make persistent: %w", actual, err)
	}
	return actual, nil
}

// Destroy removes a persistent tap made by Create. It fails if the interface
// does not exist.
func Destroy(name string) error {
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", tunDevice, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("tap %q: bad interface name: %w", name, err)
	}
	// TUNSETIFF on a missing name would create the interface rather than
	// fail, so look it up first.
	if _, err := net.InterfaceByName(name); err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	ifr.SetUint16(tapFlags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("tap %s: attach: %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0); err != nil {
		return fmt.Errorf("tap %s: clear persistence: %w", name, err)
	}
	return nil
}

// FromFile wraps an fd that is already attached to a tap interface with a
// 12-byte vnet header (for example one opened by the daemon in a VPC's
// namespace and passed to the VMM). It takes ownership of f's descriptor:
// f must not be used afterwards. The fd is switched to non-blocking mode.
//
// Any fd that keeps packet boundaries works (a SOCK_SEQPACKET socket, say),
// which is how device tests stand in for a real tap; SetOffload then fails.
func FromFile(f *os.File, name string) (*Tap, error) {
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("tap %s: duplicate fd: %w", name, err)
	}
	if err := f.Close(); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: close original fd: %w", name, err)
	}
	unix.CloseOnExec(fd)
	return fromFD(fd, name)
}

// openTap opens the clone device and binds the fd to a tap named name.
func openTap(name string) (fd int, actual string, err error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return -1, "", fmt.Errorf("tap %q: bad interface name: %w", name, err)
	}
	fd, err = unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, "", fmt.Errorf("open %s: %w", tunDevice, err)
	}
	ifr.SetUint16(tapFlags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("tap %s: TUNSETIFF: %w", name, err)
	}
	// The kernel writes the final name back (it expands %d).
	return fd, ifr.Name(), nil
}

// fromFD registers fd with Go's poller. os.NewFile does so only for an fd
// that is already non-blocking, hence SetNonblock first. On error fd is
// closed.
func fromFD(fd int, name string) (*Tap, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: set non-blocking: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tap %s: raw conn: %w", name, err)
	}
	return &Tap{name: name, file: f, raw: raw}, nil
}

// Name is the interface name.
func (t *Tap) Name() string { return t.name }

// SetOffload tells the kernel which offloaded frame forms the reader
// accepts (a combination of the Offload flags); 0 means plain frames with
// full checksums only. The kernel refuses TSO or UFO without OffloadCsum.
func (t *Tap) SetOffload(flags uint) error {
	var opErr error
	err := t.raw.Control(func(fd uintptr) {
		opErr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, int(flags))
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return fmt.Errorf("tap %s: set offload %#x: %w", t.name, flags, err)
	}
	return nil
}

// ReadPacket reads one frame, vnet header first, into the buffers of iov in
// order (readv). It never blocks: with nothing queued it returns an error
// that matches unix.EAGAIN (see IsEmpty). A frame longer than iov is cut
// short by the kernel, so the caller should leave room for the largest
// frame it expects.
//
// Reads use the raw fd without the poller's read lock, so they may run while
// another goroutine waits in WaitReadable.
func (t *Tap) ReadPacket(iov ...[]byte) (int, error) {
	var n int
	var opErr error
	err := t.raw.Control(func(fd uintptr) {
		for {
			n, opErr = unix.Readv(int(fd), iov)
			if opErr != unix.EINTR {
				return
			}
		}
	})
	if err == nil {
		err = opErr
	}
	if err == unix.EAGAIN {
		// The common case on every receive burst's last read: no
		// wrapping, so no allocation.
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("tap %s: read: %w", t.name, err)
	}
	return n, nil
}

// ReadFD returns the tap's fd for an event loop to poll for readability
// (the loop duplicates it; reads still go through ReadPacket). It is valid
// until Close, and -1 after.
func (t *Tap) ReadFD() int {
	fd := -1
	t.raw.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// WritePacket writes one frame, vnet header first, gathered from the
// buffers of iov (writev). A tap takes a whole frame or nothing, so a short
// count is reported as an error.
func (t *Tap) WritePacket(iov ...[]byte) (int, error) {
	want := 0
	for _, b := range iov {
		want += len(b)
	}
	var n int
	var opErr error
	err := t.raw.Control(func(fd uintptr) {
		for {
			n, opErr = unix.Writev(int(fd), iov)
			if opErr != unix.EINTR {
				return
			}
		}
	})
	if err == nil {
		err = opErr
	}
	if err == nil && n != want {
		err = fmt.Errorf("short write: %d of %d bytes", n, want)
	}
	if err != nil {
		return n, fmt.Errorf("tap %s: write: %w", t.name, err)
	}
	return n, nil
}

// WaitReadable blocks until a frame can be read, ctx is done, or the tap is
// closed. It parks the goroutine in Go's network poller (epoll), not in a
// thread, and never reads: the caller reads afterwards, wherever it likes.
//
// It may report readable spuriously (another reader took the frame first);
// callers read until IsEmpty and wait again.
func (t *Tap) WaitReadable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Cancellation wakes the poller through a read deadline in the past.
	// The deferred function waits for that to have happened (or for it to
	// be called off) before clearing the deadline, so a late cancellation
	// cannot leave a stale deadline for the next wait.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		t.file.SetReadDeadline(aLongTimeAgo)
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
		t.file.SetReadDeadline(time.Time{})
	}()
	// RawConn.Read calls the function, and while it returns false parks
	// until epoll reports the fd readable. The poller is edge-triggered
	// and forgets readiness that arrived before this call, so the function
	// asks the kernel directly (poll with zero timeout) instead of assuming
	// the fd is empty.
	var pollErr error
	err := t.raw.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				pollErr = err
				return true
			}
			return n > 0
		}
	})
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if err == nil {
		err = pollErr
	}
	if err != nil {
		return fmt.Errorf("tap %s: wait readable: %w", t.name, err)
	}
	return nil
}

// Close closes the fd. A non-persistent tap interface disappears with it.
func (t *Tap) Close() error {
	if err := t.file.Close(); err != nil {
		return fmt.Errorf("tap %s: close: %w", t.name, err)
	}
	return nil
}

// IsEmpty reports whether err from ReadPacket means that no frame was queued.
func IsEmpty(err error) bool { return errors.Is(err, unix.EAGAIN) }

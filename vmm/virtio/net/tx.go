package net

import (
	"errors"
	"fmt"
	"syscall"

	"gureum/vmm/virtio"
)

// maxIOV is the most buffers one readv or writev takes (UIO_MAXIOV).
const maxIOV = 1024

// Transmit errors, counted and returned by sendChain (wrapped).
var (
	errTxWritable = errors.New("transmit chain has device-writable buffers")
	errTxShort    = errors.New("transmit frame too short")
	errTxLong     = errors.New("transmit frame too long")
)

// txState is scratch space reused for every frame, so that transmitting
// allocates nothing in the common case.
type txState struct {
	hdr    [hdrLen]byte // the device's copy of the guest's header
	iov    [][]byte
	linear []byte // a frame in too many pieces for one writev, copied
}

// transmit sends every chain the driver has made available on the transmit
// queue. A chain is always returned to the driver (used length 0: the device
// writes nothing into transmit buffers), whether its frame was sent, dropped
// or refused, so a bad frame costs the guest that frame and nothing else.
func (d *Device) transmit() {
	q, mem := d.txq, d.env.Mem
	if q == nil {
		return
	}
	for {
		c, ok, err := q.Pop(mem)
		if !ok {
			break
		}
		if err != nil {
			d.counters.txErrors.Add(1)
		} else if err := d.sendChain(&c); err != nil {
			if isDrop(err) {
				d.counters.txDropped.Add(1)
			} else {
				d.counters.txErrors.Add(1)
			}
		}
		if err := q.Push(mem, c.Head, 0); err != nil {
			// The used ring itself is unwritable: the queue is now
			// broken and yields nothing more until reset.
			d.counters.txErrors.Add(1)
			break
		}
	}
	d.signal(txQueue, q)
}

// sendChain writes the frame in c to the backend: the validated copy of the
// header, then the frame straight from guest memory (the kernel copies it
// once, from the guest's pages into a socket buffer).
func (d *Device) sendChain(c *virtio.Chain) error {
	mem := d.env.Mem
	if c.WritableLen() != 0 {
		return errTxWritable
	}
	total := c.ReadableLen()
	if total < hdrLen+ethHeaderLen {
		return fmt.Errorf("%w: %d bytes", errTxShort, total)
	}
	if total > maxPacket {
		return fmt.Errorf("%w: %d bytes", errTxLong, total)
	}
	frameLen := int(total) - hdrLen
	// Read the header once into our own copy: the guest can rewrite its
	// buffers at any time, and the kernel must act on what we checked.
	if _, err := c.Gather(mem, d.tx.hdr[:], 0); err != nil {
		return fmt.Errorf("read transmit header: %w", err)
	}
	if err := checkTxHeader(&d.tx.hdr, d.features, frameLen); err != nil {
		return err
	}

	iov := append(d.tx.iov[:0], d.tx.hdr[:])
	skip := uint64(hdrLen)
	for _, b := range c.Buffers {
		if skip >= uint64(b.Len) {
			skip -= uint64(b.Len)
			continue
		}
		s, err := mem.Slice(b.Addr+skip, uint64(b.Len)-skip)
		if err != nil {
			return fmt.Errorf("transmit buffer: %w", err)
		}
		skip = 0
		iov = append(iov, s)
	}
	d.tx.iov = iov
	if len(iov) > maxIOV {
		// Legal but odd (a huge indirect table of tiny buffers): one copy
		// instead of a writev the kernel would refuse.
		if d.tx.linear == nil {
			d.tx.linear = make([]byte, maxPacket)
		}
		n := copy(d.tx.linear, d.tx.hdr[:])
		for _, s := range iov[1:] {
			n += copy(d.tx.linear[n:], s)
		}
		iov = append(iov[:0], d.tx.linear[:n])
	}
	if _, err := d.backend.WritePacket(iov...); err != nil {
		return fmt.Errorf("transmit %d-byte frame: %w", frameLen, err)
	}
	d.counters.txPackets.Add(1)
	d.counters.txBytes.Add(uint64(frameLen))
	return nil
}

// isDrop tells a frame the host could not take right now (queue full, no
// memory, interface down) from one that was wrong.
func isDrop(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.EIO)
}

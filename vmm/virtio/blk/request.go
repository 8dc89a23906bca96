package blk

import (
	"encoding/binary"
	"errors"
	"fmt"

	"gureum/vmm/virtio"
)

// Request types (virtio 1.x, 5.2.6).
const (
	typeIn          = 0
	typeOut         = 1
	typeFlush       = 4
	typeGetID       = 8
	typeDiscard     = 11
	typeWriteZeroes = 13
)

// Status values written into the request's last byte.
const (
	statusOK     = 0
	statusIOErr  = 1
	statusUnsupp = 2
)

const (
	headerSize    = 16
	segmentSize   = 16 // struct virtio_blk_discard_write_zeroes
	segFlagUnmap  = 1
	segFlagsKnown = segFlagUnmap
)

// errUnsupported marks a request the device does not implement.
var errUnsupported = errors.New("unsupported request")

// request is one parsed chain: the header, and where the data and status
// are. Nothing in it points at guest memory that was not checked.
type request struct {
	typ      uint32
	sector   uint64
	chain    *virtio.Chain
	dataIn   uint64 // readable bytes after the header
	dataOut  uint64 // writable bytes before the status byte
	statusAt uint64 // guest address of the status byte
}

// handle runs one well-formed chain and returns the byte count for the used
// ring. A chain with no room for the header or the status byte is a driver
// bug: it is returned with 0 bytes and counted as an error.
func (d *Device) handle(c *virtio.Chain) uint32 {
	r, err := parseRequest(d, c)
	if err != nil {
		d.errors.Add(1)
		return 0
	}
	written, status := d.run(r)
	if status != statusOK {
		d.errors.Add(1)
	}
	if err := d.mem.WriteAt([]byte{status}, r.statusAt); err != nil {
		d.errors.Add(1) // cannot happen for a checked chain; never fatal
		return 0
	}
	return uint32(written) + 1
}

// parseRequest reads the header once and locates the status byte.
func parseRequest(d *Device, c *virtio.Chain) (request, error) {
	var hdr [headerSize]byte
	if _, err := c.Gather(d.mem, hdr[:], 0); err != nil {
		return request{}, fmt.Errorf("request header: %w", err)
	}
	writable := c.WritableLen()
	if writable == 0 {
		return request{}, fmt.Errorf("request without a status byte")
	}
	r := request{
		typ:     binary.LittleEndian.Uint32(hdr[0:]),
		sector:  binary.LittleEndian.Uint64(hdr[8:]),
		chain:   c,
		dataIn:  c.ReadableLen() - headerSize,
		dataOut: writable - 1,
	}
	last := c.Buffers[len(c.Buffers)-1] // writable, since writable > 0
	r.statusAt = last.Addr + uint64(last.Len) - 1
	return r, nil
}

// run executes r and returns the data bytes written into guest memory and
// the status.
func (d *Device) run(r request) (uint64, byte) {
	switch r.typ {
	case typeIn:
		n, err := d.read(r)
		if err != nil {
			return 0, statusIOErr
		}
		return n, statusOK
	case typeOut:
		if err := d.write(r); err != nil {
			return 0, statusIOErr
		}
		return 0, statusOK
	case typeFlush:
		d.flushes.Add(1)
		if d.disk == nil {
			return 0, statusOK // an empty slot has nothing to make durable
		}
		if err := d.disk.Flush(); err != nil {
			return 0, statusIOErr
		}
		return 0, statusOK
	case typeGetID:
		n := min(r.dataOut, IDBytes)
		if _, err := r.chain.Scatter(d.mem, d.serial[:n], 0); err != nil {
			return 0, statusIOErr
		}
		return n, statusOK
	case typeDiscard, typeWriteZeroes:
		err := d.discard(r)
		switch {
		case errors.Is(err, errUnsupported):
			return 0, statusUnsupp
		case err != nil:
			return 0, statusIOErr
		}
		return 0, statusOK
	}
	return 0, statusUnsupp
}

// span checks that n bytes at sector fit the disk and returns the byte
// offset.
func (d *Device) span(sector, n uint64) (int64, error) {
	if n%SectorSize != 0 {
		return 0, fmt.Errorf("length %d not a multiple of %d", n, SectorSize)
	}
	size := uint64(d.size)
	if sector > size/SectorSize || n > size-sector*SectorSize {
		return 0, fmt.Errorf("sectors [%d, +%d) beyond capacity", sector, n/SectorSize)
	}
	return int64(sector * SectorSize), nil
}

// read fills the writable data buffers from the disk, one pread straight
// into guest memory per buffer.
func (d *Device) read(r request) (uint64, error) {
	off, err := d.span(r.sector, r.dataOut)
	if err != nil {
		return 0, err
	}
	d.readOps.Add(1)
	left := r.dataOut
	for _, b := range r.chain.Buffers {
		if !b.Writable || left == 0 {
			continue
		}
		n := min(uint64(b.Len), left)
		dst, err := d.mem.Slice(b.Addr, n)
		if err != nil {
			return 0, err
		}
		if _, err := d.disk.ReadAt(dst, off); err != nil {
			return 0, fmt.Errorf("read disk: %w", err)
		}
		off += int64(n)
		left -= n
	}
	d.readBytes.Add(r.dataOut)
	return r.dataOut, nil
}

// write stores the readable data buffers (after the header) on the disk,
// one pwrite straight from guest memory per buffer.
func (d *Device) write(r request) error {
	if d.disk != nil && d.disk.ReadOnly() {
		return fmt.Errorf("write to read-only disk")
	}
	off, err := d.span(r.sector, r.dataIn)
	if err != nil {
		return err
	}
	d.writeOps.Add(1)
	skip := uint64(headerSize)
	for _, b := range r.chain.Buffers {
		if b.Writable {
			break
		}
		if skip >= uint64(b.Len) {
			skip -= uint64(b.Len)
			continue
		}
		src, err := d.mem.Slice(b.Addr+skip, uint64(b.Len)-skip)
		if err != nil {
			return err
		}
		skip = 0
		if _, err := d.disk.WriteAt(src, off); err != nil {
			return fmt.Errorf("write disk: %w", err)
		}
		off += int64(len(src))
	}
	d.writeBytes.Add(r.dataIn)
	return nil
}

// discard handles DISCARD and WRITE_ZEROES: a list of segments {sector
// le64, num_sectors le32, flags le32}. Write-zeroes is a discard too,
// because a storage.Discarder reads back zeroes from discarded ranges.
func (d *Device) discard(r request) error {
	if d.discarder == nil {
		return errUnsupported
	}
	if r.dataIn == 0 || r.dataIn%segmentSize != 0 || r.dataIn/segmentSize > maxDiscardSegments {
		return fmt.Errorf("discard payload of %d bytes", r.dataIn)
	}
	d.discards.Add(1)
	segs := make([]byte, r.dataIn)
	if _, err := r.chain.Gather(d.mem, segs, headerSize); err != nil {
		return err
	}
	for i := 0; i < len(segs); i += segmentSize {
		sector := binary.LittleEndian.Uint64(segs[i:])
		count := uint64(binary.LittleEndian.Uint32(segs[i+8:]))
		flags := binary.LittleEndian.Uint32(segs[i+12:])
		// Unmap is meaningful only for write-zeroes; any other flag is
		// reserved.
		if flags&^segFlagsKnown != 0 || (r.typ == typeDiscard && flags&segFlagUnmap != 0) {
			return errUnsupported
		}
		if count > maxDiscardSectors {
			return fmt.Errorf("discard of %d sectors", count)
		}
		off, err := d.span(sector, count*SectorSize)
		if err != nil {
			return err
		}
		if err := d.discarder.Discard(off, int64(count*SectorSize)); err != nil {
			return fmt.Errorf("discard: %w", err)
		}
	}
	return nil
}

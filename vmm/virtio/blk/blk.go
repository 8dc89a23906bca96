// Package blk is virtio-blk (virtio 1.x, 5.2): a disk for the guest, backed
// by a storage.Disk.
//
// The guest driver sends each request as one descriptor chain:
//
//	readable: header {type le32, reserved le32, sector le64}
//	data:     readable for writes, writable for reads (several buffers)
//	writable: status u8, the chain's last byte
//
// The device runs requests on the event loop when the driver kicks the
// queue, moving data straight between the disk file and guest memory (one
// pread or pwrite per guest buffer, no copy through a Go buffer), then
// publishes the used entries and interrupts the driver once per batch.
package blk

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"gureum/storage"
	"gureum/vmm/guestmem"
	"gureum/vmm/virtio"
)

// Feature bits (virtio 1.x, 5.2.3).
const (
	FeatureSegMax      = 2
	FeatureRO          = 5
	FeatureBlkSize     = 6
	FeatureFlush       = 9
	FeatureDiscard     = 13
	FeatureWriteZeroes = 14
)

// SectorSize is the unit of request sectors and of capacity, whatever the
// disk's own block size.
const SectorSize = 512

// QueueSize is the size of the single request queue.
const QueueSize = 256

// IDBytes is the length of the GET_ID answer (VIRTIO_BLK_ID_BYTES).
const IDBytes = 20

// Limits announced in configuration space for discard and write-zeroes.
const (
	maxDiscardSectors  = 1 << 21 // 1 GiB per segment
	maxDiscardSegments = 32
	discardAlignment   = 8 // sectors: 4 KiB granularity
)

// Offsets in the device configuration structure (struct virtio_blk_config).
const (
	cfgCapacity              = 0x00 // le64, in sectors
	cfgSegMax                = 0x0c // le32
	cfgBlkSize               = 0x14 // le32
	cfgMaxDiscardSectors     = 0x24 // le32
	cfgMaxDiscardSeg         = 0x28 // le32
	cfgDiscardAlignment      = 0x2c // le32
	cfgMaxWriteZeroesSectors = 0x30 // le32
	cfgMaxWriteZeroesSeg     = 0x34 // le32
	cfgWriteZeroesMayUnmap   = 0x38 // u8
	configSize               = 0x3c
)

// Metrics are a disk's request counters.
type Metrics struct {
	ReadOps, ReadBytes   uint64
	WriteOps, WriteBytes uint64
	Flushes              uint64
	Discards             uint64 // discard and write-zeroes requests
	// Errors counts requests that failed (I/O error, out of range,
	// unsupported) and malformed chains the device refused.
	Errors uint64
}

// Device is a virtio-blk device. Its methods are called on the event loop
// goroutine, except Metrics, which any goroutine may call.
type Device struct {
	disk      storage.Disk
	discarder storage.Discarder // nil if the disk cannot discard
	serial    [IDBytes]byte
	size      int64 // capacity in bytes, a multiple of SectorSize

	mem   *guestmem.Memory
	queue *virtio.Queue
	irq   virtio.Interrupter

	readOps, readBytes, writeOps, writeBytes atomic.Uint64
	flushes, discards, errors                atomic.Uint64
}

var _ virtio.Device = (*Device)(nil)

// New returns a virtio-blk device over disk. serial is what GET_ID answers
// (the guest's /sys/block/vdX/serial); it is cut to IDBytes.
func New(disk storage.Disk, serial string) *Device {
	d := &Device{disk: disk, size: disk.Size() &^ (SectorSize - 1)}
	copy(d.serial[:], serial)
	if dis, ok := disk.(storage.Discarder); ok && !disk.ReadOnly() {
		d.discarder = dis
	}
	return d
}

// Type is virtio.IDBlock.
func (d *Device) Type() uint16 { return virtio.IDBlock }

// Features offers segment and block size hints, flush, read-only for
// read-only disks, and discard and write-zeroes when the disk can discard.
func (d *Device) Features() uint64 {
	f := uint64(1<<FeatureSegMax | 1<<FeatureBlkSize | 1<<FeatureFlush)
	if d.disk.ReadOnly() {
		f |= 1 << FeatureRO
	}
	if d.discarder != nil {
		f |= 1<<FeatureDiscard | 1<<FeatureWriteZeroes
	}
	return f
}

// QueueSizes is one request queue (no multiqueue).
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig serves struct virtio_blk_config.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var c [configSize]byte
	le := binary.LittleEndian
	le.PutUint64(c[cfgCapacity:], uint64(d.size/SectorSize))
	le.PutUint32(c[cfgSegMax:], QueueSize-2) // minus header and status
	le.PutUint32(c[cfgBlkSize:], SectorSize)
	if d.discarder != nil {
		le.PutUint32(c[cfgMaxDiscardSectors:], maxDiscardSectors)
		le.PutUint32(c[cfgMaxDiscardSeg:], maxDiscardSegments)
		le.PutUint32(c[cfgDiscardAlignment:], discardAlignment)
		le.PutUint32(c[cfgMaxWriteZeroesSectors:], maxDiscardSectors)
		le.PutUint32(c[cfgMaxWriteZeroesSeg:], maxDiscardSegments)
		c[cfgWriteZeroesMayUnmap] = 1
	}
	for i := range data {
		data[i] = 0
		if o := offset + uint64(i); o < configSize {
			data[i] = c[o]
		}
	}
}

// WriteConfig ignores writes: no field is writable without CONFIG_WCE.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate starts serving queue 0.
func (d *Device) Activate(env virtio.Env, features uint64, queues []*virtio.Queue, irq virtio.Interrupter) error {
	if len(queues) != 1 || queues[0] == nil {
		return fmt.Errorf("virtio-blk: request queue not enabled")
	}
	if env.Mem == nil {
		return fmt.Errorf("virtio-blk: no guest memory")
	}
	d.mem, d.queue, d.irq = env.Mem, queues[0], irq
	return nil
}

// Reset forgets the queue; the device is inactive until Activate.
func (d *Device) Reset() {
	d.mem, d.queue, d.irq = nil, nil, nil
}

// Notify runs every request the driver has made available, then
// interrupts once if the driver wants it.
func (d *Device) Notify(i int) {
	q := d.queue
	if i != 0 || q == nil {
		return
	}
	for {
		c, ok, err := q.Pop(d.mem)
		if !ok {
			break
		}
		var written uint32
		if err != nil {
			d.errors.Add(1) // malformed chain: return it untouched
		} else {
			written = d.handle(&c)
		}
		if err := q.Push(d.mem, c.Head, written); err != nil {
			d.errors.Add(1)
			break
		}
	}
	if q.NeedsInterrupt(d.mem) {
		d.irq.Queue(0)
	}
}

// Resize announces a new disk size (the storage layer has already grown or
// shrunk the disk): capacity changes and the driver gets a configuration
// interrupt, after which it re-reads capacity.
func (d *Device) Resize(newSize int64) {
	d.size = newSize &^ (SectorSize - 1)
	if d.irq != nil {
		d.irq.Config()
	}
}

// Metrics returns the device's counters. Safe from any goroutine.
func (d *Device) Metrics() Metrics {
	return Metrics{
		ReadOps: d.readOps.Load(), ReadBytes: d.readBytes.Load(),
		WriteOps: d.writeOps.Load(), WriteBytes: d.writeBytes.Load(),
		Flushes: d.flushes.Load(), Discards: d.discards.Load(), Errors: d.errors.Load(),
	}
}

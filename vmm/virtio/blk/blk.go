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
// pread or pwrite per guest buffer, no copy through a Go buffer), and
// publishes each request's used entry, with an interrupt if the driver
// wants one, as soon as that request is done.
//
// Two run-time abilities serve the storage layer (limits.go):
//
//   - I/O limits: a ratelimit.Limiter may refuse a request for now; the
//     device then holds it, stops taking new ones (so requests complete
//     in order), and arms a timer that resumes the queue on the event loop.
//   - Changing the disk under a running guest: SetDisk swaps the backing
//     disk (attach, detach, switch to a new snapshot top) and Resize
//     changes the capacity; both raise a configuration-change interrupt
//     when the size the guest sees changes, and the driver re-reads it.
package blk

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"gureum/storage"
	"gureum/storage/ratelimit"
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
	// Throttled counts requests the I/O limiter made wait.
	Throttled uint64
}

// Device is a virtio-blk device. Its methods are called on the event loop
// goroutine, except Metrics, which any goroutine may call.
type Device struct {
	disk      storage.Disk      // nil: an empty drive slot (capacity 0)
	discarder storage.Discarder // nil if the disk cannot discard
	serial    [IDBytes]byte
	size      int64  // capacity in bytes, a multiple of SectorSize
	offered   uint64 // feature bits, fixed at New (see Features)

	mem   *guestmem.Memory
	queue *virtio.Queue
	irq   virtio.Interrupter
	loop  virtio.Loop

	// I/O limits (limits.go). held is a popped request the limiter
	// refused; while it is set the queue is not read further.
	limiter *ratelimit.Limiter
	held    *virtio.Chain
	timer   *time.Timer
	epoch   uint64 // bumped by Reset: a timer armed before it does nothing

	readOps, readBytes, writeOps, writeBytes atomic.Uint64
	flushes, discards, errors, throttled     atomic.Uint64
}

var _ virtio.Device = (*Device)(nil)

// New returns a virtio-blk device over disk. serial is what GET_ID answers
// (the guest's /sys/block/vdX/serial); it is cut to IDBytes.
//
// A nil disk makes an empty drive slot: capacity 0 until SetDisk attaches
// a disk. Features are negotiated once per driver reset, so they are
// chosen here and never change: a slot offers discard and write-zeroes
// (answered UNSUPP if the disk attached later cannot discard) and does not
// offer read-only (a read-only disk attached later fails writes with
// IOERR instead).
func New(disk storage.Disk, serial string) *Device {
	d := &Device{}
	copy(d.serial[:], serial)
	d.offered = 1<<FeatureSegMax | 1<<FeatureBlkSize | 1<<FeatureFlush
	if disk == nil {
		d.offered |= 1<<FeatureDiscard | 1<<FeatureWriteZeroes
		return d
	}
	if disk.ReadOnly() {
		d.offered |= 1 << FeatureRO
	}
	if _, ok := disk.(storage.Discarder); ok && !disk.ReadOnly() {
		d.offered |= 1<<FeatureDiscard | 1<<FeatureWriteZeroes
	}
	d.setDisk(disk)
	return d
}

// setDisk points the device at disk (nil: empty) without telling the guest.
func (d *Device) setDisk(disk storage.Disk) {
	d.disk, d.discarder, d.size = disk, nil, 0
	if disk == nil {
		return
	}
	d.size = disk.Size() &^ (SectorSize - 1)
	if dis, ok := disk.(storage.Discarder); ok && !disk.ReadOnly() {
		d.discarder = dis
	}
}

// Type is virtio.IDBlock.
func (d *Device) Type() uint16 { return virtio.IDBlock }

// Features offers segment and block size hints, flush, read-only for
// read-only disks, and discard and write-zeroes when the disk can discard
// (always for an empty slot; see New).
func (d *Device) Features() uint64 { return d.offered }

// QueueSizes is one request queue (no multiqueue).
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig serves struct virtio_blk_config.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var c [configSize]byte
	le := binary.LittleEndian
	le.PutUint64(c[cfgCapacity:], uint64(d.size/SectorSize))
	le.PutUint32(c[cfgSegMax:], QueueSize-2) // minus header and status
	le.PutUint32(c[cfgBlkSize:], SectorSize)
	if d.offered&(1<<FeatureDiscard) != 0 {
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
	d.mem, d.queue, d.irq, d.loop = env.Mem, queues[0], irq, env.Loop
	return nil
}

// Reset forgets the queue; the device is inactive until Activate. A
// request held back by the limiter is dropped with the ring it came from.
func (d *Device) Reset() {
	d.mem, d.queue, d.irq, d.loop = nil, nil, nil, nil
	d.dropHeld()
}

// Notify runs every request the driver has made available, then
// interrupts once if the driver wants it. While a request waits for the
// limiter the kick is ignored: the limiter's timer resumes the queue.
func (d *Device) Notify(i int) {
	if i != 0 || d.queue == nil || d.held != nil {
		return
	}
	d.serve()
}

// serve runs requests until the ring is empty or the limiter refuses one.
func (d *Device) serve() {
	q := d.queue
	for {
		var c virtio.Chain
		var err error
		if d.held != nil {
			c, d.held = *d.held, nil
		} else {
			var ok bool
			c, ok, err = q.Pop(d.mem)
			if !ok {
				break
			}
		}
		if err == nil && !d.admit(&c) {
			break // held; the timer calls serve again
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
		// Each completion is signalled at once, not after the batch:
		// the guest, woken on another CPU, handles it (and resubmits)
		// while the device does the next request, instead of the two
		// taking turns.
		if q.NeedsInterrupt(d.mem) {
			d.irq.Queue(0)
		}
	}
}

// Resize announces a new disk size (the storage layer has already grown
// the disk): capacity changes and the driver gets a configuration
// interrupt, after which it re-reads capacity.
func (d *Device) Resize(newSize int64) {
	d.size = newSize &^ (SectorSize - 1)
	if d.irq != nil {
		d.irq.Config()
	}
}

// SetDisk replaces the disk under the device: attach into an empty slot,
// detach (nil), or continue on a new top file of the same volume. Requests
// run on the event loop one at a time, so the swap falls between two
// requests; the caller flushes the old disk first and closes it after. The
// guest gets a configuration interrupt if the capacity changed.
func (d *Device) SetDisk(disk storage.Disk) {
	old := d.size
	d.setDisk(disk)
	if d.size != old && d.irq != nil {
		d.irq.Config()
	}
}

// Disk returns the disk the device serves, or nil for an empty slot.
func (d *Device) Disk() storage.Disk { return d.disk }

// Metrics returns the device's counters. Safe from any goroutine.
func (d *Device) Metrics() Metrics {
	return Metrics{
		ReadOps: d.readOps.Load(), ReadBytes: d.readBytes.Load(),
		WriteOps: d.writeOps.Load(), WriteBytes: d.writeBytes.Load(),
		Flushes: d.flushes.Load(), Discards: d.discards.Load(), Errors: d.errors.Load(),
		Throttled: d.throttled.Load(),
	}
}

package virtio

import "encoding/binary"

// Common configuration structure (virtio 1.x, 4.1.4.3): the registers a
// driver uses to negotiate features, drive device_status and set up queues.
// Registers prefixed "queue" act on the queue named by queue_select.
const (
	regDeviceFeatureSelect = 0x00 // le32 RW
	regDeviceFeature       = 0x04 // le32 RO: 32 offered bits, chosen by the select
	regDriverFeatureSelect = 0x08 // le32 RW
	regDriverFeature       = 0x0c // le32 RW: 32 accepted bits
	regConfigMSIXVector    = 0x10 // le16 RW
	regNumQueues           = 0x12 // le16 RO
	regDeviceStatus        = 0x14 // u8 RW
	regConfigGeneration    = 0x15 // u8 RO: changes when device config changes
	regQueueSelect         = 0x16 // le16 RW
	regQueueSize           = 0x18 // le16 RW until enabled
	regQueueMSIXVector     = 0x1a // le16 RW
	regQueueEnable         = 0x1c // le16 RW: write 1 to enable
	regQueueNotifyOff      = 0x1e // le16 RO
	regQueueDesc           = 0x20 // le64 RW until enabled
	regQueueDriver         = 0x28 // le64 RW until enabled (available ring)
	regQueueDevice         = 0x30 // le64 RW until enabled (used ring)
	commonCfgSize          = 0x38
)

// commonFields lists each register's offset and width, in address order.
var commonFields = [...]struct{ off, size uint64 }{
	{regDeviceFeatureSelect, 4}, {regDeviceFeature, 4},
	{regDriverFeatureSelect, 4}, {regDriverFeature, 4},
	{regConfigMSIXVector, 2}, {regNumQueues, 2},
	{regDeviceStatus, 1}, {regConfigGeneration, 1},
	{regQueueSelect, 2}, {regQueueSize, 2}, {regQueueMSIXVector, 2},
	{regQueueEnable, 2}, {regQueueNotifyOff, 2},
	{regQueueDesc, 8}, {regQueueDriver, 8}, {regQueueDevice, 8},
}

// selectedQueue is the queue queue_select names, or nil past the last one
// (its registers then read 0 and ignore writes).
func (t *PCITransport) selectedQueue() *Queue {
	if int(t.queueSelect) >= len(t.queues) {
		return nil
	}
	return &t.queues[t.queueSelect]
}

// commonSnapshot lays out every register's current value. Reads copy bytes
// out of it, so accesses of any width or alignment work alike; writes patch
// it and then apply the registers they touched.
func (t *PCITransport) commonSnapshot() [commonCfgSize]byte {
	var b [commonCfgSize]byte
	le := binary.LittleEndian
	le.PutUint32(b[regDeviceFeatureSelect:], t.deviceFeatureSelect)
	if t.deviceFeatureSelect < 2 {
		le.PutUint32(b[regDeviceFeature:], uint32(t.offeredFeatures()>>(32*t.deviceFeatureSelect)))
	}
	le.PutUint32(b[regDriverFeatureSelect:], t.driverFeatureSelect)
	if t.driverFeatureSelect < 2 {
		le.PutUint32(b[regDriverFeature:], uint32(t.driverFeatures>>(32*t.driverFeatureSelect)))
	}
	le.PutUint16(b[regConfigMSIXVector:], t.configVector)
	le.PutUint16(b[regNumQueues:], uint16(len(t.queues)))
	b[regDeviceStatus] = t.status
	b[regConfigGeneration] = t.generation
	le.PutUint16(b[regQueueSelect:], t.queueSelect)
	if q := t.selectedQueue(); q != nil {
		le.PutUint16(b[regQueueSize:], q.Size)
		le.PutUint16(b[regQueueMSIXVector:], t.vectors[t.queueSelect])
		if q.Ready {
			le.PutUint16(b[regQueueEnable:], 1)
		}
		le.PutUint16(b[regQueueNotifyOff:], t.queueSelect)
		le.PutUint64(b[regQueueDesc:], q.DescAddr)
		le.PutUint64(b[regQueueDriver:], q.AvailAddr)
		le.PutUint64(b[regQueueDevice:], q.UsedAddr)
	}
	return b
}

// readCommon serves a read of the common configuration region.
func (t *PCITransport) readCommon(off uint64, data []byte) {
	snap := t.commonSnapshot()
	for i := range data {
		if o := off + uint64(i); o < commonCfgSize {
			data[i] = snap[o]
		}
	}
}

// writeCommon serves a write: patch the snapshot, then apply each register
// the write touched with its full new value. A 32-bit half of a 64-bit
// queue address thus updates only that half.
func (t *PCITransport) writeCommon(off uint64, data []byte) {
	if off >= commonCfgSize {
		return
	}
	snap := t.commonSnapshot()
	end := off + uint64(len(data))
	if end > commonCfgSize {
		end = commonCfgSize
	}
	copy(snap[off:end], data)
	for _, f := range commonFields {
		if f.off >= end || f.off+f.size <= off {
			continue
		}
		var v uint64
		for i := f.size; i > 0; i-- {
			v = v<<8 | uint64(snap[f.off+i-1])
		}
		t.setCommon(f.off, v)
	}
}

// setCommon applies a new value to one register.
func (t *PCITransport) setCommon(reg, v uint64) {
	switch reg {
	case regDeviceFeatureSelect:
		t.deviceFeatureSelect = uint32(v)
	case regDriverFeatureSelect:
		t.driverFeatureSelect = uint32(v)
	case regDriverFeature:
		// Features are fixed once FEATURES_OK is set; selects past the
		// second word name no features.
		if t.status&StatusFeaturesOK == 0 && t.driverFeatureSelect < 2 {
			shift := 32 * t.driverFeatureSelect
			t.driverFeatures = t.driverFeatures&^(0xffffffff<<shift) | v<<shift
		}
	case regConfigMSIXVector:
		t.configVector = t.validVector(uint16(v))
	case regDeviceStatus:
		t.setStatus(uint8(v))
	case regQueueSelect:
		t.queueSelect = uint16(v)
	case regQueueMSIXVector:
		if t.selectedQueue() != nil {
			t.vectors[t.queueSelect] = t.validVector(uint16(v))
		}
	case regQueueEnable:
		t.enableQueue(v)
	case regQueueSize, regQueueDesc, regQueueDriver, regQueueDevice:
		q := t.selectedQueue()
		if q == nil || q.Ready || t.status&StatusDriverOK != 0 {
			return // fixed once the queue is enabled
		}
		switch reg {
		case regQueueSize:
			q.Size = uint16(v)
		case regQueueDesc:
			q.DescAddr = v
		case regQueueDriver:
			q.AvailAddr = v
		case regQueueDevice:
			q.UsedAddr = v
		}
	}
}

// validVector maps an out-of-range MSI-X vector to NoVector, which the
// driver reads back to learn the assignment failed.
func (t *PCITransport) validVector(v uint16) uint16 {
	if int(v) >= t.msix.vectors() {
		return NoVector
	}
	return v
}

// enableQueue handles a write to queue_enable. The queue is checked before
// it goes live: a bad size or ring address leaves it disabled and counts a
// transport error. Writing 0 is not allowed by the spec and is ignored.
func (t *PCITransport) enableQueue(v uint64) {
	q := t.selectedQueue()
	if q == nil || v != 1 || q.Ready || t.status&StatusDriverOK != 0 {
		return
	}
	if err := q.Validate(t.env.Mem, t.maxSizes[t.queueSelect]); err != nil {
		t.errors.Add(1)
		return
	}
	q.Ready = true
}

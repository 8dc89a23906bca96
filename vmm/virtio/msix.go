package virtio

import "encoding/binary"

// MSI-X (PCI Local Bus 3.0, 6.8.2) replaces interrupt pins with memory
// writes: the guest programs a table of (address, data) pairs, and the
// device raises vector v by "writing" entry v's data to its address, which
// KVM turns into an interrupt on the chosen vCPU. Each entry has a mask bit,
// and the capability's message control has a function mask and an enable
// bit. An interrupt raised while masked is remembered in the pending bit
// array (PBA) and delivered when the mask is lifted.

// NoVector is VIRTIO_MSI_NO_VECTOR: the driver wants no interrupt for a
// queue or for configuration changes.
const NoVector = 0xffff

// MSI-X message control bits (in the capability, offset 2).
const (
	msixControlEnable       = 1 << 15
	msixControlFunctionMask = 1 << 14
	msixEntrySize           = 16
	msixEntryMasked         = 1 // vector control bit 0
)

// msixTable holds the table and pending bits of one function. It is used
// only as device code (under the event loop's device lock).
type msixTable struct {
	entries []byte   // msixEntrySize bytes per vector, as the guest sees them
	pending []uint64 // one bit per vector
}

func newMSIXTable(vectors int) *msixTable {
	t := &msixTable{
		entries: make([]byte, vectors*msixEntrySize),
		pending: make([]uint64, (vectors+63)/64),
	}
	for v := 0; v < vectors; v++ {
		t.entries[v*msixEntrySize+12] = msixEntryMasked // entries start masked
	}
	return t
}

func (t *msixTable) vectors() int { return len(t.entries) / msixEntrySize }

// readTable serves a guest read of the table; bytes past it read zero.
func (t *msixTable) readTable(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0
		if o := offset + uint64(i); o < uint64(len(t.entries)) {
			data[i] = t.entries[o]
		}
	}
}

// writeTable serves a guest write of the table. Only bit 0 of each vector
// control word is writable; the rest of that word is reserved and stays 0.
func (t *msixTable) writeTable(offset uint64, data []byte) {
	for i, v := range data {
		o := offset + uint64(i)
		if o >= uint64(len(t.entries)) {
			return
		}
		switch o % msixEntrySize {
		case 12:
			v &= msixEntryMasked
		case 13, 14, 15:
			v = 0
		}
		t.entries[o] = v
	}
}

// readPBA serves a guest read of the pending bit array (read-only).
func (t *msixTable) readPBA(offset uint64, data []byte) {
	var raw [8]byte
	for i := range data {
		data[i] = 0
		o := offset + uint64(i)
		if w := o / 8; w < uint64(len(t.pending)) {
			binary.LittleEndian.PutUint64(raw[:], t.pending[w])
			data[i] = raw[o%8]
		}
	}
}

func (t *msixTable) masked(v int) bool {
	return t.entries[v*msixEntrySize+12]&msixEntryMasked != 0
}

func (t *msixTable) message(v int) (addr uint64, data uint32) {
	e := t.entries[v*msixEntrySize:]
	return binary.LittleEndian.Uint64(e[0:]), binary.LittleEndian.Uint32(e[8:])
}

func (t *msixTable) setPending(v int, on bool) {
	if on {
		t.pending[v/64] |= 1 << (v % 64)
	} else {
		t.pending[v/64] &^= 1 << (v % 64)
	}
}

func (t *msixTable) isPending(v int) bool { return t.pending[v/64]&(1<<(v%64)) != 0 }

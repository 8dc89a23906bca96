package blk_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"gureum/storage"
	"gureum/storage/raw"
	"gureum/vmm/devices"
	"gureum/vmm/pci"
	"gureum/vmm/virtio"
	"gureum/vmm/virtio/blk"
	"gureum/vmm/virtio/virtiotest"
)

const (
	memSize   = 8 << 20
	ringBase  = 0x1000
	dataBase  = 0x100000 // request buffers are carved from here up
	diskSize  = 1 << 20
	msiAddr   = 0xfee00000
	queueData = 0x51
	cfgData   = 0x50
)

// harness is a virtio-blk device behind the PCI transport, a guest memory,
// and a test driver that talks to it through MMIO like the Linux driver.
type harness struct {
	t    testing.TB
	path string
	disk storage.Disk
	dev  *blk.Device
	tr   *virtio.PCITransport
	mmio *devices.Bus
	msi  *virtiotest.MSI
	hub  *virtiotest.NotifyHub
	loop *virtiotest.Loop
	ring *virtiotest.Ring
	bar  uint64
	next uint64 // next free buffer address
}

func newDisk(t *testing.T, readOnly bool) (string, storage.Disk) {
	t.Helper()
	return newDiskTB(t, readOnly)
}

func newDiskB(b *testing.B) (string, storage.Disk) { return newDiskTB(b, false) }

func newDiskTB(t testing.TB, readOnly bool) (string, storage.Disk) {
	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, diskSize); err != nil {
		t.Fatal(err)
	}
	d, err := raw.Open(path, readOnly)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return path, d
}

func newHarness(t *testing.T, readOnly bool) *harness {
	t.Helper()
	path, disk := newDisk(t, readOnly)
	return newHarnessOn(t, path, disk)
}

func newHarnessOn(t *testing.T, path string, disk storage.Disk) *harness {
	t.Helper()
	h := &harness{t: t, path: path, disk: disk, mmio: &devices.Bus{}, msi: &virtiotest.MSI{},
		hub: &virtiotest.NotifyHub{}, loop: &virtiotest.Loop{}, next: dataBase}
	mem := virtiotest.NewMemory(memSize)
	h.dev = blk.New(disk, "gureum-serial-0123456789")
	tr, err := virtio.NewPCITransport(h.dev, virtio.Env{Mem: mem, MSI: h.msi, Notify: h.hub, Loop: h.loop})
	if err != nil {
		t.Fatal(err)
	}
	h.tr = tr
	bus := pci.NewBus(h.mmio)
	if _, err := bus.Add("virtio-blk", tr); err != nil {
		t.Fatal(err)
	}
	h.bar = tr.ConfigSpace().BARAddress(0)
	h.ring, _ = virtiotest.NewRing(mem, ringBase, blk.QueueSize)
	return h
}

func (h *harness) write(off uint64, size int, v uint64) {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	if !h.mmio.Write(h.bar+off, b[:size]) {
		h.t.Fatalf("write bar+%#x unclaimed", off)
	}
}

func (h *harness) read(off uint64, size int) uint64 {
	b := make([]byte, 8)
	if !h.mmio.Read(h.bar+off, b[:size]) {
		h.t.Fatalf("read bar+%#x unclaimed", off)
	}
	return binary.LittleEndian.Uint64(b)
}

// start brings the device up the way the Linux driver does.
func (h *harness) start(queueSize uint16) {
	h.t.Helper()
	const ack, drv, fok, dok = 1, 2, 8, 4
	h.write(0x14, 1, 0)
	h.write(0x14, 1, ack|drv)
	h.write(0x00, 4, 0)
	lo := h.read(0x04, 4)
	h.write(0x00, 4, 1)
	hi := h.read(0x04, 4)
	h.write(0x08, 4, 0)
	h.write(0x0c, 4, lo)
	h.write(0x08, 4, 1)
	h.write(0x0c, 4, hi)
	h.write(0x14, 1, ack|drv|fok)
	if h.read(0x14, 1)&fok == 0 {
		h.t.Fatal("FEATURES_OK refused")
	}
	// MSI-X: enable in config space, vector 0 config, vector 1 queue 0.
	cs := h.tr.ConfigSpace()
	for p := uint64(cs.Uint16(pci.RegCapPointer) & 0xff); p != 0; p = uint64(cs.Uint16(p) >> 8) {
		if cs.Uint16(p)&0xff == pci.CapMSIX {
			cs.Write(p+2, []byte{0, 0x80})
		}
	}
	for v, data := range []uint32{cfgData, queueData} {
		e := uint64(0x4000 + 16*v)
		h.write(e, 8, msiAddr)
		h.write(e+8, 4, uint64(data))
		h.write(e+12, 4, 0)
	}
	h.write(0x10, 2, 0)
	h.write(0x16, 2, 0)
	h.write(0x18, 2, uint64(queueSize))
	h.write(0x20, 8, h.ring.DescAddr)
	h.write(0x28, 8, h.ring.AvailAddr)
	h.write(0x30, 8, h.ring.UsedAddr)
	h.write(0x1a, 2, 1)
	h.write(0x1c, 2, 1)
	h.write(0x14, 1, ack|drv|fok|dok)
}

// buf allocates n bytes of guest memory for a request buffer.
func (h *harness) buf(n uint32, fill []byte) uint64 {
	a := h.next
	h.next = (h.next + uint64(n) + 15) &^ 15
	s, err := h.ring.Mem.Slice(a, uint64(n))
	if err != nil {
		h.t.Fatal(err)
	}
	copy(s, fill)
	return a
}

func (h *harness) header(typ uint32, sector uint64) virtiotest.Seg {
	var b [16]byte
	binary.LittleEndian.PutUint32(b[0:], typ)
	binary.LittleEndian.PutUint64(b[8:], sector)
	return virtiotest.Seg{Addr: h.buf(16, b[:]), Len: 16}
}

func (h *harness) status() (virtiotest.Seg, uint64) {
	a := h.buf(1, []byte{0xee})
	return virtiotest.Seg{Addr: a, Len: 1, Writable: true}, a
}

// kick notifies queue 0 through the ioeventfd and returns the next used
// element.
func (h *harness) kick() (id, length uint32) {
	h.t.Helper()
	if !h.hub.Kick(h.bar + 0x3000) {
		h.t.Fatal("no ioeventfd on queue 0")
	}
	id, length, ok := h.ring.Used()
	if !ok {
		h.t.Fatal("request not completed")
	}
	return id, length
}

// do submits a chain ending in a status byte and returns status and used length.
func (h *harness) do(segs ...virtiotest.Seg) (byte, uint32) {
	h.t.Helper()
	st, at := h.status()
	head := h.ring.AddChain(append(segs, st)...)
	id, n := h.kick()
	if id != uint32(head) {
		h.t.Fatalf("used id %d, want %d", id, head)
	}
	s, _ := h.ring.Mem.Slice(at, 1)
	return s[0], n
}

func (h *harness) bytesAt(a uint64, n int) []byte {
	s, err := h.ring.Mem.Slice(a, uint64(n))
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

const (
	tIn, tOut, tFlush, tGetID, tDiscard, tWriteZeroes = 0, 1, 4, 8, 11, 13
	sOK, sIOErr, sUnsupp                              = 0, 1, 2
)

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func TestWriteReadRoundTrip(t *testing.T) {
	h := newHarness(t, false)
	h.start(blk.QueueSize)
	data := pattern(4096+512, 3)
	a1 := h.buf(4096, data[:4096])
	a2 := h.buf(512, data[4096:])
	st, n := h.do(h.header(tOut, 3), virtiotest.Seg{Addr: a1, Len: 4096}, virtiotest.Seg{Addr: a2, Len: 512})
	if st != sOK || n != 1 {
		t.Fatalf("write: status %d len %d", st, n)
	}
	file, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file[3*512:3*512+len(data)], data) {
		t.Fatal("file does not hold the written data")
	}
	if m := h.msi.Take(); len(m) != 1 || m[0].Data != queueData {
		t.Fatalf("interrupts %v", m)
	}
	// Read it back into three buffers of odd sizes; the status byte shares
	// the last buffer with data, as the spec allows.
	r1, r2, r3 := h.buf(100, nil), h.buf(3000, nil), h.buf(1509, nil)
	head := h.ring.AddChain(h.header(tIn, 3),
		virtiotest.Seg{Addr: r1, Len: 100, Writable: true},
		virtiotest.Seg{Addr: r2, Len: 3000, Writable: true},
		virtiotest.Seg{Addr: r3, Len: 1509, Writable: true})
	id, n := h.kick()
	if id != uint32(head) || n != 4096+512+1 {
		t.Fatalf("read: id %d len %d", id, n)
	}
	got := append(append(append([]byte(nil), h.bytesAt(r1, 100)...), h.bytesAt(r2, 3000)...), h.bytesAt(r3, 1508)...)
	if !bytes.Equal(got, data) {
		t.Fatal("read back different data")
	}
	if s := h.bytesAt(r3+1508, 1)[0]; s != sOK {
		t.Fatalf("read status %d", s)
	}
	m := h.dev.Metrics()
	if m.ReadOps != 1 || m.WriteOps != 1 || m.ReadBytes != 4608 || m.WriteBytes != 4608 || m.Errors != 0 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestIndirectLargeRequest(t *testing.T) {
	h := newHarness(t, false)
	h.start(blk.QueueSize)
	const n = 512 << 10
	data := pattern(n, 9)
	a := h.buf(n, data)
	st, at := h.status()
	h.ring.AddIndirect(h.buf(64, nil), h.header(tOut, 0), virtiotest.Seg{Addr: a, Len: n}, st)
	if _, l := h.kick(); l != 1 || h.bytesAt(at, 1)[0] != sOK {
		t.Fatalf("large write: len %d status %d", l, h.bytesAt(at, 1)[0])
	}
	file, _ := os.ReadFile(h.path)
	if !bytes.Equal(file[:n], data) {
		t.Fatal("large write not on disk")
	}
}

func TestFlushAndGetID(t *testing.T) {
	h := newHarness(t, false)
	h.start(blk.QueueSize)
	if st, n := h.do(h.header(tFlush, 0)); st != sOK || n != 1 {
		t.Fatalf("flush: %d %d", st, n)
	}
	id := h.buf(20, nil)
	st, n := h.do(h.header(tGetID, 0), virtiotest.Seg{Addr: id, Len: 20, Writable: true})
	if st != sOK || n != 21 || string(h.bytesAt(id, 20)) != "gureum-serial-012345" {
		t.Fatalf("get id: %d %d %q", st, n, h.bytesAt(id, 20))
	}
	if m := h.dev.Metrics(); m.Flushes != 1 {
		t.Fatalf("flushes %d", m.Flushes)
	}
}

func TestRequestErrors(t *testing.T) {
	h := newHarness(t, false)
	h.start(blk.QueueSize)
	sectors := uint64(diskSize / 512)
	cases := []struct {
		name string
		typ  uint32
		sec  uint64
		len  uint32
		in   bool
		want byte
	}{
		{"read past end", tIn, sectors, 512, true, sIOErr},
		{"read straddling end", tIn, sectors - 1, 1024, true, sIOErr},
		{"write past end", tOut, sectors, 512, false, sIOErr},
		{"sector overflow", tIn, 1 << 62, 512, true, sIOErr},
		{"partial sector", tOut, 0, 100, false, sIOErr},
		{"unknown type", 10, 0, 0, false, sUnsupp},
		{"unknown type 2", 0xffffffff, 0, 0, false, sUnsupp},
		{"discard unmap flag", tDiscard, 0, 0, false, sUnsupp},
	}
	for i, c := range cases {
		segs := []virtiotest.Seg{h.header(c.typ, c.sec)}
		if c.len > 0 {
			segs = append(segs, virtiotest.Seg{Addr: h.buf(c.len, nil), Len: c.len, Writable: c.in})
		}
		if c.name == "discard unmap flag" {
			var seg [16]byte
			binary.LittleEndian.PutUint32(seg[8:], 8)
			binary.LittleEndian.PutUint32(seg[12:], 1)
			segs = append(segs, virtiotest.Seg{Addr: h.buf(16, seg[:]), Len: 16})
		}
		if st, n := h.do(segs...); st != c.want || n != 1 {
			t.Errorf("%s: status %d len %d, want %d", c.name, st, n, c.want)
		}
		if e := h.dev.Metrics().Errors; e != uint64(i+1) {
			t.Errorf("%s: errors %d", c.name, e)
		}
	}
}

func TestReadOnlyDisk(t *testing.T) {
	h := newHarness(t, true)
	if f := h.dev.Features(); f&(1<<blk.FeatureRO) == 0 || f&(1<<blk.FeatureDiscard) != 0 {
		t.Fatalf("features %#x", f)
	}
	h.start(blk.QueueSize)
	if st, _ := h.do(h.header(tOut, 0), virtiotest.Seg{Addr: h.buf(512, nil), Len: 512}); st != sIOErr {
		t.Fatalf("write to read-only disk: status %d", st)
	}
	var seg [16]byte
	binary.LittleEndian.PutUint32(seg[8:], 8)
	if st, _ := h.do(h.header(tDiscard, 0), virtiotest.Seg{Addr: h.buf(16, seg[:]), Len: 16}); st != sUnsupp {
		t.Fatalf("discard on read-only disk: status %d", st)
	}
	if st, _ := h.do(h.header(tIn, 0), virtiotest.Seg{Addr: h.buf(512, nil), Len: 512, Writable: true}); st != sOK {
		t.Fatalf("read from read-only disk: status %d", st)
	}
}

func TestDiscardAndWriteZeroes(t *testing.T) {
	h := newHarness(t, false)
	if f := h.dev.Features(); f&(1<<blk.FeatureDiscard) == 0 || f&(1<<blk.FeatureWriteZeroes) == 0 {
		t.Fatalf("features %#x", f)
	}
	h.start(blk.QueueSize)
	data := pattern(16384, 1)
	if st, _ := h.do(h.header(tOut, 0), virtiotest.Seg{Addr: h.buf(16384, data), Len: 16384}); st != sOK {
		t.Fatal("write failed")
	}
	segs := make([]byte, 32)
	binary.LittleEndian.PutUint64(segs[0:], 0) // sectors 0..7
	binary.LittleEndian.PutUint32(segs[8:], 8)
	binary.LittleEndian.PutUint64(segs[16:], 16) // sectors 16..23
	binary.LittleEndian.PutUint32(segs[24:], 8)
	if st, _ := h.do(h.header(tDiscard, 0), virtiotest.Seg{Addr: h.buf(32, segs), Len: 32}); st != sOK {
		t.Fatalf("discard status %d", st)
	}
	wz := make([]byte, 16)
	binary.LittleEndian.PutUint64(wz[0:], 8)
	binary.LittleEndian.PutUint32(wz[8:], 8)
	binary.LittleEndian.PutUint32(wz[12:], 1) // may unmap
	if st, _ := h.do(h.header(tWriteZeroes, 0), virtiotest.Seg{Addr: h.buf(16, wz), Len: 16}); st != sOK {
		t.Fatalf("write zeroes status %d", st)
	}
	file, _ := os.ReadFile(h.path)
	if !bytes.Equal(file[:12288], make([]byte, 12288)) {
		t.Fatal("discarded range not zero")
	}
	if !bytes.Equal(file[12288:16384], data[12288:]) {
		t.Fatal("data outside the discarded range changed")
	}
	// A segment beyond the disk fails the request.
	binary.LittleEndian.PutUint64(wz[0:], diskSize/512)
	binary.LittleEndian.PutUint32(wz[12:], 0)
	if st, _ := h.do(h.header(tWriteZeroes, 0), virtiotest.Seg{Addr: h.buf(16, wz), Len: 16}); st != sIOErr {
		t.Fatalf("out-of-range write zeroes status %d", st)
	}
	if m := h.dev.Metrics(); m.Discards != 3 || m.Errors != 1 {
		t.Fatalf("metrics %+v", m)
	}
}

// TestHostileChains sends chains a careful driver never would; each must be
// returned with 0 bytes and counted, and the device must go on working.
func TestHostileChains(t *testing.T) {
	h := newHarness(t, false)
	h.start(blk.QueueSize)
	r := h.ring
	hostile := []struct {
		name  string
		build func() uint16
	}{
		{"data outside RAM", func() uint16 {
			st, _ := h.status()
			return r.AddChain(h.header(tIn, 0), virtiotest.Seg{Addr: memSize - 256, Len: 4096, Writable: true}, st)
		}},
		{"header outside RAM", func() uint16 {
			return r.AddChain(virtiotest.Seg{Addr: 1 << 40, Len: 16})
		}},
		{"oversized length", func() uint16 {
			return r.AddChain(h.header(tOut, 0), virtiotest.Seg{Addr: dataBase, Len: 0xffffffff})
		}},
		{"looping chain", func() uint16 {
			hd := h.header(tIn, 0)
			r.WriteDesc(r.DescAddr, 200, hd.Addr, 16, virtiotest.DescNext, 201)
			r.WriteDesc(r.DescAddr, 201, dataBase, 512, virtiotest.DescNext|virtiotest.DescWrite, 200)
			r.Publish(200)
			return 200
		}},
		{"no status byte", func() uint16 {
			return r.AddChain(h.header(tOut, 0), virtiotest.Seg{Addr: h.buf(512, nil), Len: 512})
		}},
		{"short header", func() uint16 {
			st, _ := h.status()
			return r.AddChain(virtiotest.Seg{Addr: h.buf(8, nil), Len: 8}, st)
		}},
		{"only a status byte", func() uint16 {
			st, _ := h.status()
			return r.AddChain(st)
		}},
	}
	for i, c := range hostile {
		head := c.build()
		id, n := h.kick()
		if id != uint32(head) || n != 0 {
			t.Errorf("%s: used id %d len %d, want %d, 0", c.name, id, n, head)
		}
		if e := h.dev.Metrics().Errors; e != uint64(i+1) {
			t.Errorf("%s: errors %d", c.name, e)
		}
	}
	// A header split across two buffers is legal and still works.
	hd := h.header(tGetID, 0)
	id := h.buf(20, nil)
	st, n := h.do(virtiotest.Seg{Addr: hd.Addr, Len: 5}, virtiotest.Seg{Addr: hd.Addr + 5, Len: 11},
		virtiotest.Seg{Addr: id, Len: 20, Writable: true})
	if st != sOK || n != 21 {
		t.Fatalf("good request after hostile ones: status %d len %d", st, n)
	}
}

func TestBadQueueSizeRefused(t *testing.T) {
	h := newHarness(t, false)
	h.start(100) // not a power of two: the queue stays disabled
	if h.tr.Queue(0).Ready {
		t.Fatal("queue with size 100 enabled")
	}
	if s := h.read(0x14, 1); s&4 != 0 || s&64 == 0 {
		t.Fatalf("status %#x: want DRIVER_OK refused and NEEDS_RESET", s)
	}
	if h.tr.Metrics().Errors < 2 {
		t.Fatalf("transport errors %d", h.tr.Metrics().Errors)
	}
	// A reset and a proper setup work.
	h.start(blk.QueueSize)
	if st, _ := h.do(h.header(tFlush, 0)); st != sOK {
		t.Fatal("device unusable after reset")
	}
}

func TestResize(t *testing.T) {
	h := newHarness(t, false)
	h.start(blk.QueueSize)
	if c := h.read(0x2000, 8); c != diskSize/512 {
		t.Fatalf("capacity %d", c)
	}
	gen := h.read(0x15, 1)
	if err := os.Truncate(h.path, 2*diskSize); err != nil {
		t.Fatal(err)
	}
	h.dev.Resize(2*diskSize + 100)
	if c := h.read(0x2000, 8); c != 2*diskSize/512 {
		t.Fatalf("capacity after resize %d", c)
	}
	if g := h.read(0x15, 1); g == gen {
		t.Fatal("config generation unchanged")
	}
	if m := h.msi.Take(); len(m) != 1 || m[0].Data != cfgData {
		t.Fatalf("config interrupt %v", m)
	}
}

func TestConfigSpace(t *testing.T) {
	h := newHarness(t, false)
	if v := h.read(0x2000+0x0c, 4); v != blk.QueueSize-2 {
		t.Errorf("seg_max %d", v)
	}
	if v := h.read(0x2000+0x14, 4); v != 512 {
		t.Errorf("blk_size %d", v)
	}
	if v := h.read(0x2000+0x28, 4); v == 0 {
		t.Error("max_discard_seg zero with discard offered")
	}
	h.write(0x2000, 8, 0)
	if c := h.read(0x2000, 8); c != diskSize/512 {
		t.Errorf("capacity writable: %d", c)
	}
}

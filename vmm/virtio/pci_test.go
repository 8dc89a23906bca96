package virtio_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"gureum/vmm/devices"
	"gureum/vmm/pci"
	"gureum/vmm/virtio"
	"gureum/vmm/virtio/virtiotest"
)

// fakeDevice records what the transport asks of it.
type fakeDevice struct {
	config      [8]byte
	activations int
	resets      int
	features    uint64
	queues      []*virtio.Queue
	irq         virtio.Interrupter
	kicks       []int
	activateErr error
}

func (d *fakeDevice) Type() uint16               { return virtio.IDBlock }
func (d *fakeDevice) Features() uint64           { return 1 << 6 }
func (d *fakeDevice) QueueSizes() []uint16       { return []uint16{16, 8} }
func (d *fakeDevice) Notify(i int)               { d.kicks = append(d.kicks, i) }
func (d *fakeDevice) Reset()                     { d.resets++; d.queues = nil }
func (d *fakeDevice) WriteConfig(uint64, []byte) {}
func (d *fakeDevice) ReadConfig(off uint64, data []byte) {
	for i := range data {
		if o := off + uint64(i); o < uint64(len(d.config)) {
			data[i] = d.config[o]
		}
	}
}
func (d *fakeDevice) Activate(env virtio.Env, features uint64, queues []*virtio.Queue, irq virtio.Interrupter) error {
	if d.activateErr != nil {
		return d.activateErr
	}
	d.activations++
	d.features, d.queues, d.irq = features, queues, irq
	return nil
}

// pciHarness is a virtio-pci device on a PCI bus with a driver that talks
// to it through configuration ports and MMIO, as a guest kernel does.
type pciHarness struct {
	t    *testing.T
	dev  *fakeDevice
	tr   *virtio.PCITransport
	bus  *pci.Bus
	mmio *devices.Bus
	msi  *virtiotest.MSI
	hub  *virtiotest.NotifyHub
	env  virtio.Env
	bar  uint64
}

func newPCIHarness(t *testing.T) *pciHarness {
	t.Helper()
	h := &pciHarness{t: t, dev: &fakeDevice{config: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}},
		mmio: &devices.Bus{}, msi: &virtiotest.MSI{}, hub: &virtiotest.NotifyHub{}}
	h.env = virtio.Env{Mem: virtiotest.NewMemory(testMem), MSI: h.msi, Notify: h.hub, Loop: &virtiotest.Loop{}}
	tr, err := virtio.NewPCITransport(h.dev, h.env)
	if err != nil {
		t.Fatal(err)
	}
	h.tr = tr
	h.bus = pci.NewBus(h.mmio)
	if _, err := h.bus.Add("virtio-blk", tr); err != nil {
		t.Fatal(err)
	}
	h.bar = tr.ConfigSpace().BARAddress(0)
	return h
}

func (h *pciHarness) cfgRead(reg uint64, size int) uint32 {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], 1<<31|1<<11|uint32(reg&0xfc))
	h.bus.Write(0, a[:])
	b := make([]byte, 4)
	h.bus.Read(4+reg&3, b[:size])
	return binary.LittleEndian.Uint32(b)
}

func (h *pciHarness) cfgWrite(reg uint64, size int, v uint32) {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], 1<<31|1<<11|uint32(reg&0xfc))
	h.bus.Write(0, a[:])
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, v)
	h.bus.Write(4+reg&3, b[:size])
}

func (h *pciHarness) read(off uint64, size int) uint64 {
	b := make([]byte, 8)
	if !h.mmio.Read(h.bar+off, b[:size]) {
		h.t.Fatalf("mmio read at bar+%#x not claimed", off)
	}
	return binary.LittleEndian.Uint64(b)
}

func (h *pciHarness) write(off uint64, size int, v uint64) {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	if !h.mmio.Write(h.bar+off, b[:size]) {
		h.t.Fatalf("mmio write at bar+%#x not claimed", off)
	}
}

// Common configuration offsets, as a driver knows them.
const (
	cDFSelect = 0x00
	cDF       = 0x04
	cGFSelect = 0x08
	cGF       = 0x0c
	cMSIXCfg  = 0x10
	cNumQ     = 0x12
	cStatus   = 0x14
	cGen      = 0x15
	cQSelect  = 0x16
	cQSize    = 0x18
	cQMSIX    = 0x1a
	cQEnable  = 0x1c
	cQNotify  = 0x1e
	cQDesc    = 0x20
	cQDriver  = 0x28
	cQDevice  = 0x30
)

// caps walks the capability list: vendor caps by cfg_type, and MSI-X.
func (h *pciHarness) caps() (virtioCaps map[uint32][3]uint32, msix uint64) {
	virtioCaps = map[uint32][3]uint32{}
	for p := uint64(h.cfgRead(pci.RegCapPointer, 1)); p != 0; p = uint64(h.cfgRead(p+1, 1)) {
		switch h.cfgRead(p, 1) {
		case pci.CapVendor:
			typ := h.cfgRead(p+3, 1)
			var mult uint32
			if typ == 2 {
				mult = h.cfgRead(p+16, 4)
			}
			if bar := h.cfgRead(p+4, 1); bar != 0 {
				h.t.Fatalf("cap type %d in bar %d", typ, bar)
			}
			virtioCaps[typ] = [3]uint32{h.cfgRead(p+8, 4), h.cfgRead(p+12, 4), mult}
		case pci.CapMSIX:
			msix = p
		}
	}
	return virtioCaps, msix
}

// setupQueue configures queue i with a ring at base, the way Linux does
// (64-bit addresses written as two 32-bit halves).
func (h *pciHarness) setupQueue(i int, base uint64, size uint16, vector uint16) *virtiotest.Ring {
	r, _ := virtiotest.NewRing(h.env.Mem, base, size)
	h.write(cQSelect, 2, uint64(i))
	h.write(cQSize, 2, uint64(size))
	for _, a := range []struct {
		reg  uint64
		addr uint64
	}{{cQDesc, r.DescAddr}, {cQDriver, r.AvailAddr}, {cQDevice, r.UsedAddr}} {
		h.write(a.reg, 4, a.addr&0xffffffff)
		h.write(a.reg+4, 4, a.addr>>32)
	}
	h.write(cQMSIX, 2, uint64(vector))
	h.write(cQEnable, 2, 1)
	return r
}

// programMSIX fills table entry v and unmasks it.
func (h *pciHarness) programMSIX(v int, addr uint64, data uint32) {
	e := uint64(0x4000 + 16*v)
	h.write(e, 4, addr&0xffffffff)
	h.write(e+4, 4, addr>>32)
	h.write(e+8, 4, uint64(data))
	h.write(e+12, 4, 0)
}

// negotiate takes the device to FEATURES_OK with features accepted.
func (h *pciHarness) negotiate(features uint64) uint8 {
	h.write(cStatus, 1, virtio.StatusAcknowledge)
	h.write(cStatus, 1, virtio.StatusAcknowledge|virtio.StatusDriver)
	h.write(cGFSelect, 4, 0)
	h.write(cGF, 4, features&0xffffffff)
	h.write(cGFSelect, 4, 1)
	h.write(cGF, 4, features>>32)
	h.write(cStatus, 1, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK)
	return uint8(h.read(cStatus, 1))
}

func TestPCIIdentityAndCapabilities(t *testing.T) {
	h := newPCIHarness(t)
	if v := h.cfgRead(0, 4); v != 0x1042<<16|0x1af4 {
		t.Fatalf("ids %#x", v)
	}
	if v := h.cfgRead(pci.RegRevision, 1); v != 1 {
		t.Fatalf("revision %d", v)
	}
	if v := h.cfgRead(pci.RegInterruptPin, 1); v != 0 {
		t.Fatalf("interrupt pin %d, want none", v)
	}
	caps, msix := h.caps()
	want := map[uint32][3]uint32{
		1: {0x0000, 0x38, 0}, 2: {0x3000, 8, 4}, 3: {0x1000, 1, 0}, 4: {0x2000, 0x1000, 0},
	}
	for typ, w := range want {
		if caps[typ] != w {
			t.Errorf("cap type %d = %v, want %v", typ, caps[typ], w)
		}
	}
	if msix == 0 {
		t.Fatal("no MSI-X capability")
	}
	if ctl := h.cfgRead(msix+2, 2); ctl&0x7ff != 2 { // 3 vectors: 2 queues + config
		t.Errorf("msi-x table size field %d", ctl&0x7ff)
	}
	if tbl, pba := h.cfgRead(msix+4, 4), h.cfgRead(msix+8, 4); tbl != 0x4000 || pba != 0x5000 {
		t.Errorf("msi-x table %#x pba %#x", tbl, pba)
	}
	if n := h.read(cNumQ, 2); n != 2 {
		t.Errorf("num_queues %d", n)
	}
	if v := h.read(0x2000+2, 4); v != 0x06050403 {
		t.Errorf("device config read %#x", v)
	}
}

func TestPCIFeatureNegotiation(t *testing.T) {
	h := newPCIHarness(t)
	h.write(cDFSelect, 4, 0)
	lo := h.read(cDF, 4)
	h.write(cDFSelect, 4, 1)
	hi := h.read(cDF, 4)
	offered := hi<<32 | lo
	want := uint64(1<<6 | 1<<virtio.FeatureRingIndirectDesc | 1<<virtio.FeatureRingEventIdx | 1<<virtio.FeatureVersion1)
	if offered != want {
		t.Fatalf("offered %#x, want %#x", offered, want)
	}
	h.write(cDFSelect, 4, 7)
	if v := h.read(cDF, 4); v != 0 {
		t.Fatalf("feature word 7 = %#x", v)
	}
	// Without VERSION_1 the device refuses FEATURES_OK.
	if s := h.negotiate(1 << 6); s&virtio.StatusFeaturesOK != 0 {
		t.Fatal("FEATURES_OK accepted without VERSION_1")
	}
	h.write(cStatus, 1, 0)
	// An unoffered bit is refused too.
	if s := h.negotiate(1<<virtio.FeatureVersion1 | 1<<7); s&virtio.StatusFeaturesOK != 0 {
		t.Fatal("FEATURES_OK accepted with an unoffered feature")
	}
	h.write(cStatus, 1, 0)
	if s := h.negotiate(want); s&virtio.StatusFeaturesOK == 0 {
		t.Fatal("FEATURES_OK refused for the offered set")
	}
	// Features are frozen after FEATURES_OK.
	h.write(cGFSelect, 4, 0)
	h.write(cGF, 4, 0)
	if v := h.read(cGF, 4); v != want&0xffffffff {
		t.Fatalf("driver features changed after FEATURES_OK: %#x", v)
	}
	// Clearing a status bit without reset is refused.
	h.write(cStatus, 1, virtio.StatusAcknowledge)
	if s := h.read(cStatus, 1); s&virtio.StatusFeaturesOK == 0 {
		t.Fatal("status bits cleared without reset")
	}
	if e := h.tr.Metrics().Errors; e != 3 {
		t.Fatalf("errors = %d, want 3", e)
	}
}

func TestPCIQueueSetupAndActivation(t *testing.T) {
	h := newPCIHarness(t)
	_, msix := h.caps()
	h.write(cQSelect, 2, 1)
	if s := h.read(cQSize, 2); s != 8 {
		t.Fatalf("queue 1 max size %d", s)
	}
	if n := h.read(cQNotify, 2); n != 1 {
		t.Fatalf("queue 1 notify_off %d", n)
	}
	h.write(cQSelect, 2, 5)
	if s := h.read(cQSize, 2); s != 0 {
		t.Fatalf("absent queue size %d", s)
	}
	features := uint64(1<<virtio.FeatureVersion1 | 1<<virtio.FeatureRingEventIdx)
	if s := h.negotiate(features); s&virtio.StatusFeaturesOK == 0 {
		t.Fatal("features refused")
	}
	h.cfgWrite(msix+2, 2, 0x8000) // MSI-X enable
	h.write(cMSIXCfg, 2, 0)
	if v := h.read(cMSIXCfg, 2); v != 0 {
		t.Fatalf("config vector %d", v)
	}
	h.write(cMSIXCfg, 2, 9) // no such vector: reads back NO_VECTOR
	if v := h.read(cMSIXCfg, 2); v != virtio.NoVector {
		t.Fatalf("bad config vector reads %#x", v)
	}
	h.write(cMSIXCfg, 2, 0)
	r0 := h.setupQueue(0, 0x10000, 16, 1)
	if h.read(cQEnable, 2) != 1 || !h.tr.Queue(0).Ready {
		t.Fatal("queue 0 not enabled")
	}
	if got := h.read(cQDesc, 8); got != r0.DescAddr {
		t.Fatalf("queue_desc reads %#x", got)
	}
	// Queue 1 is left disabled.
	h.programMSIX(0, 0xfee00000, 0x30)
	h.programMSIX(1, 0xfee01000, 0x31)
	h.write(cStatus, 1, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	if h.dev.activations != 1 || h.dev.features != features {
		t.Fatalf("activations %d features %#x", h.dev.activations, h.dev.features)
	}
	if len(h.dev.queues) != 2 || h.dev.queues[0] != h.tr.Queue(0) || h.dev.queues[1] != nil {
		t.Fatalf("activated with queues %v", h.dev.queues)
	}
	// Queue addresses are frozen now.
	h.write(cQSelect, 2, 0)
	h.write(cQDesc, 4, 0x9000)
	if h.tr.Queue(0).DescAddr != r0.DescAddr {
		t.Fatal("queue address changed after enable")
	}
	// Kicks: by ioeventfd for queue 0, by plain MMIO too; none for the
	// disabled queue.
	notify0 := h.bar + 0x3000
	if !h.hub.Registered(notify0) || h.hub.Registered(notify0+4) {
		t.Fatalf("ioeventfds: q0 %v q1 %v", h.hub.Registered(notify0), h.hub.Registered(notify0+4))
	}
	h.hub.Kick(notify0)
	h.write(0x3000, 2, 0)
	h.write(0x3004, 2, 1)
	if len(h.dev.kicks) != 2 || h.dev.kicks[0] != 0 || h.dev.kicks[1] != 0 {
		t.Fatalf("kicks %v", h.dev.kicks)
	}
	if n := h.tr.Metrics().Notifications; n != 3 {
		t.Fatalf("notifications %d", n)
	}
	// Interrupts go to the programmed vectors.
	h.dev.irq.Queue(0)
	h.dev.irq.Config()
	msgs := h.msi.Take()
	if len(msgs) != 2 || msgs[0] != (virtiotest.MSIMessage{Addr: 0xfee01000, Data: 0x31}) ||
		msgs[1] != (virtiotest.MSIMessage{Addr: 0xfee00000, Data: 0x30}) {
		t.Fatalf("msi messages %v", msgs)
	}
	if g := h.read(cGen, 1); g != 1 {
		t.Fatalf("config generation %d after a config change", g)
	}
	if isr := h.read(0x1000, 1); isr != 3 {
		t.Fatalf("isr %#x", isr)
	}
	if isr := h.read(0x1000, 1); isr != 0 {
		t.Fatalf("isr not cleared by read: %#x", isr)
	}

	// Reset: device reset, ioeventfds gone, queues back to defaults.
	h.write(cStatus, 1, 0)
	if h.dev.resets != 1 || h.hub.Count() != 0 || h.tr.Queue(0).Ready || h.tr.Queue(0).Size != 16 {
		t.Fatalf("after reset: resets %d ioeventfds %d queue %+v", h.dev.resets, h.hub.Count(), *h.tr.Queue(0))
	}
	if s := h.read(cStatus, 1); s != 0 {
		t.Fatalf("status %#x after reset", s)
	}
	h.write(0x3000, 2, 0)
	if len(h.dev.kicks) != 2 {
		t.Fatal("kick delivered after reset")
	}
}

func TestPCIBadQueueRefused(t *testing.T) {
	h := newPCIHarness(t)
	cases := []struct {
		name string
		size uint64
		desc uint64
	}{
		{"size not power of two", 12, 0x10000},
		{"size above max", 32, 0x10000},
		{"size zero", 0, 0x10000},
		{"ring outside RAM", 16, testMem - 0x10},
		{"ring misaligned", 16, 0x10008},
	}
	for i, c := range cases {
		h.write(cQSelect, 2, 0)
		h.write(cQSize, 2, c.size)
		h.write(cQDesc, 8, c.desc)
		h.write(cQDriver, 8, 0x20000)
		h.write(cQDevice, 8, 0x30000)
		h.write(cQEnable, 2, 1)
		if h.read(cQEnable, 2) != 0 || h.tr.Queue(0).Ready {
			t.Errorf("%s: queue enabled", c.name)
		}
		if e := h.tr.Metrics().Errors; e != uint64(i+1) {
			t.Errorf("%s: errors = %d", c.name, e)
		}
	}
}

func TestPCIMSIXMasking(t *testing.T) {
	h := newPCIHarness(t)
	_, msix := h.caps()
	h.negotiate(1 << virtio.FeatureVersion1)
	h.setupQueue(0, 0x10000, 16, 1)
	h.write(cStatus, 1, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	irq := h.dev.irq

	// MSI-X disabled: nothing is sent, nothing pending (no INTx either).
	irq.Queue(0)
	if m := h.msi.Take(); len(m) != 0 {
		t.Fatalf("sent %v with MSI-X disabled", m)
	}
	h.cfgWrite(msix+2, 2, 0x8000)
	// Entry 1 still masked (its reset state): pending, shown in the PBA.
	irq.Queue(0)
	if m := h.msi.Take(); len(m) != 0 {
		t.Fatalf("sent %v while masked", m)
	}
	if pba := h.read(0x5000, 8); pba != 1<<1 {
		t.Fatalf("pba %#x", pba)
	}
	h.programMSIX(1, 0xfee00000, 0x41) // unmasking delivers the pending one
	if m := h.msi.Take(); len(m) != 1 || m[0].Data != 0x41 {
		t.Fatalf("after unmask: %v", m)
	}
	if pba := h.read(0x5000, 8); pba != 0 {
		t.Fatalf("pba %#x after delivery", pba)
	}
	// Function mask holds everything back until cleared.
	h.cfgWrite(msix+2, 2, 0xc000)
	irq.Queue(0)
	if m := h.msi.Take(); len(m) != 0 {
		t.Fatalf("sent %v under function mask", m)
	}
	h.cfgWrite(msix+2, 2, 0x8000)
	if m := h.msi.Take(); len(m) != 1 {
		t.Fatalf("after function unmask: %v", m)
	}
	// The table's reserved bits read zero; the vector control mask bit sticks.
	h.write(0x4000+16+12, 4, 0xffffffff)
	if v := h.read(0x4000+16+12, 4); v != 1 {
		t.Fatalf("vector control %#x", v)
	}
	// NO_VECTOR: nothing.
	h.write(cQSelect, 2, 0)
	h.write(cQMSIX, 2, virtio.NoVector)
	h.write(0x4000+16+12, 4, 0)
	irq.Queue(0)
	if m := h.msi.Take(); len(m) != 0 {
		t.Fatalf("sent %v for NO_VECTOR", m)
	}
	if n := h.tr.Metrics().Interrupts; n != 2 {
		t.Fatalf("interrupts %d", n)
	}
}

func TestPCIActivationFailureAndBARMove(t *testing.T) {
	h := newPCIHarness(t)
	h.dev.activateErr = errors.New("no backend")
	h.negotiate(1 << virtio.FeatureVersion1)
	h.setupQueue(0, 0x10000, 16, 0)
	h.write(cStatus, 1, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	s := h.read(cStatus, 1)
	if s&virtio.StatusDriverOK != 0 || s&virtio.StatusDeviceNeedsReset == 0 || h.hub.Count() != 0 {
		t.Fatalf("status %#x ioeventfds %d after failed activation", s, h.hub.Count())
	}
	h.write(cStatus, 1, 0)
	h.dev.activateErr = nil
	h.negotiate(1 << virtio.FeatureVersion1)
	h.setupQueue(0, 0x10000, 16, 0)
	h.write(cStatus, 1, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	old := h.bar
	// The guest moves BAR 0; the ioeventfd follows.
	const moved = 0xd000_0000
	h.cfgWrite(pci.RegBAR0, 4, moved)
	if h.hub.Registered(old+0x3000) || !h.hub.Registered(moved+0x3000) {
		t.Fatal("ioeventfd did not follow the BAR")
	}
	h.bar = moved
	h.write(0x3000, 2, 0)
	if len(h.dev.kicks) != 1 {
		t.Fatalf("kicks %v", h.dev.kicks)
	}
}

func TestPCIKickBeforeDriverOKDeliveredAtActivation(t *testing.T) {
	h := newPCIHarness(t)
	h.negotiate(1 << virtio.FeatureVersion1)
	h.setupQueue(0, 0x10000, 16, 0)
	h.write(0x3000, 2, 0) // kick queue 0 before DRIVER_OK
	h.write(0x3004, 2, 1) // queue 1 is not enabled: forgotten
	if len(h.dev.kicks) != 0 {
		t.Fatal("kick delivered before activation")
	}
	h.write(cStatus, 1, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	if len(h.dev.kicks) != 1 || h.dev.kicks[0] != 0 {
		t.Fatalf("kicks after activation %v", h.dev.kicks)
	}
}

func TestPCIIoeventfdFailureFallsBackToMMIO(t *testing.T) {
	h := newPCIHarness(t)
	h.hub.Fail = true
	h.negotiate(1 << virtio.FeatureVersion1)
	h.setupQueue(0, 0x10000, 16, 0)
	h.write(cStatus, 1, virtio.StatusAcknowledge|virtio.StatusDriver|virtio.StatusFeaturesOK|virtio.StatusDriverOK)
	if h.dev.activations != 1 {
		t.Fatal("not activated")
	}
	h.write(0x3000, 2, 0)
	if len(h.dev.kicks) != 1 {
		t.Fatal("MMIO kick lost")
	}
}

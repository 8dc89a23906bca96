package net

import (
	"bytes"
	"encoding/binary"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gureum/network/tap"
	"gureum/vmm/guestmem"
	"gureum/vmm/virtio"
	"gureum/vmm/virtio/virtiotest"
)

// pairBackend is the device's backend in unit tests: a tap.Tap over one end
// of a SOCK_SEQPACKET socketpair (which keeps frame boundaries like a tap),
// with SetOffload recorded instead of sent to a kernel tap.
type pairBackend struct {
	*tap.Tap
	mu       sync.Mutex
	offloads []uint
}

func (b *pairBackend) SetOffload(flags uint) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offloads = append(b.offloads, flags)
	return nil
}

func (b *pairBackend) lastOffload() (uint, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.offloads) == 0 {
		return 0, false
	}
	return b.offloads[len(b.offloads)-1], true
}

// harness is a guest as a driver sees it: RAM, two rings, an event loop
// that the test goroutine runs, and the host end of the wire.
type harness struct {
	t        *testing.T
	mem      *guestmem.Memory
	rx, tx   *virtiotest.Ring
	rxq, txq *virtio.Queue
	loop     *virtiotest.Loop
	irq      *virtiotest.Interrupts
	backend  *pairBackend // nil when the backend is a real tap
	dev      *Device
	host     int    // the host end of the socketpair, or -1
	nextBuf  uint64 // bump allocator for guest buffers
}

const (
	testMemSize   = 16 << 20
	testQueueSize = 256
	bufArea       = 0x100000
)

var testMAC = [6]byte{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}

func newHarness(t *testing.T) *harness {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	for _, fd := range fds {
		// Room for several 64 KiB frames in flight.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	tp, err := tap.FromFile(os.NewFile(uintptr(fds[0]), "pair"), "pair")
	if err != nil {
		unix.Close(fds[1])
		t.Fatalf("FromFile: %v", err)
	}
	t.Cleanup(func() {
		tp.Close()
		unix.Close(fds[1])
	})
	h := newHarnessWith(t, &pairBackend{Tap: tp})
	h.host = fds[1]
	return h
}

// newHarnessWith builds the guest side around backend; the caller closes
// the backend (after the device's reset, which cleanup does first).
func newHarnessWith(t *testing.T, backend Backend) *harness {
	t.Helper()
	h := &harness{
		t:       t,
		mem:     virtiotest.NewMemory(testMemSize),
		loop:    &virtiotest.Loop{},
		irq:     &virtiotest.Interrupts{},
		host:    -1,
		nextBuf: bufArea,
	}
	h.backend, _ = backend.(*pairBackend)
	var end uint64
	h.rx, end = virtiotest.NewRing(h.mem, 0x1000, testQueueSize)
	h.tx, _ = virtiotest.NewRing(h.mem, end, testQueueSize)
	h.rxq, h.txq = &virtio.Queue{}, &virtio.Queue{}
	h.rx.Configure(h.rxq)
	h.tx.Configure(h.txq)
	var err error
	h.dev, err = New(Config{MAC: testMAC, Backend: backend})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(h.dev.Reset)
	return h
}

func (h *harness) activate(features uint64) {
	h.t.Helper()
	env := virtio.Env{Mem: h.mem, MSI: &virtiotest.MSI{}, Notify: &virtiotest.NotifyHub{}, Loop: h.loop}
	if err := h.dev.Activate(env, features, []*virtio.Queue{h.rxq, h.txq}, h.irq); err != nil {
		h.t.Fatalf("Activate: %v", err)
	}
}

// alloc returns n bytes of guest RAM no one else uses.
func (h *harness) alloc(n int) uint64 {
	a := h.nextBuf
	h.nextBuf = (h.nextBuf + uint64(n) + 15) &^ 15
	if h.nextBuf > testMemSize {
		h.t.Fatalf("test guest out of buffer space")
	}
	return a
}

// postRx publishes one receive chain made of buffers of the given sizes.
func (h *harness) postRx(sizes ...int) (head uint16, segs []virtiotest.Seg) {
	for _, n := range sizes {
		segs = append(segs, virtiotest.Seg{Addr: h.alloc(n), Len: uint32(n), Writable: true})
	}
	return h.rx.AddChain(segs...), segs
}

// postTx publishes a transmit chain holding data cut at the given lengths
// (the last piece takes the rest).
func (h *harness) postTx(data []byte, cuts ...int) uint16 {
	var segs []virtiotest.Seg
	for len(data) > 0 {
		n := len(data)
		if len(cuts) > 0 {
			n, cuts = min(cuts[0], n), cuts[1:]
		}
		a := h.alloc(n)
		if err := h.mem.WriteAt(data[:n], a); err != nil {
			h.t.Fatal(err)
		}
		segs = append(segs, virtiotest.Seg{Addr: a, Len: uint32(n)})
		data = data[n:]
	}
	return h.tx.AddChain(segs...)
}

// read returns the bytes of segs, concatenated.
func (h *harness) read(segs []virtiotest.Seg) []byte {
	var out []byte
	for _, s := range segs {
		b := make([]byte, s.Len)
		if err := h.mem.ReadAt(b, s.Addr); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// hostSend sends hdr+frame from the host end, as the tap would deliver it.
func (h *harness) hostSend(hdr [hdrLen]byte, frame []byte) {
	h.t.Helper()
	if _, err := unix.Write(h.host, append(hdr[:], frame...)); err != nil {
		h.t.Fatalf("host send: %v", err)
	}
}

// hostRecv reads one message the device wrote, or reports false.
func (h *harness) hostRecv() ([]byte, bool) {
	buf := make([]byte, maxPacket+16)
	n, _, err := unix.Recvfrom(h.host, buf, unix.MSG_DONTWAIT)
	if err != nil {
		return nil, false
	}
	return buf[:n], true
}

// runUntil runs posted loop work until cond holds, failing after a while.
// The device's waiting goroutine posts work asynchronously, hence the
// polling here (in the test only).
func (h *harness) runUntil(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.loop.Run()
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// settle runs posted work for a short while, for tests that check that
// nothing happens.
func (h *harness) settle() {
	for range 50 {
		h.loop.Run()
		time.Sleep(time.Millisecond)
	}
}

// used collects the used elements published so far.
type usedElem struct{ id, len uint32 }

func (h *harness) usedRx() []usedElem {
	var out []usedElem
	for {
		id, n, ok := h.rx.Used()
		if !ok {
			return out
		}
		out = append(out, usedElem{id, n})
	}
}

func ethFrame(payloadLen int, seed byte) []byte {
	f := make([]byte, ethHeaderLen+payloadLen)
	copy(f[0:6], testMAC[:])
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 0x99})
	binary.BigEndian.PutUint16(f[12:], 0x88b5)
	for i := ethHeaderLen; i < len(f); i++ {
		f[i] = seed + byte(i*7)
	}
	return f
}

func TestNewRejectsBadConfig(t *testing.T) {
	b := &pairBackend{}
	cases := map[string]Config{
		"no backend": {MAC: testMAC},
		"multicast":  {MAC: [6]byte{0x03, 1, 2, 3, 4, 5}, Backend: b},
		"zero MAC":   {Backend: b},
		"queue size": {MAC: testMAC, Backend: b, QueueSize: 100},
	}
	for name, cfg := range cases {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestConfigSpaceAndFeatures(t *testing.T) {
	h := newHarness(t)
	d := h.dev
	if d.Type() != virtio.IDNet {
		t.Fatalf("Type = %d", d.Type())
	}
	f := d.Features()
	for _, bit := range []uint{FeatureMAC, FeatureStatus, FeatureMrgRxBuf, FeatureCsum, FeatureGuestCsum,
		FeatureGuestTSO4, FeatureGuestTSO6, FeatureHostTSO4, FeatureHostTSO6} {
		if f&(1<<bit) == 0 {
			t.Errorf("feature %d not offered", bit)
		}
	}
	if got := d.QueueSizes(); len(got) != 2 || got[0] != DefaultQueueSize || got[1] != DefaultQueueSize {
		t.Errorf("QueueSizes = %v", got)
	}
	cfg := make([]byte, 8)
	d.ReadConfig(0, cfg)
	if !bytes.Equal(cfg[:6], testMAC[:]) || binary.LittleEndian.Uint16(cfg[6:]) != statusLinkUp {
		t.Errorf("config = %x", cfg)
	}
	// Unaligned and partly out of range: the tail reads zero.
	got := []byte{0xff, 0xff, 0xff, 0xff}
	d.ReadConfig(5, got)
	if !bytes.Equal(got, []byte{testMAC[5], statusLinkUp, 0, 0}) {
		t.Errorf("config at 5 = %x", got)
	}
	d.ReadConfig(1<<62, got)
	if !bytes.Equal(got, []byte{0, 0, 0, 0}) {
		t.Errorf("config far out = %x", got)
	}
	d.WriteConfig(0, []byte{1, 2, 3, 4, 5, 6})
	d.ReadConfig(0, cfg)
	if !bytes.Equal(cfg[:6], testMAC[:]) {
		t.Errorf("driver changed the MAC: %x", cfg[:6])
	}
}

func TestOffloadsFollowNegotiation(t *testing.T) {
	cases := []struct {
		features uint64
		want     uint
	}{
		{0, 0},
		{1 << FeatureGuestTSO4, 0}, // TSO without checksum offload is refused
		{1 << FeatureGuestCsum, tap.OffloadCsum},
		{1<<FeatureGuestCsum | 1<<FeatureGuestTSO4 | 1<<FeatureGuestTSO6,
			tap.OffloadCsum | tap.OffloadTSO4 | tap.OffloadTSO6},
		{1<<FeatureHostTSO4 | 1<<FeatureCsum, 0}, // host-side features do not change what the tap delivers
	}
	for _, c := range cases {
		h := newHarness(t)
		h.activate(c.features)
		if got, ok := h.backend.lastOffload(); !ok || got != c.want {
			t.Errorf("features %#x: tap offload %#x (set %v), want %#x", c.features, got, ok, c.want)
		}
		h.dev.Reset()
		if got, _ := h.backend.lastOffload(); got != 0 {
			t.Errorf("features %#x: offload %#x after reset, want 0", c.features, got)
		}
	}
}

func TestActivateTwiceFails(t *testing.T) {
	h := newHarness(t)
	h.activate(0)
	env := virtio.Env{Mem: h.mem, Loop: h.loop}
	if err := h.dev.Activate(env, 0, []*virtio.Queue{h.rxq, h.txq}, h.irq); err == nil {
		t.Fatal("second Activate without Reset succeeded")
	}
}

func TestStableMAC(t *testing.T) {
	a, b := StableMAC("i-0123/eth0"), StableMAC("i-0123/eth0")
	c := StableMAC("i-0123/eth1")
	if a != b {
		t.Fatalf("StableMAC not stable: %x %x", a, b)
	}
	if a == c {
		t.Fatalf("two names gave the same MAC %x", a)
	}
	for _, m := range [][6]byte{a, c} {
		if m[0]&1 != 0 || m[0]&2 == 0 {
			t.Fatalf("MAC %x is not unicast and locally administered", m)
		}
		if _, err := New(Config{MAC: m, Backend: &pairBackend{}}); err != nil {
			t.Fatalf("New refused StableMAC %x: %v", m, err)
		}
	}
}

func TestResetEndsWaitingGoroutine(t *testing.T) {
	h := newHarness(t)
	before := runtime.NumGoroutine()
	h.activate(0)
	h.dev.Reset()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after reset, %d before activate", runtime.NumGoroutine(), before)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBackendEOFStopsReceive(t *testing.T) {
	h := newHarness(t)
	h.activate(0)
	h.postRx(2048)
	// The host end goes away: the backend reads end-of-file forever. The
	// device must count it once and stop, not spin on the loop.
	unix.Shutdown(h.host, unix.SHUT_WR)
	h.runUntil("receive failure counted", func() bool { return h.dev.Metrics().RxErrors == 1 })
	if n := h.loop.Run(); n != 0 {
		t.Fatalf("%d loop functions ran after the failure", n)
	}
	h.settle()
	if m := h.dev.Metrics(); m.RxErrors != 1 {
		t.Fatalf("metrics %+v: want exactly one receive error", m)
	}
}

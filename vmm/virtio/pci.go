package virtio

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"

	"gureum/vmm/pci"
)

// The modern virtio-pci transport (virtio 1.x, 4.1) puts a virtio device on
// PCI. Everything lives in one 64-bit memory BAR (BAR 0), cut into regions
// that vendor-specific PCI capabilities point at:
//
//	0x0000  common configuration: features, status, queue setup
//	0x1000  ISR status (read-to-clear; unused by MSI-X drivers)
//	0x2000  device-specific configuration (Device.ReadConfig/WriteConfig)
//	0x3000  notifications: the driver kicks queue i by writing at 0x3000+4*i
//	0x4000  MSI-X table (one vector per queue, one for config changes)
//	0x5000  MSI-X pending bit array
//
// There is no legacy interface (no I/O BAR) and no INTx: interrupt pin 0.
// A driver that does not enable MSI-X gets no interrupts.
const (
	barCommon     = 0x0000
	barISR        = 0x1000
	barDeviceCfg  = 0x2000
	barNotify     = 0x3000
	barMSIXTable  = 0x4000
	barMSIXPBA    = 0x5000
	barSize       = 0x8000
	barRegionSize = 0x1000

	// NotifyOffMultiplier is the stride between queue notify addresses.
	NotifyOffMultiplier = 4
)

// PCI identity of virtio devices.
const (
	PCIVendor       = 0x1af4
	PCIDeviceBase   = 0x1040 // + virtio device ID for modern devices
	PCISubsystemID  = 0x1100
	pciRevision     = 1
	maxQueues       = barRegionSize/msixEntrySize - 1 // the MSI-X table fits its region
	capCommonCfg    = 1
	capNotifyCfg    = 2
	capISRCfg       = 3
	capDeviceCfg    = 4
	virtioCapLength = 16
)

// Device status bits (virtio 1.x, 2.1).
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128
)

// transportFeatures are the bits the transport itself offers.
const transportFeatures = 1<<FeatureVersion1 | 1<<FeatureRingIndirectDesc | 1<<FeatureRingEventIdx

// TransportMetrics counts a device's traffic through the transport.
type TransportMetrics struct {
	Notifications uint64 // driver kicks, by ioeventfd or MMIO
	Interrupts    uint64 // MSI-X messages sent
	Errors        uint64 // driver mistakes the transport refused
}

// PCITransport is a pci.Device exposing a virtio.Device through the modern
// virtio-pci interface. Its registers are used only on the event loop
// goroutine; Metrics may be called from any goroutine.
type PCITransport struct {
	dev  Device
	env  Env
	cs   *pci.ConfigSpace
	msix *msixTable

	maxSizes []uint16
	queues   []Queue
	vectors  []uint16 // MSI-X vector per queue
	// earlyKicks records kicks that came before DRIVER_OK.
	earlyKicks []bool

	deviceFeatureSelect uint32
	driverFeatureSelect uint32
	driverFeatures      uint64
	configVector        uint16
	status              uint8
	generation          uint8
	queueSelect         uint16
	isr                 uint8

	msixCap    uint64 // offset of the MSI-X capability in config space
	activated  bool
	ioBase     uint64   // BAR 0 address the ioeventfds were registered at
	unregister []func() // live ioeventfd registrations

	notifications, interrupts, errors atomic.Uint64
}

var _ pci.Device = (*PCITransport)(nil)

// NewPCITransport wraps dev. env is what the device gets on activation;
// env.Mem is also used to check the queues the driver configures.
func NewPCITransport(dev Device, env Env) (*PCITransport, error) {
	sizes := dev.QueueSizes()
	if len(sizes) == 0 || len(sizes) > maxQueues {
		return nil, fmt.Errorf("virtio-pci: device has %d queues, want 1..%d", len(sizes), maxQueues)
	}
	for i, s := range sizes {
		if s == 0 || s > MaxQueueSize || s&(s-1) != 0 {
			return nil, fmt.Errorf("virtio-pci: queue %d maximum size %d is not a power of two <= %d", i, s, MaxQueueSize)
		}
	}
	t := &PCITransport{
		dev:        dev,
		env:        env,
		maxSizes:   append([]uint16(nil), sizes...),
		queues:     make([]Queue, len(sizes)),
		vectors:    make([]uint16, len(sizes)),
		earlyKicks: make([]bool, len(sizes)),
		msix:       newMSIXTable(len(sizes) + 1),
	}
	t.resetRegisters()
	t.cs = pci.NewConfigSpace(pci.Header{
		VendorID:          PCIVendor,
		DeviceID:          PCIDeviceBase + dev.Type(),
		Revision:          pciRevision,
		Class:             pciClass(dev.Type()),
		SubsystemVendorID: PCIVendor,
		SubsystemID:       PCISubsystemID,
	})
	if err := t.cs.AddBAR(0, barSize, true, barHandler{t}); err != nil {
		return nil, fmt.Errorf("virtio-pci: %w", err)
	}
	caps := []struct {
		cfgType        uint8
		offset, length uint32
	}{
		{capCommonCfg, barCommon, commonCfgSize},
		{capISRCfg, barISR, 1},
		{capDeviceCfg, barDeviceCfg, barRegionSize},
	}
	for _, c := range caps {
		if _, err := t.cs.AddCapability(pci.CapVendor, virtioCap(c.cfgType, c.offset, c.length, virtioCapLength), nil); err != nil {
			return nil, fmt.Errorf("virtio-pci: %w", err)
		}
	}
	notify := virtioCap(capNotifyCfg, barNotify, uint32(NotifyOffMultiplier*len(sizes)), virtioCapLength+4)
	notify = binary.LittleEndian.AppendUint32(notify, NotifyOffMultiplier)
	if _, err := t.cs.AddCapability(pci.CapVendor, notify, nil); err != nil {
		return nil, fmt.Errorf("virtio-pci: %w", err)
	}
	// MSI-X: message control (table size - 1; enable and function mask
	// writable), then table and PBA offsets, both in BAR 0.
	msix := make([]byte, 10)
	binary.LittleEndian.PutUint16(msix[0:], uint16(t.msix.vectors()-1))
	binary.LittleEndian.PutUint32(msix[2:], barMSIXTable) // BIR 0 in bits 2:0
	binary.LittleEndian.PutUint32(msix[6:], barMSIXPBA)
	writable := make([]byte, 10)
	binary.LittleEndian.PutUint16(writable[0:], msixControlEnable|msixControlFunctionMask)
	off, err := t.cs.AddCapability(pci.CapMSIX, msix, writable)
	if err != nil {
		return nil, fmt.Errorf("virtio-pci: %w", err)
	}
	t.msixCap = off
	t.cs.SetWriteHook(t.configWritten)
	return t, nil
}

// virtioCap is the body of a struct virtio_pci_cap after cap_vndr and
// cap_next: cap_len, cfg_type, bar, id, padding, offset, length.
func virtioCap(cfgType uint8, offset, length uint32, capLen uint8) []byte {
	b := []byte{capLen, cfgType, 0, 0, 0, 0}
	b = binary.LittleEndian.AppendUint32(b, offset)
	return binary.LittleEndian.AppendUint32(b, length)
}

// pciClass is the class code a device type shows (what QEMU shows, which
// is what guests' tools expect).
func pciClass(devType uint16) uint32 {
	switch devType {
	case IDNet:
		return 0x020000 // network, ethernet
	case IDBlock:
		return 0x010000 // mass storage, SCSI
	}
	return 0xff0000
}

// ConfigSpace is the device's PCI configuration space.
func (t *PCITransport) ConfigSpace() *pci.ConfigSpace { return t.cs }

// Metrics returns the transport's counters. Safe from any goroutine.
func (t *PCITransport) Metrics() TransportMetrics {
	return TransportMetrics{
		Notifications: t.notifications.Load(),
		Interrupts:    t.interrupts.Load(),
		Errors:        t.errors.Load(),
	}
}

// Queue returns queue i as the driver configured it, for tests and for
// the VMM's introspection. It is nil for i out of range.
func (t *PCITransport) Queue(i int) *Queue {
	if i < 0 || i >= len(t.queues) {
		return nil
	}
	return &t.queues[i]
}

// Status is the device_status register.
func (t *PCITransport) Status() uint8 { return t.status }

// offeredFeatures are the device's bits plus the transport's.
func (t *PCITransport) offeredFeatures() uint64 {
	return t.dev.Features()&^(1<<FeatureAccessPlatform) | transportFeatures
}

// resetRegisters puts the transport's virtio registers (not its PCI or
// MSI-X state, which a virtio reset leaves alone) back to power-on values.
func (t *PCITransport) resetRegisters() {
	for i := range t.queues {
		t.queues[i].Reset()
		t.queues[i].Size = t.maxSizes[i]
		t.vectors[i] = NoVector
		t.earlyKicks[i] = false
	}
	t.deviceFeatureSelect, t.driverFeatureSelect, t.driverFeatures = 0, 0, 0
	t.configVector = NoVector
	t.status, t.queueSelect, t.isr = 0, 0, 0
}

// reset is the driver writing 0 to device_status.
func (t *PCITransport) reset() {
	t.unregisterNotify()
	t.dev.Reset()
	t.activated = false
	t.resetRegisters()
}

// setStatus runs the device_status state machine. The driver may only add
// bits; FEATURES_OK sticks only if the features it chose are acceptable;
// DRIVER_OK activates the device.
func (t *PCITransport) setStatus(v uint8) {
	if v == 0 {
		t.reset()
		return
	}
	old := t.status
	if v&old != old {
		t.errors.Add(1) // clearing bits needs a reset
		return
	}
	if v&StatusFeaturesOK != 0 && old&StatusFeaturesOK == 0 {
		f := t.driverFeatures
		if f&^t.offeredFeatures() != 0 || f&(1<<FeatureVersion1) == 0 {
			v &^= StatusFeaturesOK // the driver reads it back and gives up
			t.errors.Add(1)
		}
	}
	if v&StatusDriverOK != 0 && old&StatusDriverOK == 0 {
		if v&StatusFeaturesOK == 0 {
			v &^= StatusDriverOK
			t.errors.Add(1)
		} else if err := t.activate(); err != nil {
			v = v&^StatusDriverOK | StatusDeviceNeedsReset
			t.errors.Add(1)
		}
	}
	t.status = v
}

// activate hands the enabled queues to the device and wires their kicks.
func (t *PCITransport) activate() error {
	queues := make([]*Queue, len(t.queues))
	eventIdx := t.driverFeatures&(1<<FeatureRingEventIdx) != 0
	for i := range t.queues {
		if q := &t.queues[i]; q.Ready {
			q.EnableEventIdx(eventIdx)
			queues[i] = q
		}
	}
	t.registerNotify()
	if err := t.dev.Activate(t.env, t.driverFeatures, queues, interrupter{t}); err != nil {
		t.unregisterNotify()
		return fmt.Errorf("activate virtio device: %w", err)
	}
	t.activated = true
	for i, kicked := range t.earlyKicks {
		if kicked && t.queues[i].Ready {
			t.earlyKicks[i] = false
			t.dev.Notify(i)
		}
	}
	return nil
}

// registerNotify asks for an ioeventfd on each enabled queue's notify
// address, so a kick wakes the event loop without a vCPU exit to user
// space. A failed registration is not fatal: the MMIO path still works.
func (t *PCITransport) registerNotify() {
	base, ok := t.cs.BARMapped(0)
	if !ok || t.env.Notify == nil {
		return
	}
	t.ioBase = base
	for i := range t.queues {
		if !t.queues[i].Ready {
			continue
		}
		i := i
		addr := base + barNotify + NotifyOffMultiplier*uint64(i)
		// Linux writes the 16-bit queue index. The VMM may register a
		// zero-length ioeventfd, which takes any width; otherwise other
		// widths take the MMIO path.
		unreg, err := t.env.Notify.RegisterIOEvent(addr, 2, func() { t.notify(i) })
		if err != nil {
			continue
		}
		t.unregister = append(t.unregister, unreg)
	}
}

func (t *PCITransport) unregisterNotify() {
	for _, u := range t.unregister {
		u()
	}
	t.unregister = nil
}

// configWritten follows guest writes to configuration space: a moved BAR
// moves the ioeventfds; a change to MSI-X control may unmask vectors.
func (t *PCITransport) configWritten(offset uint64, n int) {
	if t.activated {
		if base, ok := t.cs.BARMapped(0); !ok || base != t.ioBase {
			t.unregisterNotify()
			t.registerNotify()
		}
	}
	if offset < t.msixCap+4 && offset+uint64(n) > t.msixCap+2 {
		t.deliverPending()
	}
}

// notify is a driver kick for queue i, by ioeventfd or by MMIO write. A
// kick for an enabled queue before DRIVER_OK is remembered and passed on
// at activation, so buffers the driver made available early are not
// stranded until its next kick.
func (t *PCITransport) notify(i int) {
	t.notifications.Add(1)
	if i < 0 || i >= len(t.queues) || !t.queues[i].Ready {
		return
	}
	if !t.activated {
		t.earlyKicks[i] = true
		return
	}
	t.dev.Notify(i)
}

// msixControl reads the enable and function-mask bits.
func (t *PCITransport) msixControl() (enabled, masked bool) {
	c := t.cs.Uint16(t.msixCap + 2)
	return c&msixControlEnable != 0, c&msixControlFunctionMask != 0
}

// signal raises MSI-X vector v: sent now, or remembered as pending while
// masked. With MSI-X disabled (or no vector assigned) nothing happens:
// this transport has no INTx to fall back to.
func (t *PCITransport) signal(v uint16) {
	if v == NoVector || int(v) >= t.msix.vectors() {
		return
	}
	enabled, fmask := t.msixControl()
	if !enabled {
		return
	}
	if fmask || t.msix.masked(int(v)) {
		t.msix.setPending(int(v), true)
		return
	}
	t.send(int(v))
}

func (t *PCITransport) send(v int) {
	addr, data := t.msix.message(v)
	if t.env.MSI == nil {
		return
	}
	if err := t.env.MSI.SignalMSI(addr, data); err != nil {
		t.errors.Add(1)
		return
	}
	t.interrupts.Add(1)
}

// deliverPending sends every pending vector that is no longer masked.
func (t *PCITransport) deliverPending() {
	enabled, fmask := t.msixControl()
	if !enabled || fmask {
		return
	}
	for v := 0; v < t.msix.vectors(); v++ {
		if t.msix.isPending(v) && !t.msix.masked(v) {
			t.msix.setPending(v, false)
			t.send(v)
		}
	}
}

// interrupter is the Interrupter a device gets: ISR bits plus MSI-X.
type interrupter struct{ t *PCITransport }

// Queue signals queue i's vector (used ring updated).
func (irq interrupter) Queue(i int) {
	t := irq.t
	if i < 0 || i >= len(t.queues) {
		return
	}
	t.isr |= 1
	t.signal(t.vectors[i])
}

// Config signals the configuration vector after bumping config_generation,
// so a driver reading the configuration twice sees that it changed.
func (irq interrupter) Config() {
	t := irq.t
	t.generation++
	t.isr |= 2
	t.signal(t.configVector)
}

// barHandler serves BAR 0 on the MMIO bus.
type barHandler struct{ t *PCITransport }

// Read dispatches a guest read of BAR 0 to the region it falls in; unused
// space reads zero.
func (h barHandler) Read(offset uint64, data []byte) {
	t := h.t
	for i := range data {
		data[i] = 0
	}
	region, off := offset&^(barRegionSize-1), offset&(barRegionSize-1)
	switch region {
	case barCommon:
		t.readCommon(off, data)
	case barISR:
		if off == 0 {
			data[0] = t.isr
			t.isr = 0 // reading ISR acknowledges it
		}
	case barDeviceCfg:
		t.dev.ReadConfig(off, data)
	case barMSIXTable:
		t.msix.readTable(off, data)
	case barMSIXPBA:
		t.msix.readPBA(off, data)
	}
}

// Write dispatches a guest write of BAR 0; writes to read-only regions
// (ISR, PBA) and unused space are dropped.
func (h barHandler) Write(offset uint64, data []byte) {
	t := h.t
	region, off := offset&^(barRegionSize-1), offset&(barRegionSize-1)
	switch region {
	case barCommon:
		t.writeCommon(off, data)
	case barDeviceCfg:
		t.dev.WriteConfig(off, data)
	case barNotify:
		t.notify(int(off / NotifyOffMultiplier))
	case barMSIXTable:
		t.msix.writeTable(off, data)
		t.deliverPending()
	}
}

// DescribeState reports the transport's status, MSI-X state and each
// queue's ring positions (Queue.Describe). Device code only.
func (t *PCITransport) DescribeState() string {
	enabled, fmask := t.msixControl()
	var b strings.Builder
	fmt.Fprintf(&b, "status=%#x features=%#x msix enabled=%t function-masked=%t config vector=%d; notifications %d, interrupts %d, errors %d",
		t.status, t.driverFeatures, enabled, fmask, t.configVector, t.notifications.Load(), t.interrupts.Load(), t.errors.Load())
	for i := range t.queues {
		v := t.vectors[i]
		fmt.Fprintf(&b, "\nqueue %d: vector %d", i, v)
		if v != NoVector && int(v) < t.msix.vectors() {
			fmt.Fprintf(&b, " (masked=%t pending=%t)", t.msix.masked(int(v)), t.msix.isPending(int(v)))
		}
		fmt.Fprintf(&b, " %s", t.queues[i].Describe(t.env.Mem))
	}
	return b.String()
}

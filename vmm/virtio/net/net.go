// Package net is gureum's virtio-net device: a network card whose "wire" is
// a tap fd on the host (network/tap), driven by the guest through two split
// virtqueues. Import it as virtionet.
//
// The guest's driver posts buffers on two queues:
//
//   - receiveq (0): empty, device-writable chains. When the tap has a frame,
//     the device reads it straight into those buffers and returns them on the
//     used ring with the byte count (rx.go).
//   - transmitq (1): device-readable chains holding a frame. On a kick the
//     device writes each frame to the tap straight out of guest memory and
//     returns the chain (tx.go).
//
// Every frame, in both directions, is preceded by a 12-byte virtio_net_hdr.
// The tap speaks the same header, so checksum and segmentation offloads
// pass through unchanged (header.go).
//
// Threads: every method of Device except Metrics runs on the VM's event
// loop. One goroutine per active device waits for the tap to become
// readable and posts the receive work to the loop; it never touches device
// state itself.
package net

import (
	"context"
	"fmt"

	"gureum/network/tap"
	"gureum/vmm/virtio"
)

// Feature bits of virtio-net (virtio 1.x, 5.1.3) that gureum uses.
const (
	FeatureCsum      = 0  // VIRTIO_NET_F_CSUM: device completes partial checksums the driver sends
	FeatureGuestCsum = 1  // VIRTIO_NET_F_GUEST_CSUM: driver accepts frames with partial checksums
	FeatureMAC       = 5  // VIRTIO_NET_F_MAC: config holds the MAC address
	FeatureGuestTSO4 = 7  // driver accepts TCP/IPv4 segments up to 64 KiB
	FeatureGuestTSO6 = 8  // driver accepts TCP/IPv6 segments up to 64 KiB
	FeatureGuestECN  = 9  // driver accepts TSO segments with ECN
	FeatureGuestUFO  = 10 // driver accepts large UDP datagrams
	FeatureHostTSO4  = 11 // device segments TCP/IPv4 the driver sends
	FeatureHostTSO6  = 12 // device segments TCP/IPv6 the driver sends
	FeatureHostECN   = 13 // device segments TSO with ECN
	FeatureHostUFO   = 14 // device fragments large UDP the driver sends
	FeatureMrgRxBuf  = 15 // VIRTIO_NET_F_MRG_RXBUF: a frame may span several receive chains
	FeatureStatus    = 16 // VIRTIO_NET_F_STATUS: config holds the link status
)

// offered is what the device offers. UFO and ECN are left out: Linux no
// longer produces UFO, and segmentation with ECN would need the tap's
// TSO_ECN handling for little gain. No control queue and no multiqueue.
const offered = 1<<FeatureCsum | 1<<FeatureGuestCsum | 1<<FeatureMAC |
	1<<FeatureGuestTSO4 | 1<<FeatureGuestTSO6 |
	1<<FeatureHostTSO4 | 1<<FeatureHostTSO6 |
	1<<FeatureMrgRxBuf | 1<<FeatureStatus

// Queue indexes.
const (
	rxQueue = 0
	txQueue = 1
)

// DefaultQueueSize is the size of each queue when Config.QueueSize is 0:
// 256 receive buffers hold several 64 KiB frames when the driver merges
// buffers.
const DefaultQueueSize = 256

// statusLinkUp is VIRTIO_NET_S_LINK_UP in the config's status field.
const statusLinkUp = 1

// Config layout (virtio 1.x, 5.1.4): mac[6] at 0, status le16 at 6. Later
// fields (max_virtqueue_pairs, mtu, ...) need features we do not offer and
// read as zero.
const (
	configMAC    = 0
	configStatus = 6
	configLen    = 8
)

// Backend is the host side of the wire: network/tap's *tap.Tap, or in tests
// anything that keeps frame boundaries (a SOCK_SEQPACKET socket). Each
// frame carries a 12-byte virtio_net_hdr in front.
//
// ReadPacket and WritePacket are called on the event loop and must not
// block; ReadPacket returns an error matching syscall.EAGAIN when nothing is
// queued. WaitReadable is called from the device's waiting goroutine, while
// the loop may be writing. A backend that also has a ReadFD() int method
// (a tap) is watched by the event loop itself through that fd instead, and
// WaitReadable is not used.
type Backend interface {
	ReadPacket(iov ...[]byte) (int, error)
	WritePacket(iov ...[]byte) (int, error)
	WaitReadable(ctx context.Context) error
	SetOffload(flags uint) error
}

var _ Backend = (*tap.Tap)(nil)

// Config describes one network card.
type Config struct {
	// MAC is the card's address: unicast and not all zero. See StableMAC.
	MAC [6]byte
	// Backend carries the frames. The device does not close it.
	Backend Backend
	// QueueSize is the maximum size of each queue (a power of two);
	// DefaultQueueSize when 0.
	QueueSize uint16
}

// Device is one virtio-net card. Create it with New.
type Device struct {
	mac       [6]byte
	backend   Backend
	queueSize uint16
	counters  counters

	// Set by Activate and cleared by Reset; used on the event loop only.
	active    bool
	env       virtio.Env
	irq       virtio.Interrupter
	rxq, txq  *virtio.Queue
	features  uint64
	mergeable bool   // MRG_RXBUF negotiated
	offloads  uint   // tap offloads currently set
	epoch     uint64 // bumped by Reset, so work posted before it is ignored
	waiter    rxWaiter
	rx        rxState
	tx        txState
}

var _ virtio.Device = (*Device)(nil)

// New makes a device. It does not touch the backend until Activate.
func New(cfg Config) (*Device, error) {
	if cfg.Backend == nil {
		return nil, fmt.Errorf("virtio-net: no backend")
	}
	if cfg.MAC[0]&1 != 0 {
		return nil, fmt.Errorf("virtio-net: MAC %s is multicast", formatMAC(cfg.MAC))
	}
	if cfg.MAC == ([6]byte{}) {
		return nil, fmt.Errorf("virtio-net: MAC is all zero")
	}
	size := cfg.QueueSize
	if size == 0 {
		size = DefaultQueueSize
	}
	if size&(size-1) != 0 || size > virtio.MaxQueueSize {
		return nil, fmt.Errorf("virtio-net: queue size %d is not a power of two up to %d", size, virtio.MaxQueueSize)
	}
	return &Device{mac: cfg.MAC, backend: cfg.Backend, queueSize: size}, nil
}

// Type is virtio.IDNet.
func (d *Device) Type() uint16 { return virtio.IDNet }

// Features are the device-specific features offered to the driver.
func (d *Device) Features() uint64 { return offered }

// QueueSizes gives the receive and transmit queue maxima.
func (d *Device) QueueSizes() []uint16 { return []uint16{d.queueSize, d.queueSize} }

// ReadConfig reads the MAC and the link status (always up: the tap is
// there for the device's whole life).
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var cfg [configLen]byte
	copy(cfg[configMAC:], d.mac[:])
	cfg[configStatus] = statusLinkUp
	for i := range data {
		data[i] = 0
		if o := offset + uint64(i); o < configLen {
			data[i] = cfg[o]
		}
	}
}

// WriteConfig ignores writes: in virtio 1.x the driver does not write the
// network config (the MAC is writable only through a control queue, which
// we do not offer).
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate starts the card with the negotiated features: it sets the tap's
// offloads to what the driver can receive and starts waiting for frames.
func (d *Device) Activate(env virtio.Env, features uint64, queues []*virtio.Queue, irq virtio.Interrupter) error {
	if d.active {
		return fmt.Errorf("virtio-net: activated twice without reset")
	}
	if len(queues) != 2 {
		return fmt.Errorf("virtio-net: %d queues, want 2", len(queues))
	}
	if env.Mem == nil || env.Loop == nil || irq == nil {
		return fmt.Errorf("virtio-net: environment without memory, loop or interrupts")
	}
	offloads := tapOffloads(features)
	if err := d.backend.SetOffload(offloads); err != nil {
		return fmt.Errorf("virtio-net: activate: %w", err)
	}
	d.offloads = offloads
	d.env, d.irq = env, irq
	d.rxq, d.txq = queues[rxQueue], queues[txQueue]
	d.features = features
	d.mergeable = features&(1<<FeatureMrgRxBuf) != 0
	d.rx.reset()
	d.active = true
	if d.rxq != nil {
		// Frames may already be queued on the tap: the first wait
		// returns at once if so.
		w, err := startWaiter(d.backend, env, d.epoch, d.onReadable)
		if err != nil {
			d.Reset()
			return fmt.Errorf("virtio-net: activate: %w", err)
		}
		d.waiter = w
	}
	return nil
}

// Notify handles a kick: new frames to send on the transmit queue, or new
// receive buffers after the device ran out of them.
func (d *Device) Notify(i int) {
	if !d.active {
		return
	}
	switch i {
	case rxQueue:
		if d.rx.starved {
			d.rx.starved = false
			d.receive()
		}
	case txQueue:
		d.transmit()
	}
}

// Reset stops the card: the waiting goroutine is told to stop, work it
// already posted is ignored (epoch), buffers held from the receive queue are
// forgotten (the transport resets the queues), and the tap goes back to
// plain frames.
func (d *Device) Reset() {
	d.epoch++
	if d.waiter != nil {
		d.waiter.stop()
		d.waiter = nil
	}
	if d.offloads != 0 {
		// A failure leaves offloads on; the next Activate sets them
		// again, and nothing reads the tap in between.
		if err := d.backend.SetOffload(0); err == nil {
			d.offloads = 0
		}
	}
	d.active = false
	d.env, d.irq, d.rxq, d.txq = virtio.Env{}, nil, nil, nil
	d.features, d.mergeable = 0, false
	d.rx.reset()
}

// signal raises queue i's interrupt if the driver wants one for what was
// pushed since the last call.
func (d *Device) signal(i int, q *virtio.Queue) {
	if q.NeedsInterrupt(d.env.Mem) {
		d.irq.Queue(i)
	}
}

func formatMAC(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

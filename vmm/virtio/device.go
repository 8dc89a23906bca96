package virtio

// Device IDs (virtio 1.x, section 5).
const (
	IDNet   = 1
	IDBlock = 2
)

// Common feature bits the transport offers for every device.
const (
	FeatureRingIndirectDesc = 28
	FeatureRingEventIdx     = 29
	FeatureVersion1         = 32
	FeatureAccessPlatform   = 33
)

// Interrupter raises a device's interrupts. The transport implements it with
// MSI-X (one vector per queue and one for configuration changes, as the
// driver assigned them) and sets the ISR bits. Calls happen on the event loop.
type Interrupter interface {
	// Queue signals that the used ring of queue i has new entries.
	Queue(i int)
	// Config signals a configuration change (for example a new disk size).
	Config()
}

// Device is a virtio device model behind a transport (virtio-pci here).
// Every method is called with the event loop's device lock held (on the
// loop's thread, or on a vCPU thread for that vCPU's own access), never
// concurrently.
type Device interface {
	// Type is the virtio device ID (IDNet, IDBlock).
	Type() uint16
	// Features are the device-specific feature bits offered to the driver;
	// the transport adds FeatureVersion1 and the ring features it supports.
	Features() uint64
	// QueueSizes gives the maximum size of each queue; its length is the
	// number of queues.
	QueueSizes() []uint16
	// ReadConfig and WriteConfig access the device-specific configuration
	// structure. Out-of-range accesses read zeroes and are ignored.
	ReadConfig(offset uint64, data []byte)
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device when the driver sets DRIVER_OK. features
	// are the negotiated bits; queues are the driver-enabled queues (nil
	// for a queue the driver left disabled).
	Activate(env Env, features uint64, queues []*Queue, irq Interrupter) error
	// Notify handles a driver notification (kick) for queue i.
	Notify(i int)
	// Reset returns the device to its state before Activate (driver wrote 0
	// to device_status, or the VM is resetting).
	Reset()
}

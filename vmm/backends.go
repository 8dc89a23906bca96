package vmm

import (
	"fmt"
	"net"

	"gureum/network/tap"
	"gureum/storage"
	// Disk formats register themselves with storage.Open.
	_ "gureum/storage/qcow2"
	_ "gureum/storage/raw"
	virtionet "gureum/vmm/virtio/net"
)

// backends are the host resources a VM keeps across guest reboots: disk
// files and tap devices. Devices are rebuilt on each boot over them.
type backends struct {
	disks []storage.Disk
	taps  []*tap.Tap
	macs  []net.HardwareAddr
}

func openBackends(cfg Config) (_ *backends, err error) {
	b := &backends{}
	defer func() {
		if err != nil {
			b.close() // what was opened before the failure
		}
	}()
	for i, d := range cfg.Disks {
		disk, err := storage.Open(d.Path, storage.OpenOptions{ReadOnly: d.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("disk %d: %w", i, err)
		}
		b.disks = append(b.disks, disk)
	}
	for i, n := range cfg.Nets {
		t, err := tap.Open(n.Tap)
		if err != nil {
			return nil, fmt.Errorf("net %d: %w", i, err)
		}
		b.taps = append(b.taps, t)
		mac := n.MAC
		if mac == nil {
			m := virtionet.StableMAC(n.Tap)
			mac = m[:]
		}
		b.macs = append(b.macs, mac)
	}
	return b, nil
}

func (b *backends) close() {
	for _, d := range b.disks {
		d.Close()
	}
	for _, t := range b.taps {
		t.Close()
	}
	b.disks, b.taps = nil, nil
}

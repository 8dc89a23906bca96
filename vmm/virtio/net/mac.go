package net

import "crypto/sha256"

// StableMAC derives a MAC address from a name (an instance and interface ID,
// say) so that the same card gets the same address across restarts, which
// keeps DHCP leases and neighbour caches valid. The address is unicast and
// locally administered (bit 1 of the first byte), so it cannot collide with
// a vendor-assigned address.
func StableMAC(name string) [6]byte {
	sum := sha256.Sum256([]byte("gureum-mac:" + name))
	var m [6]byte
	copy(m[:], sum[:6])
	m[0] = m[0]&^0x01 | 0x02
	return m
}

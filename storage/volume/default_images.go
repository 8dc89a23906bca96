package volume

// defaultImages is the Images a store uses unless told otherwise: our own
// qcow2 code, so a host needs no qemu-img.
func defaultImages() Images { return Qcow2Images{} }

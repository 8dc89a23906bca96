package volume

// defaultImages is the Images a store uses unless told otherwise.
func defaultImages() Images { return QemuImg{} }

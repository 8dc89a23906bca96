package volume

import "testing"

// testImages is the Images the store tests use where the backend does not
// matter.
var testImages Images = Qcow2Images{}

// forEachBackend runs a test once on gureum's own qcow2 code and once on
// qemu-img, which is the reference.
func forEachBackend(t *testing.T, test func(*testing.T, Images)) {
	for _, b := range []struct {
		name   string
		images Images
	}{{"qcow2", Qcow2Images{}}, {"qemu-img", QemuImg{}}} {
		t.Run(b.name, func(t *testing.T) { test(t, b.images) })
	}
}

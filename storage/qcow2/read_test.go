package qcow2_test

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"gureum/storage/qcow2"
)

// TestReadMergesExtents reads ranges that cross every kind of cluster a
// read maps (data clusters adjacent and scattered in the file, zero
// clusters, clusters from the backing file) at random offsets and lengths,
// including reads longer than one mapping window, and compares with the
// expected bytes.
func TestReadMergesExtents(t *testing.T) {
	const cluster = 4096
	const size = 512 * cluster
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(4, 4))
	want := make([]byte, size)

	base := filepath.Join(dir, "base.qcow2")
	if err := qcow2.Create(base, size, qcow2.CreateOptions{ClusterSize: cluster}); err != nil {
		t.Fatal(err)
	}
	b, err := qcow2.Open(base, qcow2.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		want[i] = byte(r.Uint32())
	}
	if _, err := b.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	top := filepath.Join(dir, "top.qcow2")
	if err := qcow2.Create(top, size, qcow2.CreateOptions{ClusterSize: cluster, BackingFile: "base.qcow2"}); err != nil {
		t.Fatal(err)
	}
	img, err := qcow2.Open(top, qcow2.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	// Clusters 100..199 written back to front: adjacent in the guest,
	// descending in the file, so no two of them merge. Clusters 300..399
	// written in order: one run in the file. Every 7th cluster of
	// 200..299 discarded (zero flag over the backing data).
	write := func(c int) {
		p := make([]byte, cluster)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		if _, err := img.WriteAt(p, int64(c)*cluster); err != nil {
			t.Fatal(err)
		}
		copy(want[c*cluster:], p)
	}
	for c := 199; c >= 100; c-- {
		write(c)
	}
	for c := 300; c < 400; c++ {
		write(c)
	}
	for c := 200; c < 300; c += 7 {
		if err := img.Discard(int64(c)*cluster, cluster); err != nil {
			t.Fatal(err)
		}
		clear(want[c*cluster : (c+1)*cluster])
	}

	check := func(off, n int) {
		t.Helper()
		got := make([]byte, n)
		if _, err := img.ReadAt(got, int64(off)); err != nil {
			t.Fatalf("read [%d, +%d): %v", off, n, err)
		}
		if !bytes.Equal(got, want[off:off+n]) {
			t.Fatalf("read [%d, +%d) differs", off, n)
		}
	}
	check(0, size)
	for range 300 {
		off := r.IntN(size)
		n := 1 + r.IntN(min(size-off, 200*cluster))
		check(off, n)
	}
}

package qcow2_test

import (
	"path/filepath"
	"testing"

	"gureum/storage"
	"gureum/storage/qcow2"
	"gureum/storage/raw"
	"gureum/storage/storagetest"
)

// format returns the suite's Format for images with the given options.
func format(opts qcow2.CreateOptions, cacheBytes int) storagetest.Format {
	return storagetest.Format{
		Create: func(t *testing.T, size int64) string {
			path := filepath.Join(t.TempDir(), "disk.qcow2")
			if err := qcow2.Create(path, size, opts); err != nil {
				t.Fatal(err)
			}
			return path
		},
		Open: func(path string, readOnly bool) (storage.Disk, error) {
			return qcow2.Open(path, qcow2.Options{ReadOnly: readOnly, CacheBytes: cacheBytes})
		},
	}
}

func TestConformance(t *testing.T) {
	t.Run("64K", func(t *testing.T) { storagetest.Run(t, format(qcow2.CreateOptions{}, 0)) })
	// Small clusters with a tiny cache: the refcount table grows and L2
	// tables and refcount blocks are evicted all the time.
	t.Run("512-tiny-cache", func(t *testing.T) {
		storagetest.Run(t, format(qcow2.CreateOptions{ClusterSize: 512, RefcountBits: 8}, 4096))
	})
	t.Run("4K-refcount1", func(t *testing.T) {
		storagetest.Run(t, format(qcow2.CreateOptions{ClusterSize: 4096, RefcountBits: 1}, 0))
	})
	t.Run("2M-refcount64", func(t *testing.T) {
		storagetest.Run(t, format(qcow2.CreateOptions{ClusterSize: 2 << 20, RefcountBits: 64}, 0))
	})
}

// TestConformanceBackingChain runs the suite on the top of a chain
// qcow2 -> qcow2 -> raw whose lower layers hold explicit zeroes, so reads
// of unwritten ranges go down the chain.
func TestConformanceBackingChain(t *testing.T) {
	storagetest.Run(t, storagetest.Format{
		Create: func(t *testing.T, size int64) string {
			dir := t.TempDir()
			if err := raw.Create(filepath.Join(dir, "base.raw"), size); err != nil {
				t.Fatal(err)
			}
			mid := filepath.Join(dir, "mid.qcow2")
			if err := qcow2.Create(mid, size, qcow2.CreateOptions{ClusterSize: 4096, BackingFile: "base.raw", BackingFormat: "raw"}); err != nil {
				t.Fatal(err)
			}
			m, err := qcow2.Open(mid, qcow2.Options{})
			if err != nil {
				t.Fatal(err)
			}
			zeros := make([]byte, size/2)
			if _, err := m.WriteAt(zeros, size/4); err != nil {
				t.Fatal(err)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			top := filepath.Join(dir, "top.qcow2")
			if err := qcow2.Create(top, size, qcow2.CreateOptions{BackingFile: "mid.qcow2"}); err != nil {
				t.Fatal(err)
			}
			return top
		},
		Open: func(path string, readOnly bool) (storage.Disk, error) {
			return storage.Open(path, storage.OpenOptions{ReadOnly: readOnly})
		},
	})
}

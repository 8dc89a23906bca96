package raw_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"gureum/storage"
	"gureum/storage/raw"
	"gureum/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Format{
		Create: func(t *testing.T, size int64) string {
			path := filepath.Join(t.TempDir(), "disk.raw")
			if err := raw.Create(path, size); err != nil {
				t.Fatal(err)
			}
			return path
		},
		Open: func(path string, readOnly bool) (storage.Disk, error) { return raw.Open(path, readOnly) },
	})
}

// allocated returns the bytes the host file system holds for path.
func allocated(t *testing.T, path string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestSparseAndPunch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := raw.Create(path, 64<<20); err != nil {
		t.Fatal(err)
	}
	if a := allocated(t, path); a > 64<<10 {
		t.Fatalf("a new 64 MiB disk holds %d bytes: not sparse", a)
	}
	d, err := raw.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	buf := make([]byte, 8<<20)
	for i := range buf {
		buf[i] = 1
	}
	if _, err := d.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	before := allocated(t, path)
	if err := d.Discard(0, 8<<20); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			t.Skip("file system cannot punch holes")
		}
		t.Fatal(err)
	}
	if after := allocated(t, path); after > before-(7<<20) {
		t.Fatalf("discard of 8 MiB freed only %d bytes", before-after)
	}
	if err := d.Resize(1 << 40); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() != 1<<40 {
		t.Fatalf("file size after resize %v (%v), want 1 TiB", st.Size(), err)
	}
}

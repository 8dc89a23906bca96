package instancestore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"gureum/storage/raw"
)

func TestLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "instance-store")
	const size = 8 << 30 // 8 GiB, and it must cost nothing on the host
	path, err := Create(dir, "i-0123456789abcdef0", size)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := Path(dir, "i-0123456789abcdef0"); p != path {
		t.Fatalf("Path = %s, Create made %s", p, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size {
		t.Fatalf("size %d, want %d", st.Size(), size)
	}
	if blocks := st.Sys().(*syscall.Stat_t).Blocks; blocks*512 > 1<<20 {
		t.Fatalf("new instance store already takes %d bytes on the host", blocks*512)
	}

	// The guest writes; a reboot reopens the same file and finds the data.
	d, err := raw.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("scratch data that must survive a reboot")
	if _, err := d.WriteAt(data, 1<<30); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = raw.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := d.ReadAt(got, 1<<30); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after reboot read %q, %v", got, err)
	}
	d.Close()

	// A second Create must not hand the old disk back.
	if _, err := Create(dir, "i-0123456789abcdef0", size); !errors.Is(err, ErrExists) {
		t.Fatalf("Create over an existing store: %v, want ErrExists", err)
	}

	// Stop erases; the next start gets zeroes.
	if err := Erase(dir, "i-0123456789abcdef0"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file still there after Erase: %v", err)
	}
	if err := Erase(dir, "i-0123456789abcdef0"); err != nil {
		t.Fatalf("second Erase: %v", err)
	}
	if _, err := Create(dir, "i-0123456789abcdef0", size); err != nil {
		t.Fatal(err)
	}
	d, err = raw.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.ReadAt(got, 1<<30); err != nil || !bytes.Equal(got, make([]byte, len(got))) {
		t.Fatalf("restarted instance store reads %q, %v; want zeroes", got, err)
	}
}

func TestRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, id := range []string{"", "../etc", "a/b", ".hidden", "i-" + string(make([]byte, 80))} {
		if _, err := Create(dir, id, 1<<20); err == nil {
			t.Errorf("Create accepted instance id %q", id)
		}
		if err := Erase(dir, id); err == nil {
			t.Errorf("Erase accepted instance id %q", id)
		}
	}
	if _, err := Create(dir, "i-1", 0); err == nil {
		t.Error("Create accepted size 0")
	}
}

package qcow2_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"gureum/storage"
	"gureum/storage/qcow2"
	"gureum/storage/raw"
)

// TestProbe checks that storage.Open tells qcow2 from raw by the header.
func TestProbe(t *testing.T) {
	dir := t.TempDir()
	q, r := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	if err := qcow2.Create(q, 1<<20, qcow2.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := raw.Create(r, 1<<20); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{q: "*qcow2.Image", r: "*raw.Disk"} {
		d, err := storage.Open(path, storage.OpenOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := typeName(d); got != want {
			t.Errorf("%s opened as %s, want %s", filepath.Base(path), got, want)
		}
		d.Close()
	}
	// An explicit format wins over the header.
	d, err := storage.Open(q, storage.OpenOptions{ReadOnly: true, Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	if typeName(d) != "*raw.Disk" {
		t.Errorf("Format raw ignored")
	}
	d.Close()
}

func typeName(d storage.Disk) string {
	switch d.(type) {
	case *qcow2.Image:
		return "*qcow2.Image"
	case *raw.Disk:
		return "*raw.Disk"
	}
	return "?"
}

// TestBackingCopyOnWrite checks partial writes over backing data, discard
// over backing data, and a grow past the old size of an image whose
// backing file is larger: the new tail must read zeroes, not old data.
func TestBackingCopyOnWrite(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(5, 5))
	base := make([]byte, 3<<20)
	for i := range base {
		base[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, "base.raw"), base, 0o644); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "top.qcow2")
	if err := qcow2.Create(top, 1<<20, qcow2.CreateOptions{ClusterSize: 4096, BackingFile: "base.raw", BackingFormat: "raw"}); err != nil {
		t.Fatal(err)
	}
	img, err := qcow2.Open(top, qcow2.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), base[:1<<20]...)
	if _, err := img.WriteAt([]byte("hello"), 4096+100); err != nil {
		t.Fatal(err)
	}
	copy(want[4096+100:], "hello")
	if err := img.Discard(8192+10, 5000); err != nil {
		t.Fatal(err)
	}
	clear(want[8192+10 : 8192+10+5000])
	if err := img.Resize(2<<20 + 1000); err != nil {
		t.Fatal(err)
	}
	want = append(want, make([]byte, 1<<20+1000)...)
	if got := readAll(t, img); !bytes.Equal(got, want) {
		t.Fatalf("reads differ at byte %d", firstDiff(got, want))
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	ourCheck(t, top)
	img, err = qcow2.Open(top, qcow2.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if got := readAll(t, img); !bytes.Equal(got, want) {
		t.Fatalf("after reopen reads differ at byte %d", firstDiff(got, want))
	}
}

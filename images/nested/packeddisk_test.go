package nested

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// sparseImage writes a 5 MiB + 1000 byte image with data at a few places
// (including the very start, a run across a block boundary and the unaligned
// tail) and returns its path and contents.
func sparseImage(t *testing.T) (string, []byte) {
	t.Helper()
	img := make([]byte, 5<<20+1000)
	copy(img, "superblock")
	copy(img[packBlock-3:], "across a block boundary")
	copy(img[3<<20:], bytes.Repeat([]byte{0xaa}, 3*packBlock))
	copy(img[len(img)-4:], "tail")
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, img
}

func TestPackedDiskRoundTrip(t *testing.T) {
	src, img := sparseImage(t)
	dir := t.TempDir()
	packed := filepath.Join(dir, "disk.packed")
	if err := PackDisk(src, packed); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(packed)
	if err != nil {
		t.Fatal(err)
	}
	// 2 blocks at the start, 3 in the middle, the tail block: 6 blocks.
	if st.Size() > 6*packBlock+200 {
		t.Errorf("packed disk is %d bytes, want about 6 blocks of %d", st.Size(), packBlock)
	}
	for _, from := range []string{packed, src} {
		out := filepath.Join(dir, "copy.img")
		if err := CopyDisk(from, out); err != nil {
			t.Fatalf("copy from %s: %v", from, err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, img) {
			t.Errorf("copy from %s differs from the image (%d bytes, want %d)", filepath.Base(from), len(got), len(img))
		}
	}
}

func TestPackedDiskRejectsBadRuns(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, runs ...[2]uint64) string {
		var b bytes.Buffer
		b.WriteString(packedMagic)
		binary.Write(&b, binary.LittleEndian, uint64(1<<20))
		for _, r := range runs {
			binary.Write(&b, binary.LittleEndian, r)
			b.Write(make([]byte, r[1]))
		}
		p := filepath.Join(dir, name+".packed")
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, p := range map[string]string{
		"past the end":   write("end", [2]uint64{1<<20 - 10, 20}),
		"out of order":   write("order", [2]uint64{4096, 10}, [2]uint64{0, 10}, [2]uint64{1 << 20, 0}),
		"no final run":   write("final", [2]uint64{0, 10}),
		"offset too far": write("far", [2]uint64{2 << 20, 1}),
	} {
		out := filepath.Join(dir, "out.img")
		if err := CopyDisk(p, out); err == nil {
			t.Errorf("%s: CopyDisk accepted it", name)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: a partial copy was left behind", name)
		}
	}
}

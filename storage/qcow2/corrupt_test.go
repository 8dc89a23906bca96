package qcow2_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gureum/storage"
	"gureum/storage/qcow2"
)

// smallImage makes a small valid image with some data and returns its bytes.
func smallImage(t testing.TB, cluster int64) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "seed.qcow2")
	if err := qcow2.Create(path, 1<<20, qcow2.CreateOptions{ClusterSize: cluster}); err != nil {
		t.Fatal(err)
	}
	img, err := qcow2.Open(path, qcow2.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 6; i++ {
		if _, err := img.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 700), i*150000); err != nil {
			t.Fatal(err)
		}
	}
	if err := img.Discard(150000, 100); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func put32(b []byte, off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }
func put64(b []byte, off int, v uint64) { binary.BigEndian.PutUint64(b[off:], v) }

// TestCorruptImagesRefused opens damaged images read-write: each must
// fail with an error naming the problem and leave the file untouched.
func TestCorruptImagesRefused(t *testing.T) {
	good := smallImage(t, 4096)
	l1Off := int(binary.BigEndian.Uint64(good[40:]))
	cases := []struct {
		name, want string
		damage     func(b []byte)
	}{
		{"magic", "bad magic", func(b []byte) { b[0] = 'X' }},
		{"version", "unsupported qcow2 version 4", func(b []byte) { put32(b, 4, 4) }},
		{"cluster bits", "cluster_bits 30", func(b []byte) { put32(b, 20, 30) }},
		{"unknown incompatible bit", "unknown incompatible feature bits 0x20", func(b []byte) { put64(b, 72, 1<<5) }},
		{"external data file", "external data files", func(b []byte) { put64(b, 72, 1<<2) }},
		{"extended L2", "extended L2", func(b []byte) { put64(b, 72, 1<<4) }},
		{"zstd", "zstd", func(b []byte) { put64(b, 72, 1<<3); b[104] = 1 }},
		{"encryption", "encrypted", func(b []byte) { put32(b, 32, 2) }},
		{"dirty", "dirty", func(b []byte) { put64(b, 72, 1) }},
		{"corrupt bit", "corrupt", func(b []byte) { put64(b, 72, 2) }},
		{"refcount order", "refcount_order 7", func(b []byte) { put32(b, 96, 7) }},
		{"L1 past end", "L1 table", func(b []byte) { put64(b, 40, 1<<40) }},
		{"L1 misaligned", "L1 table offset", func(b []byte) { put64(b, 40, 4096+8) }},
		{"L1 too small", "l1_size", func(b []byte) { put64(b, 24, 1<<40) }},
		{"refcount table", "refcount table", func(b []byte) { put64(b, 48, 3) }},
		{"L2 pointer past end", "L1 entry 0", func(b []byte) { put64(b[l1Off:], 0, 1<<40|1<<63) }},
		{"L2 pointer misaligned", "L1 entry 0", func(b []byte) { put64(b[l1Off:], 0, 4096*3+512|1<<63) }},
		{"header length", "header_length", func(b []byte) { put32(b, 100, 50) }},
		{"backing name outside", "backing file name", func(b []byte) { put64(b, 8, 4090); put32(b, 16, 100) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			c.damage(b)
			path := filepath.Join(t.TempDir(), "bad.qcow2")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			before := sha256.Sum256(b)
			_, err := qcow2.Open(path, qcow2.Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("open: err %v, want one containing %q", err, c.want)
			}
			after, _ := os.ReadFile(path)
			if sha256.Sum256(after) != before {
				t.Fatal("a refused open changed the file")
			}
		})
	}
}

// TestCorruptionsFound damages refcounts and tables of a valid image and
// expects Check to find each problem, and Repair to fix leaks only.
func TestCorruptionsFound(t *testing.T) {
	const cs = 4096
	good := smallImage(t, cs)
	refTable := int(binary.BigEndian.Uint64(good[48:]))
	block := int(binary.BigEndian.Uint64(good[refTable:]))
	l1Off := int(binary.BigEndian.Uint64(good[40:]))
	l2 := int(binary.BigEndian.Uint64(good[l1Off:]) & 0x00fffffffffffe00)
	dataEnt := func(b []byte) int { // first allocated L2 entry
		for i := 0; i < cs/8; i++ {
			if binary.BigEndian.Uint64(b[l2+8*i:])&0x00fffffffffffe00 != 0 {
				return l2 + 8*i
			}
		}
		t.Fatal("no data cluster")
		return 0
	}
	write := func(t *testing.T, b []byte) string {
		path := filepath.Join(t.TempDir(), "img.qcow2")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("leak", func(t *testing.T) {
		b := append([]byte(nil), good...)
		nClusters := len(b) / cs
		binary.BigEndian.PutUint16(b[block+2*nClusters+4:], 1) // a cluster past the end
		binary.BigEndian.PutUint16(b[block+2*0:], 2)           // the header, counted twice
		path := write(t, b)
		res, err := qcow2.Check(path)
		if err != nil || res.Leaks != 2 || res.Corruptions != 0 {
			t.Fatalf("check: %v %+v", err, res)
		}
		if res, err = qcow2.Repair(path); err != nil || res.LeaksFixed != 2 {
			t.Fatalf("repair: %v %+v", err, res)
		}
		if res, err = qcow2.Check(path); err != nil || !res.OK() {
			t.Fatalf("check after repair: %v %+v", err, res)
		}
	})
	corruptions := []struct {
		name, want string
		damage     func(b []byte)
	}{
		{"refcount too low", "refcount 0 but 1 references", func(b []byte) {
			c := int(binary.BigEndian.Uint64(b[dataEnt(b):])&0x00fffffffffffe00) / cs
			binary.BigEndian.PutUint16(b[block+2*c:], 0)
		}},
		{"overlap", "overlaps", func(b []byte) {
			put64(b[dataEnt(b):], 0, uint64(l1Off)|1<<63) // data on the L1 table
		}},
		{"past end", "past the end", func(b []byte) { put64(b[dataEnt(b):], 0, 1<<40|1<<63) }},
		{"reserved bits", "reserved bits", func(b []byte) {
			e := binary.BigEndian.Uint64(b[dataEnt(b):])
			put64(b[dataEnt(b):], 0, e|0x100)
		}},
		{"copied flag", "copied flag", func(b []byte) {
			e := binary.BigEndian.Uint64(b[dataEnt(b):])
			put64(b[dataEnt(b):], 0, e&^(1<<63))
		}},
	}
	for _, c := range corruptions {
		t.Run(c.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			c.damage(b)
			path := write(t, b)
			res, err := qcow2.Check(path)
			if err != nil {
				t.Fatal(err)
			}
			if res.Corruptions == 0 || !strings.Contains(strings.Join(res.Problems, "\n"), c.want) {
				t.Fatalf("check: %+v, want a corruption mentioning %q", res, c.want)
			}
			before, _ := os.ReadFile(path)
			if _, err := qcow2.Repair(path); err == nil && res.Leaks > 0 {
				t.Fatal("repair of a corrupt image did not refuse")
			}
			after, _ := os.ReadFile(path)
			if res.Leaks == 0 && !bytes.Equal(before, after) {
				t.Fatal("repair changed an image it had nothing to fix")
			}
		})
	}
}

// TestAutoclearCleared checks that a read-write open clears autoclear
// feature bits (their data, such as dirty bitmaps, is not kept up to
// date by us) and a read-only open leaves them.
func TestAutoclearCleared(t *testing.T) {
	b := smallImage(t, 4096)
	put64(b, 88, 1)
	path := filepath.Join(t.TempDir(), "img.qcow2")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := qcow2.Open(path, qcow2.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	if got, _ := os.ReadFile(path); binary.BigEndian.Uint64(got[88:]) != 1 {
		t.Fatal("read-only open changed the autoclear bits")
	}
	img, err = qcow2.Open(path, qcow2.Options{})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	if got, _ := os.ReadFile(path); binary.BigEndian.Uint64(got[88:]) != 0 {
		t.Fatal("read-write open kept the autoclear bits")
	}
}

// TestBackingLoop checks that an image chain that loops is refused.
func TestBackingLoop(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	if err := qcow2.Create(a, 1<<20, qcow2.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := qcow2.Create(b, 1<<20, qcow2.CreateOptions{BackingFile: "a.qcow2"}); err != nil {
		t.Fatal(err)
	}
	// Rewrite a as an image backed by b.
	os.Remove(a)
	if err := qcow2.Create(a, 1<<20, qcow2.CreateOptions{BackingFile: "b.qcow2"}); err != nil {
		t.Fatal(err)
	}
	_, err := storage.Open(a, storage.OpenOptions{ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), "deeper than") {
		t.Fatalf("open of a looping chain: %v", err)
	}
}

// FuzzOpen feeds mutated images to Open (read-only), reads, and Check:
// errors are fine, panics and writes are not.
func FuzzOpen(f *testing.F) {
	f.Add(smallImage(f, 512))
	f.Add(smallImage(f, 4096))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.qcow2")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		noBacking := func(dir, name, format string) (storage.Disk, error) {
			return nil, errors.New("no backing files in the fuzzer")
		}
		img, err := qcow2.Open(path, qcow2.Options{ReadOnly: true, Backing: noBacking})
		if err == nil {
			buf := make([]byte, 64<<10)
			for _, off := range []int64{0, img.Size() / 2, img.Size() - int64(len(buf))} {
				if off >= 0 && off+int64(len(buf)) <= img.Size() {
					img.ReadAt(buf, off)
				}
			}
			img.Close()
			qcow2.Check(path)
		}
		after, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(after, data) {
			t.Fatal("a read-only open or check changed the file")
		}
	})
}

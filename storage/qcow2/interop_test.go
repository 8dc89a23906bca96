package qcow2_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gureum/storage"
	"gureum/storage/qcow2"
)

// These tests check our images against QEMU's own tools (qemu-utils):
// qemu-img must find no problem in what we write and read it as we do,
// and we must read what qemu-img and qemu-io write.

func needQemu(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range append([]string{"qemu-img"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt install qemu-utils)", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// qemuCheck runs qemu-img check, which exits non-zero on leaks or errors.
func qemuCheck(t *testing.T, path string) {
	t.Helper()
	run(t, "qemu-img", "check", "-f", "qcow2", path)
}

// qemuCompare checks that the qcow2 image reads exactly as the raw file.
func qemuCompare(t *testing.T, img string, want []byte) {
	t.Helper()
	rawPath := img + ".expected.raw"
	if err := os.WriteFile(rawPath, want, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img, rawPath)
}

// readAll reads the whole disk.
func readAll(t *testing.T, d storage.Disk) []byte {
	t.Helper()
	got := make([]byte, d.Size())
	if _, err := d.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	return got
}

func ourCheck(t *testing.T, path string) {
	t.Helper()
	res, err := qcow2.Check(path)
	if err != nil {
		t.Fatalf("check %s: %v", path, err)
	}
	if !res.OK() {
		t.Fatalf("check %s: %d leaks, %d corruptions: %v", path, res.Leaks, res.Corruptions, res.Problems)
	}
}

// mutate applies random writes, discards and zeroes to d and want.
func mutate(t *testing.T, r *rand.Rand, d storage.Disk, want []byte, ops int) {
	t.Helper()
	size := int64(len(want))
	for i := 0; i < ops; i++ {
		n := 1 + r.Int64N(300000)
		off := r.Int64N(size - n)
		switch r.IntN(6) {
		case 0:
			if err := d.(storage.Discarder).Discard(off, n); err != nil {
				t.Fatal(err)
			}
			clear(want[off : off+n])
		case 1:
			if err := d.(storage.ZeroWriter).WriteZeroes(off, n); err != nil {
				t.Fatal(err)
			}
			clear(want[off : off+n])
		default:
			p := make([]byte, n)
			for k := range p {
				p[k] = byte(r.Uint32())
			}
			if _, err := d.WriteAt(p, off); err != nil {
				t.Fatal(err)
			}
			copy(want[off:], p)
		}
		if i%40 == 39 {
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestQemuReadsOurImages(t *testing.T) {
	needQemu(t)
	for _, c := range []struct{ cluster, refbits int }{{65536, 16}, {512, 16}, {4096, 1}, {4096, 64}, {2 << 20, 8}} {
		t.Run(fmt.Sprintf("cluster%d-refbits%d", c.cluster, c.refbits), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ours.qcow2")
			const size = 24<<20 + 512
			if err := qcow2.Create(path, size, qcow2.CreateOptions{ClusterSize: int64(c.cluster), RefcountBits: c.refbits}); err != nil {
				t.Fatal(err)
			}
			img, err := qcow2.Open(path, qcow2.Options{CacheBytes: 8 * c.cluster})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(uint64(c.cluster), uint64(c.refbits)))
			want := make([]byte, size)
			mutate(t, r, img, want, 150)
			if err := img.Resize(size * 2); err != nil {
				t.Fatal(err)
			}
			want = append(want, make([]byte, size)...)
			mutate(t, r, img, want, 50)
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			ourCheck(t, path)
			qemuCheck(t, path)
			qemuCompare(t, path, want)
		})
	}
}

// randomRaw makes a disk image with random data, runs of one byte value
// and holes, which qemu-img convert turns into data, compressed and
// unallocated clusters.
func randomRaw(t *testing.T, path string, size int) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(42, uint64(size)))
	data := make([]byte, size)
	for off := 0; off < size; {
		n := min(size-off, 1+r.IntN(200000))
		switch r.IntN(3) {
		case 0:
			for k := off; k < off+n; k++ {
				data[k] = byte(r.Uint32())
			}
		case 1:
			v := byte(r.Uint32())
			for k := off; k < off+n; k++ {
				data[k] = v ^ byte(k>>9)
			}
		}
		off += n
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestWeReadQemuImages(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	rawPath := filepath.Join(dir, "src.raw")
	want := randomRaw(t, rawPath, 12<<20+4096)
	for _, c := range []struct{ name, opts string }{
		{"default", ""},
		{"compressed", "-c"},
		{"compressed-4K", "-c -o cluster_size=4096"},
		{"512-refbits8", "-o cluster_size=512,refcount_bits=8"},
		{"refbits2", "-o refcount_bits=2"},
		{"lazy-refcounts", "-o lazy_refcounts=on"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, c.name+".qcow2")
			args := []string{"convert", "-f", "raw", "-O", "qcow2"}
			args = append(args, strings.Fields(c.opts)...)
			run(t, "qemu-img", append(args, rawPath, out)...)
			img, err := qcow2.Open(out, qcow2.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, img); !bytes.Equal(got, want) {
				t.Fatal("image written by qemu-img reads differently")
			}
			img.Close()
			ourCheck(t, out)
			// Write over it (copy-on-write out of compressed clusters), then
			// let qemu-img judge the result.
			img, err = qcow2.Open(out, qcow2.Options{})
			if err != nil {
				t.Fatal(err)
			}
			w := append([]byte(nil), want...)
			mutate(t, rand.New(rand.NewPCG(7, 7)), img, w, 60)
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			ourCheck(t, out)
			qemuCheck(t, out)
			qemuCompare(t, out, w)
		})
	}
}

func TestQemuBackingChain(t *testing.T) {
	needQemu(t, "qemu-io")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	want := randomRaw(t, base, 8<<20)
	mid := filepath.Join(dir, "mid.qcow2")
	top := filepath.Join(dir, "top.qcow2")
	run(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "base.raw", "-F", "raw", mid)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0xab 1000000 100000", mid)
	copy(want[1000000:1100000], bytes.Repeat([]byte{0xab}, 100000))
	run(t, "qemu-img", "create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top)
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0xcd 1050000 300000", "-c", "write -z 4194304 65536", top)
	copy(want[1050000:1350000], bytes.Repeat([]byte{0xcd}, 300000))
	clear(want[4194304 : 4194304+65536])

	d, err := storage.Open(top, storage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, d); !bytes.Equal(got, want) {
		t.Fatalf("chain made by qemu reads differently at byte %d", firstDiff(got, want))
	}
	mutate(t, rand.New(rand.NewPCG(1, 1)), d, want, 60)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	ourCheck(t, top)
	qemuCheck(t, top)
	qemuCompare(t, top, want)
}

func TestOurBackingChainInQemu(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	const size = 6 << 20
	r := rand.New(rand.NewPCG(3, 3))
	want := make([]byte, size)
	paths := []string{filepath.Join(dir, "l0.qcow2")}
	if err := qcow2.Create(paths[0], size, qcow2.CreateOptions{ClusterSize: 4096}); err != nil {
		t.Fatal(err)
	}
	// Five layers, each written a little, each backed by the one below
	// with a relative name.
	for layer := 0; layer < 5; layer++ {
		if layer > 0 {
			p := filepath.Join(dir, fmt.Sprintf("l%d.qcow2", layer))
			opts := qcow2.CreateOptions{BackingFile: filepath.Base(paths[layer-1]), BackingFormat: "qcow2"}
			if layer%2 == 0 {
				opts.BackingFormat = "" // probe
				opts.ClusterSize = 16384
			}
			if err := qcow2.Create(p, size, opts); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
		d, err := storage.Open(paths[layer], storage.OpenOptions{Format: "qcow2"})
		if err != nil {
			t.Fatal(err)
		}
		mutate(t, r, d, want, 25)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range paths {
		ourCheck(t, p)
		qemuCheck(t, p)
	}
	top := paths[len(paths)-1]
	qemuCompare(t, top, want)
	info := run(t, "qemu-img", "info", "--backing-chain", top)
	if strings.Count(info, "image:") != 5 {
		t.Fatalf("qemu-img info shows a different chain:\n%s", info)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// Package storagetest is the conformance suite every disk format passes.
// A format's test calls Run with a Format that creates and opens its files;
// Run checks the storage.Disk contract and the optional interfaces the
// format's disks implement (Discarder, ZeroWriter, Resizer).
package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"gureum/storage"
)

// Format is what the suite needs from a disk format.
type Format struct {
	// Create makes a new disk file of size bytes whose every byte reads as
	// zero, in a directory of the test's choosing, and returns its path.
	Create func(t *testing.T, size int64) string
	// Open opens the file at path.
	Open func(path string, readOnly bool) (storage.Disk, error)
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, f Format) {
	t.Run("OddOffsets", func(t *testing.T) { testOddOffsets(t, f) })
	t.Run("OutOfRange", func(t *testing.T) { testOutOfRange(t, f) })
	t.Run("UnwrittenReadsZero", func(t *testing.T) { testUnwrittenZero(t, f) })
	t.Run("FlushSurvivesReopen", func(t *testing.T) { testFlushReopen(t, f) })
	t.Run("DiscardAndWriteZeroes", func(t *testing.T) { testDiscard(t, f) })
	t.Run("ResizeGrow", func(t *testing.T) { testResize(t, f) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, f) })
	t.Run("ReadOnly", func(t *testing.T) { testReadOnly(t, f) })
}

const suiteSize = 4<<20 + 1536 // not a multiple of any cluster size

func open(t *testing.T, f Format, path string, readOnly bool) storage.Disk {
	t.Helper()
	d, err := f.Open(path, readOnly)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return d
}

func closeDisk(t *testing.T, d storage.Disk) {
	t.Helper()
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// shadow is the expected content of a disk, kept in memory.
type shadow []byte

func (s shadow) write(t *testing.T, d storage.Disk, p []byte, off int64) {
	t.Helper()
	n, err := d.WriteAt(p, off)
	if err != nil || n != len(p) {
		t.Fatalf("write [%d, +%d): n=%d err=%v", off, len(p), n, err)
	}
	copy(s[off:], p)
}

// verify reads the whole disk in odd-sized pieces and compares.
func (s shadow) verify(t *testing.T, d storage.Disk, what string) {
	t.Helper()
	if d.Size() != int64(len(s)) {
		t.Fatalf("%s: size %d, want %d", what, d.Size(), len(s))
	}
	buf := make([]byte, 300007)
	for off := int64(0); off < int64(len(s)); {
		n := min(int64(len(buf)), int64(len(s))-off)
		if _, err := d.ReadAt(buf[:n], off); err != nil {
			t.Fatalf("%s: read [%d, +%d): %v", what, off, n, err)
		}
		if !bytes.Equal(buf[:n], s[off:off+n]) {
			i := firstDiff(buf[:n], s[off:off+n])
			t.Fatalf("%s: byte %d reads %#x, want %#x", what, off+int64(i), buf[i], s[off+int64(i)])
		}
		off += n
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func randomBytes(r *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

func testOddOffsets(t *testing.T, f Format) {
	path := f.Create(t, suiteSize)
	d := open(t, f, path, false)
	defer closeDisk(t, d)
	s := make(shadow, suiteSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		n := 1 + r.IntN(150000)
		off := r.Int64N(suiteSize - int64(n) + 1)
		s.write(t, d, randomBytes(r, n), off)
		if i%50 == 0 {
			s.verify(t, d, fmt.Sprintf("after write %d", i))
		}
	}
	// The last byte and the first byte, alone.
	s.write(t, d, []byte{0xee}, suiteSize-1)
	s.write(t, d, []byte{0x11}, 0)
	// Odd-sized reads at odd offsets, besides verify's stride.
	for i := 0; i < 100; i++ {
		n := 1 + r.IntN(70000)
		off := r.Int64N(suiteSize - int64(n) + 1)
		got := make([]byte, n)
		if _, err := d.ReadAt(got, off); err != nil {
			t.Fatalf("read [%d, +%d): %v", off, n, err)
		}
		if !bytes.Equal(got, s[off:off+int64(n)]) {
			t.Fatalf("read [%d, +%d) differs at +%d", off, n, firstDiff(got, s[off:off+int64(n)]))
		}
	}
	s.verify(t, d, "end")
}

func testOutOfRange(t *testing.T, f Format) {
	path := f.Create(t, suiteSize)
	d := open(t, f, path, false)
	defer closeDisk(t, d)
	cases := []struct {
		off int64
		n   int
	}{{suiteSize - 1, 2}, {suiteSize, 1}, {-1, 1}, {suiteSize + 4096, 512}, {1 << 62, 1}}
	for _, c := range cases {
		p := make([]byte, c.n)
		if _, err := d.ReadAt(p, c.off); !errors.Is(err, storage.ErrOutOfRange) {
			t.Errorf("read [%d, +%d): err %v, want ErrOutOfRange", c.off, c.n, err)
		}
		if _, err := d.WriteAt(p, c.off); !errors.Is(err, storage.ErrOutOfRange) {
			t.Errorf("write [%d, +%d): err %v, want ErrOutOfRange", c.off, c.n, err)
		}
	}
	if dis, ok := d.(storage.Discarder); ok {
		if err := dis.Discard(suiteSize-512, 1024); !errors.Is(err, storage.ErrOutOfRange) {
			t.Errorf("discard past the end: err %v, want ErrOutOfRange", err)
		}
	}
	// Empty I/O at the very end is legal.
	if _, err := d.ReadAt(nil, suiteSize); err != nil {
		t.Errorf("empty read at the end: %v", err)
	}
}

func testUnwrittenZero(t *testing.T, f Format) {
	path := f.Create(t, suiteSize)
	d := open(t, f, path, false)
	defer closeDisk(t, d)
	s := make(shadow, suiteSize)
	// A few writes so that both allocated and unallocated ranges exist,
	// including partial clusters around the writes.
	r := rand.New(rand.NewPCG(3, 4))
	s.write(t, d, randomBytes(r, 100), 70000)
	s.write(t, d, randomBytes(r, 5000), 3<<20+17)
	s.verify(t, d, "sparse")
}

func testFlushReopen(t *testing.T, f Format) {
	path := f.Create(t, suiteSize)
	d := open(t, f, path, false)
	s := make(shadow, suiteSize)
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 40; i++ {
		n := 1 + r.IntN(100000)
		s.write(t, d, randomBytes(r, n), r.Int64N(suiteSize-int64(n)))
	}
	if err := d.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	// A second handle opened while the first is still open, as after a
	// crash of the first: everything flushed must be on the file already,
	// not only in the first handle's caches.
	d2 := open(t, f, path, true)
	s.verify(t, d2, "second handle after flush")
	closeDisk(t, d2)
	closeDisk(t, d)
	d3 := open(t, f, path, false)
	s.verify(t, d3, "after close and reopen")
	closeDisk(t, d3)
}

func testDiscard(t *testing.T, f Format) {
	path := f.Create(t, suiteSize)
	d := open(t, f, path, false)
	defer closeDisk(t, d)
	dis, okD := d.(storage.Discarder)
	zw, okZ := d.(storage.ZeroWriter)
	if !okD && !okZ {
		t.Skip("format implements neither Discarder nor ZeroWriter")
	}
	r := rand.New(rand.NewPCG(7, 8))
	s := make(shadow, suiteSize)
	s.write(t, d, randomBytes(r, suiteSize), 0)
	zero := func(i int, off, n int64) {
		var err error
		if (i%2 == 0 && okD) || !okZ {
			err = dis.Discard(off, n)
		} else {
			err = zw.WriteZeroes(off, n)
		}
		if err != nil {
			t.Fatalf("zero [%d, +%d): %v", off, n, err)
		}
		clear(s[off : off+n])
	}
	// Aligned whole megabytes, odd ranges, single bytes, the tail.
	zero(0, 1<<20, 1<<20)
	zero(1, 1<<20, 1<<20)
	zero(2, 12345, 67891)
	zero(3, 3<<20+1, 1)
	zero(4, suiteSize-700, 700)
	for i := 0; i < 30; i++ {
		n := 1 + r.Int64N(200000)
		zero(i, r.Int64N(suiteSize-n), n)
	}
	s.verify(t, d, "after discards")
	// Writing again into discarded ranges works.
	s.write(t, d, randomBytes(r, 3000), 1<<20+100)
	s.verify(t, d, "rewrite")
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	d2 := open(t, f, path, true)
	defer closeDisk(t, d2)
	s.verify(t, d2, "reopened after discards")
}

func testResize(t *testing.T, f Format) {
	path := f.Create(t, suiteSize)
	d := open(t, f, path, false)
	rs, ok := d.(storage.Resizer)
	if !ok {
		closeDisk(t, d)
		t.Skip("format does not implement Resizer")
	}
	r := rand.New(rand.NewPCG(9, 10))
	s := make(shadow, suiteSize)
	s.write(t, d, randomBytes(r, 9000), suiteSize-9000)
	s.write(t, d, randomBytes(r, 9000), 0)
	if err := rs.Resize(suiteSize - 1); !errors.Is(err, storage.ErrShrink) {
		t.Fatalf("shrink: err %v, want ErrShrink", err)
	}
	const bigger = 3*suiteSize + 777
	if err := rs.Resize(bigger); err != nil {
		t.Fatalf("resize: %v", err)
	}
	s = append(s, make([]byte, bigger-suiteSize)...)
	s.verify(t, d, "after grow")
	s.write(t, d, randomBytes(r, 10000), bigger-10000)
	s.write(t, d, randomBytes(r, 10000), suiteSize-5000)
	s.verify(t, d, "writes after grow")
	// A much larger grow, past what one table of most formats holds.
	const huge = 64 << 30
	if err := rs.Resize(huge); err != nil {
		t.Fatalf("resize to 64 GiB: %v", err)
	}
	s.write(t, d, randomBytes(r, 4096), 0) // keep s in step below
	tail := randomBytes(r, 5000)
	if _, err := d.WriteAt(tail, huge-5000); err != nil {
		t.Fatalf("write at the end of 64 GiB: %v", err)
	}
	closeDisk(t, d)
	d2 := open(t, f, path, true)
	defer closeDisk(t, d2)
	if d2.Size() != huge {
		t.Fatalf("reopened size %d, want %d", d2.Size(), int64(huge))
	}
	got := make([]byte, len(s))
	if _, err := d2.ReadAt(got, 0); err != nil || !bytes.Equal(got, s) {
		t.Fatalf("data before the second grow changed (err %v)", err)
	}
	got = make([]byte, 5000)
	if _, err := d2.ReadAt(got, huge-5000); err != nil || !bytes.Equal(got, tail) {
		t.Fatalf("tail of the 64 GiB disk differs (err %v)", err)
	}
}

func testConcurrent(t *testing.T, f Format) {
	path := f.Create(t, suiteSize)
	d := open(t, f, path, false)
	defer closeDisk(t, d)
	const workers = 8
	region := int64(suiteSize / workers)
	s := make(shadow, suiteSize)
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 11))
			base := int64(w) * region
			own := s[base : base+region] // each worker owns its region of s
			for i := 0; i < 150; i++ {
				n := 1 + r.Int64N(20000)
				off := r.Int64N(region - n)
				switch r.IntN(4) {
				case 0, 1:
					p := randomBytes(r, int(n))
					if _, err := d.WriteAt(p, base+off); err != nil {
						errs <- err
						return
					}
					copy(own[off:], p)
				case 2:
					got := make([]byte, n)
					if _, err := d.ReadAt(got, base+off); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, own[off:off+n]) {
						errs <- fmt.Errorf("worker %d: read [%d, +%d) differs", w, base+off, n)
						return
					}
				case 3:
					if err := d.Flush(); err != nil {
						errs <- err
						return
					}
				}
			}
		}(w)
	}
	// A reader over the whole disk at the same time: it checks nothing but
	// that reads racing writes return no error.
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		buf := make([]byte, 65536+3)
		for i := int64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			off := (i * 99991) % (suiteSize - int64(len(buf)))
			if _, err := d.ReadAt(buf, off); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s.verify(t, d, "after concurrent I/O")
}

func testReadOnly(t *testing.T, f Format) {
	path := f.Create(t, suiteSize)
	d := open(t, f, path, false)
	s := make(shadow, suiteSize)
	s.write(t, d, bytes.Repeat([]byte{0x5a}, 10000), 5000)
	closeDisk(t, d)
	ro := open(t, f, path, true)
	defer closeDisk(t, ro)
	if !ro.ReadOnly() {
		t.Error("ReadOnly() is false on a disk opened read-only")
	}
	if _, err := ro.WriteAt([]byte{1}, 0); !errors.Is(err, storage.ErrReadOnly) {
		t.Errorf("write: err %v, want ErrReadOnly", err)
	}
	if dis, ok := ro.(storage.Discarder); ok {
		if err := dis.Discard(0, 4096); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("discard: err %v, want ErrReadOnly", err)
		}
	}
	if zw, ok := ro.(storage.ZeroWriter); ok {
		if err := zw.WriteZeroes(0, 4096); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("write-zeroes: err %v, want ErrReadOnly", err)
		}
	}
	if rs, ok := ro.(storage.Resizer); ok {
		if err := rs.Resize(2 * suiteSize); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("resize: err %v, want ErrReadOnly", err)
		}
	}
	if err := ro.Flush(); err != nil {
		t.Errorf("flush of a read-only disk: %v", err)
	}
	s.verify(t, ro, "read-only")
}

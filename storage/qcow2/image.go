// Package qcow2 reads and writes qcow2 version 3 images (and reads
// version 2), QEMU's copy-on-write disk format, with backing-file chains.
//
// An image maps the guest's disk in fixed-size clusters through a two
// level table: the L1 table (kept whole in memory) points at L2 tables
// (one cluster each, cached), whose entries point at data clusters. Every
// host cluster has a reference count in refcount blocks found through the
// refcount table; a cluster with count 0 is free. A guest cluster with no
// L2 entry reads from the backing file, or as zeroes without one.
//
// Writes keep the file consistent if the process or the host dies at any
// moment: see the ordering rules on Image and in docs/storage.md.
package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"gureum/storage"
	// Backing files in raw format are opened through storage.Open, which
	// finds raw by its registration.
	_ "gureum/storage/raw"
)

// L1 and L2 entry bits. Bits 9 to 55 hold a host offset; bit 63 says the
// cluster's refcount is exactly 1 (so it may be written in place); bit 62
// marks a compressed cluster; bit 0 of a standard L2 entry reads the
// cluster as zeroes (version 3).
const (
	flagCopied     = 1 << 63
	flagCompressed = 1 << 62
	flagZero       = 1 << 0
	offsetMask     = 0x00fffffffffffe00
)

// Options says how to open an image.
type Options struct {
	ReadOnly bool
	// Backing opens the backing file; nil means storage.DefaultBacking.
	Backing storage.BackingResolver
	// CacheBytes bounds the memory of each metadata cache (L2 tables and
	// refcount blocks); 0 means 4 MiB each.
	CacheBytes int
	// noBacking skips opening the backing file (Check needs none).
	noBacking bool
}

// Image is an open qcow2 image. It is safe for concurrent use.
//
// Locking: mu guards all metadata (tables, caches, allocation state).
// Reads and in-place writes of data clusters run outside mu while holding
// io shared; making freed clusters reusable takes io exclusively, so no
// data I/O can still be aimed at a cluster when it changes owner.
//
// Write order (what makes a crash at any point leave only leaks): a new
// data cluster's refcount is raised first, its data written next, the L2
// entry pointing at it after, and the L1 entry last; each step reaches
// the disk (fdatasync) before the next one is written. Metadata is cached
// and written back in that order at Flush, or when a cache evicts a dirty
// table. Refcount decrements (freed clusters) wait until the pointers
// that no longer use them are on disk, and only then become reusable.
type Image struct {
	f        *os.File
	path     string
	readOnly bool
	backing  storage.Disk // nil without a backing file

	clusterBits uint32
	clusterSize uint64
	l2Entries   uint64 // entries per L2 table
	refOrder    uint32 // log2 of the refcount width in bits
	refPerBlock uint64 // refcounts per refcount block

	size atomic.Uint64 // virtual size; changed under mu by Resize

	io sync.RWMutex

	mu            sync.Mutex
	hdr           *header  // guarded by mu
	l1            []uint64 // guarded by mu; the whole L1 table
	l1Dirty       bool
	refTable      []uint64 // guarded by mu; the whole refcount table
	refTableDirty bool
	l2Cache       *tableCache // guarded by mu
	refCache      *tableCache // guarded by mu
	// endCluster is the first host cluster past the file's end and past
	// every cluster allocated; clusters from here on are free.
	endCluster uint64
	freeCursor uint64   // no free cluster below this one
	pendFree   []uint64 // host offsets whose refcount drops at the next Flush
	closed     bool
	broken     error // set when a metadata write failed half way
}

var (
	_ storage.Disk       = (*Image)(nil)
	_ storage.Discarder  = (*Image)(nil)
	_ storage.ZeroWriter = (*Image)(nil)
	_ storage.Resizer    = (*Image)(nil)
)

// init registers qcow2 with storage.Open.
func init() {
	storage.RegisterFormat(storage.Format{
		Name:  "qcow2",
		Probe: func(head []byte) bool { return len(head) >= 4 && binary.BigEndian.Uint32(head) == magic },
		Open: func(path string, opts storage.OpenOptions) (storage.Disk, error) {
			return Open(path, Options{ReadOnly: opts.ReadOnly, Backing: opts.Backing})
		},
	})
}

// Open opens a qcow2 image. Nothing is written to the file before the
// header and tables have been validated; a corrupt image gets an error
// that names the bad field.
func Open(path string, opts Options) (*Image, error) {
	flag := os.O_RDWR
	if opts.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open qcow2: %w", err)
	}
	img, err := openFile(f, path, opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open qcow2 %s: %w", path, err)
	}
	return img, nil
}

func openFile(f *os.File, path string, opts Options) (*Image, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	fileSize := st.Size()
	first := make([]byte, min(fileSize, 1<<maxClusterBits))
	if _, err := f.ReadAt(first, 0); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	h, err := parseHeader(first, fileSize)
	if err != nil {
		return nil, err
	}
	img := &Image{
		f:           f,
		path:        path,
		readOnly:    opts.ReadOnly,
		hdr:         h,
		clusterBits: h.clusterBits,
		clusterSize: h.clusterSize(),
		l2Entries:   h.clusterSize() / 8,
		refOrder:    h.refcountOrder,
	}
	img.refPerBlock = img.clusterSize * 8 >> h.refcountOrder
	img.size.Store(h.size)
	img.endCluster = (uint64(fileSize) + img.clusterSize - 1) >> img.clusterBits
	if !opts.ReadOnly {
		if err := img.writableCheck(); err != nil {
			return nil, err
		}
	}
	if img.l1, err = img.readTable(h.l1Offset, uint64(h.l1Size)); err != nil {
		return nil, fmt.Errorf("read L1 table: %w", err)
	}
	for i, e := range img.l1 {
		if err := img.checkPointer(e&offsetMask, e&^(offsetMask|flagCopied) != 0, fileSize); err != nil {
			return nil, fmt.Errorf("L1 entry %d: %w", i, err)
		}
	}
	refEntries := uint64(h.refTableCluster) * img.clusterSize / 8
	if img.refTable, err = img.readTable(h.refTableOffset, refEntries); err != nil {
		return nil, fmt.Errorf("read refcount table: %w", err)
	}
	for i, e := range img.refTable {
		if err := img.checkPointer(e&offsetMask, e&^offsetMask != 0, fileSize); err != nil {
			return nil, fmt.Errorf("refcount table entry %d: %w", i, err)
		}
	}
	cacheBytes := opts.CacheBytes
	if cacheBytes == 0 {
		cacheBytes = 4 << 20
	}
	n := cacheBytes / int(img.clusterSize)
	img.l2Cache = newTableCache(n, img.writeBackL2)
	img.refCache = newTableCache(n, img.writeTable)
	if h.backingFile != "" && !opts.noBacking {
		resolve := opts.Backing
		if resolve == nil {
			resolve = storage.DefaultBacking
		}
		b, err := resolve(filepath.Dir(path), h.backingFile, h.backingFormat)
		if err != nil {
			return nil, fmt.Errorf("backing file %q: %w", h.backingFile, err)
		}
		img.backing = b
	}
	if !opts.ReadOnly && h.version == 3 && h.autoclear != 0 {
		// Validation is done: the first write we make clears the
		// autoclear bits (bitmaps we do not update become invalid).
		var zero [8]byte
		if _, err := f.WriteAt(zero[:], offAutoclear); err != nil {
			img.closeBacking()
			return nil, fmt.Errorf("clear autoclear features: %w", err)
		}
		h.autoclear = 0
	}
	return img, nil
}

// writableCheck refuses read-write opens of images we cannot write safely.
func (img *Image) writableCheck() error {
	h := img.hdr
	switch {
	case h.incompatible&incompatDirty != 0:
		return errors.New("image is marked dirty (lazy refcounts after a crash): repair it with qemu-img check -r all, or open it read-only")
	case h.incompatible&incompatCorrupt != 0:
		return errors.New("image is marked corrupt: open it read-only")
	case h.nbSnapshots != 0:
		return fmt.Errorf("image has %d internal snapshots: writing them is not supported, open it read-only", h.nbSnapshots)
	}
	return nil
}

// checkPointer validates a table pointer: cluster aligned, reserved bits
// clear, inside the file.
func (img *Image) checkPointer(off uint64, reservedSet bool, fileSize int64) error {
	if reservedSet {
		return errors.New("reserved bits set")
	}
	if off == 0 {
		return nil
	}
	if off&(img.clusterSize-1) != 0 {
		return fmt.Errorf("offset %#x is not cluster aligned", off)
	}
	if off >= uint64(fileSize) {
		return fmt.Errorf("offset %#x is past the end of the file", off)
	}
	return nil
}

// readTable reads n big-endian 64-bit entries at off.
func (img *Image) readTable(off, n uint64) ([]uint64, error) {
	buf := make([]byte, n*8)
	if _, err := img.f.ReadAt(buf, int64(off)); err != nil {
		return nil, err
	}
	t := make([]uint64, n)
	for i := range t {
		t[i] = binary.BigEndian.Uint64(buf[i*8:])
	}
	return t, nil
}

// Size is the virtual size in bytes.
func (img *Image) Size() int64 { return int64(img.size.Load()) }

// ReadOnly reports whether the image was opened read-only.
func (img *Image) ReadOnly() bool { return img.readOnly }

// ClusterSize is the image's cluster size in bytes.
func (img *Image) ClusterSize() int64 { return int64(img.clusterSize) }

// BackingFile is the backing file name as written in the header, or "".
func (img *Image) BackingFile() string { return img.hdr.backingFile }

// Backing is the open backing disk, or nil.
func (img *Image) Backing() storage.Disk { return img.backing }

func (img *Image) checkRange(what string, off, n int64) error {
	size := img.Size()
	if off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("%s [%d, +%d) of a %d-byte disk: %w", what, off, n, size, storage.ErrOutOfRange)
	}
	return nil
}

// forEachCluster splits [off, off+n) at guest cluster boundaries.
func (img *Image) forEachCluster(off, n int64, fn func(off, n int64) error) error {
	for n > 0 {
		inCluster := off & int64(img.clusterSize-1)
		chunk := min(n, int64(img.clusterSize)-inCluster)
		if err := fn(off, chunk); err != nil {
			return err
		}
		off += chunk
		n -= chunk
	}
	return nil
}

// l2TableFor returns the cached L2 table mapping guest offset off and the
// entry's index in it; nil if there is none and create is false.
// The caller holds mu.
func (img *Image) l2TableFor(off uint64, create bool) (*cachedTable, uint64, error) {
	cluster := off >> img.clusterBits
	l1i := cluster / img.l2Entries
	idx := cluster % img.l2Entries
	if l1i >= uint64(len(img.l1)) {
		return nil, 0, fmt.Errorf("guest offset %#x is beyond the L1 table", off)
	}
	l2off := img.l1[l1i] & offsetMask
	if l2off == 0 {
		if !create {
			return nil, idx, nil
		}
		host, err := img.allocClusters(1)
		if err != nil {
			return nil, 0, fmt.Errorf("allocate L2 table: %w", err)
		}
		t := &cachedTable{offset: host, data: make([]byte, img.clusterSize), dirty: true}
		if err := img.l2Cache.add(t); err != nil {
			return nil, 0, err
		}
		img.l1[l1i] = host | flagCopied
		img.l1Dirty = true
		return t, idx, nil
	}
	if t := img.l2Cache.get(l2off); t != nil {
		return t, idx, nil
	}
	t := &cachedTable{offset: l2off, data: make([]byte, img.clusterSize)}
	if _, err := img.f.ReadAt(t.data, int64(l2off)); err != nil {
		return nil, 0, fmt.Errorf("read L2 table at %#x: %w", l2off, err)
	}
	if err := img.l2Cache.add(t); err != nil {
		return nil, 0, err
	}
	return t, idx, nil
}

// setL2Entry changes an entry of a cached L2 table. The caller holds mu.
func setL2Entry(t *cachedTable, idx, ent uint64) {
	binary.BigEndian.PutUint64(t.data[idx*8:], ent)
	t.dirty = true
}

// closeBacking closes the backing chain.
func (img *Image) closeBacking() {
	if img.backing != nil {
		img.backing.Close()
		img.backing = nil
	}
}

// Close flushes the image and closes it and its backing chain.
func (img *Image) Close() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.closed {
		return nil
	}
	var err error
	if !img.readOnly {
		err = img.flushLocked()
	}
	img.closed = true
	img.closeBacking()
	if cerr := img.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close qcow2 %s: %w", img.path, err)
	}
	return nil
}

// readFull reads exactly len(p) bytes at off, failing on a short file.
func (img *Image) readFull(p []byte, off uint64) error {
	n, err := img.f.ReadAt(p, int64(off))
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

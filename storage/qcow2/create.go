package qcow2

import (
	"fmt"
	"os"
	"path/filepath"

	"gureum/storage"
)

// CreateOptions are the settings of a new image.
type CreateOptions struct {
	// ClusterSize is a power of two from 512 bytes to 2 MiB; 0 means 64 KiB.
	ClusterSize int64
	// BackingFile is the backing file's name as the header will store it;
	// a relative name is relative to the new image's directory.
	BackingFile string
	// BackingFormat is "raw" or "qcow2"; empty means probe when opening.
	BackingFormat string
	// RefcountBits is the refcount width, a power of two from 1 to 64; 0
	// means 16.
	RefcountBits int
}

// Create writes a new, empty qcow2 version 3 image of size bytes at path,
// which must not exist. Size 0 with a backing file means the backing
// file's size.
//
// The new file holds four clusters: the header (with the backing name),
// the refcount table, one refcount block and the L1 table (more clusters
// when the L1 table is large). No L2 table exists yet: every guest
// cluster reads from the backing file, or as zeroes.
func Create(path string, size int64, opts CreateOptions) error {
	if err := create(path, size, opts); err != nil {
		return fmt.Errorf("create qcow2 %s: %w", path, err)
	}
	return nil
}

func create(path string, size int64, opts CreateOptions) error {
	cs := uint64(opts.ClusterSize)
	if cs == 0 {
		cs = 64 << 10
	}
	if cs&(cs-1) != 0 || cs < 1<<minClusterBits || cs > 1<<maxClusterBits {
		return fmt.Errorf("cluster size %d is not a power of two in [512, 2 MiB]", cs)
	}
	refBits := uint64(opts.RefcountBits)
	if refBits == 0 {
		refBits = 16
	}
	if refBits&(refBits-1) != 0 || refBits > 64 {
		return fmt.Errorf("refcount width %d is not a power of two up to 64", refBits)
	}
	if opts.BackingFile != "" {
		if opts.BackingFormat != "" && opts.BackingFormat != "raw" && opts.BackingFormat != "qcow2" {
			return fmt.Errorf("unknown backing format %q", opts.BackingFormat)
		}
		if size == 0 {
			b, err := storage.DefaultBacking(filepath.Dir(path), opts.BackingFile, opts.BackingFormat)
			if err != nil {
				return fmt.Errorf("open backing file to learn its size: %w", err)
			}
			size = b.Size()
			b.Close()
		}
	}
	if size < 0 || uint64(size) > maxVirtualSize {
		return fmt.Errorf("size %d out of range", size)
	}
	h := &header{
		version:         3,
		clusterBits:     log2(cs),
		size:            uint64(size),
		refcountOrder:   log2(refBits),
		backingFile:     opts.BackingFile,
		backingFormat:   opts.BackingFormat,
		refTableCluster: 1,
	}
	l1Entries := l1EntriesFor(h.size, h.clusterBits)
	if l1Entries*8 > maxL1Bytes {
		return fmt.Errorf("size %d needs an L1 table above %d bytes; use bigger clusters", size, maxL1Bytes)
	}
	l1Clusters := max((l1Entries*8+cs-1)/cs, 1)
	// Layout: 0 header, 1 refcount table, 2 refcount block, 3.. L1 table.
	h.refTableOffset = cs
	h.l1Offset = 3 * cs
	h.l1Size = uint32(l1Entries)
	total := 3 + l1Clusters
	refPerBlock := cs * 8 / refBits
	if total > refPerBlock {
		return fmt.Errorf("L1 table of %d clusters does not fit one refcount block; use bigger clusters", l1Clusters)
	}
	buf := make([]byte, total*cs)
	if err := encodeHeader(buf[:cs], h); err != nil {
		return err
	}
	// Refcount table entry 0 points at the block in cluster 2, which
	// counts clusters 0 to total-1 once each.
	putBE64(buf[cs:], 2*cs)
	for c := uint64(0); c < total; c++ {
		setRefcountEntry(buf[2*cs:3*cs], c, h.refcountOrder, 1)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(buf, 0); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

func putBE64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (56 - 8*i))
	}
}

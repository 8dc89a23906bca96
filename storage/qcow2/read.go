package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The read path. A guest read may span many clusters; looking each one up
// and reading it with its own pread costs a lock round trip and a system
// call per cluster (16 for a 1 MiB read with 64 KiB clusters). Instead a
// read is done in two phases:
//
//  1. Under mu, walk the L2 entries of the whole range once (one cache
//     lookup per L2 table, not per cluster) and turn them into extents:
//     runs of clusters that one I/O call can serve. Data clusters that lie
//     back to back in the file merge into one extent, as do neighbouring
//     zero clusters and neighbouring clusters that read from the backing
//     file. An image written sequentially keeps its data clusters mostly
//     contiguous, so a large read usually becomes a single pread.
//  2. With io held shared (so no cluster can be freed and reused under the
//     read) and mu released (so other requests can look up and allocate),
//     serve each extent.
//
// Extents are collected in a small array on the stack and the range is
// mapped window by window, so a read allocates nothing and a huge read
// (a conversion of a whole disk) holds mu only for one window at a time.

// extentKind says how an extent's bytes are produced.
type extentKind uint8

const (
	extentData       extentKind = iota // pread from the image file at host
	extentZero                         // zero flag: reads as zeroes
	extentBacking                      // unallocated: from the backing file, or zeroes
	extentCompressed                   // one compressed cluster; host holds its L2 entry
)

// readExtent is a piece of a read request that one I/O call serves.
type readExtent struct {
	guest uint64 // guest offset of the first byte
	n     uint64 // length in bytes
	host  uint64 // extentData: host offset of the first byte; extentCompressed: the L2 entry
	kind  extentKind
}

// maxReadExtents bounds the extents mapped per window (and so the time mu
// is held and the stack array's size).
const maxReadExtents = 32

// ReadAt reads from the virtual disk.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if err := img.checkRange("read", off, int64(len(p))); err != nil {
		return 0, err
	}
	var window [maxReadExtents]readExtent
	start := uint64(off)
	pos, end := start, start+uint64(len(p))
	for pos < end {
		img.mu.Lock()
		if img.closed {
			img.mu.Unlock()
			return 0, fmt.Errorf("read qcow2 %s: %w", img.path, errors.New("image is closed"))
		}
		exts, next, err := img.mapRead(window[:0], pos, end)
		if err != nil {
			img.mu.Unlock()
			return 0, fmt.Errorf("read qcow2 %s: %w", img.path, err)
		}
		// Take io before dropping mu: the clusters just looked up cannot
		// be freed and given to another guest cluster until we are done.
		img.io.RLock()
		img.mu.Unlock()
		err = img.readExtents(p[pos-start:next-start], exts)
		img.io.RUnlock()
		if err != nil {
			return 0, fmt.Errorf("read qcow2 %s: %w", img.path, err)
		}
		pos = next
	}
	return len(p), nil
}

// mapRead appends to exts the extents of [pos, end), stopping early when
// the array is full, and returns them with the guest offset where it
// stopped. The caller holds mu.
func (img *Image) mapRead(exts []readExtent, pos, end uint64) ([]readExtent, uint64, error) {
	cs := img.clusterSize
	var table *cachedTable
	tableL1 := ^uint64(0)
	for pos < end {
		cluster := pos >> img.clusterBits
		inCluster := pos & (cs - 1)
		n := min(end-pos, cs-inCluster)
		// One cache lookup per L2 table: consecutive clusters mostly
		// share it. A nil table (no L2 table allocated) maps nothing.
		if l1i := cluster / img.l2Entries; l1i != tableL1 {
			var err error
			if table, _, err = img.l2TableFor(pos, false); err != nil {
				return nil, 0, err
			}
			tableL1 = l1i
		}
		var ent uint64
		if table != nil {
			ent = binary.BigEndian.Uint64(table.data[(cluster%img.l2Entries)*8:])
		}
		e := readExtent{guest: pos, n: n}
		switch e.kind = img.classify(ent); e.kind {
		case extentData:
			if err := img.checkDataEntry(ent, pos); err != nil {
				return nil, 0, err
			}
			e.host = ent&offsetMask + inCluster
		case extentCompressed:
			e.host = ent
		}
		if k := len(exts) - 1; k >= 0 && canMerge(exts[k], e) {
			exts[k].n += n
		} else if len(exts) == cap(exts) {
			return exts, pos, nil
		} else {
			exts = append(exts, e)
		}
		pos += n
	}
	return exts, pos, nil
}

// classify says how a cluster with L2 entry ent reads.
func (img *Image) classify(ent uint64) extentKind {
	switch {
	case ent&flagCompressed != 0:
		return extentCompressed
	case ent&flagZero != 0 && img.hdr.version >= 3:
		return extentZero
	case ent&offsetMask != 0:
		return extentData
	default:
		return extentBacking
	}
}

// canMerge reports whether next continues prev so that one I/O call
// serves both. Guest offsets are contiguous by construction.
func canMerge(prev, next readExtent) bool {
	if prev.kind != next.kind {
		return false
	}
	switch prev.kind {
	case extentData:
		return prev.host+prev.n == next.host
	case extentZero, extentBacking:
		return true
	default:
		return false // each compressed cluster inflates on its own
	}
}

// readExtents serves exts into p, which starts at the first extent's
// guest offset. The caller holds io shared or mu.
func (img *Image) readExtents(p []byte, exts []readExtent) error {
	base := exts[0].guest
	for _, e := range exts {
		dst := p[e.guest-base : e.guest-base+e.n]
		if err := img.readExtent(dst, e); err != nil {
			return err
		}
	}
	return nil
}

// readExtent serves one extent into dst. The caller holds io shared or mu.
func (img *Image) readExtent(dst []byte, e readExtent) error {
	switch e.kind {
	case extentData:
		if _, err := img.f.ReadAt(dst, int64(e.host)); err != nil {
			return fmt.Errorf("read data clusters at %#x: %w", e.host, err)
		}
	case extentZero:
		clear(dst)
	case extentBacking:
		return img.readBacking(dst, e.guest)
	case extentCompressed:
		cluster, err := img.readCompressed(e.host)
		if err != nil {
			return err
		}
		copy(dst, cluster[e.guest&(img.clusterSize-1):])
	}
	return nil
}

// readMapped reads p, which lies inside one guest cluster, at guest offset
// off whose L2 entry is ent (the copy-on-write path uses it to fetch a
// cluster's old content). The caller holds io shared or mu.
func (img *Image) readMapped(p []byte, off, ent uint64) error {
	e := readExtent{guest: off, n: uint64(len(p)), kind: img.classify(ent)}
	switch e.kind {
	case extentData:
		if err := img.checkDataEntry(ent, off); err != nil {
			return err
		}
		e.host = ent&offsetMask + off&(img.clusterSize-1)
	case extentCompressed:
		e.host = ent
	}
	return img.readExtent(p, e)
}

// checkDataEntry refuses an L2 entry whose host offset is not cluster
// aligned, so that a corrupt table cannot aim I/O into the middle of
// other clusters.
func (img *Image) checkDataEntry(ent, off uint64) error {
	if ent&offsetMask&(img.clusterSize-1) != 0 {
		return fmt.Errorf("L2 entry %#x for guest offset %#x: host offset not cluster aligned", ent, off)
	}
	return nil
}

// readBacking reads p at off from the backing file; past its end, and
// without one, the disk reads zeroes.
func (img *Image) readBacking(p []byte, off uint64) error {
	n := 0
	if img.backing != nil {
		if bs := uint64(img.backing.Size()); off < bs {
			n = int(min(uint64(len(p)), bs-off))
			if _, err := img.backing.ReadAt(p[:n], int64(off)); err != nil {
				return fmt.Errorf("backing file: %w", err)
			}
		}
	}
	clear(p[n:])
	return nil
}

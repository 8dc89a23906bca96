package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"

	"gureum/storage"
)

// WriteAt writes to the virtual disk. A write into a cluster the image
// already owns alone goes to that cluster in place; any other write
// allocates a new cluster and copies the rest of the old cluster's
// content (from the backing file, a compressed cluster or zeroes) into it.
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	if img.readOnly {
		return 0, storage.ErrReadOnly
	}
	if err := img.checkRange("write", off, int64(len(p))); err != nil {
		return 0, err
	}
	err := img.forEachCluster(off, int64(len(p)), func(o, n int64) error {
		return img.writeChunk(p[o-off:o-off+n], uint64(o))
	})
	if err != nil {
		return 0, fmt.Errorf("write qcow2 %s: %w", img.path, err)
	}
	return len(p), nil
}

// writeChunk writes p, which lies inside one guest cluster, at off.
func (img *Image) writeChunk(p []byte, off uint64) error {
	img.mu.Lock()
	if img.closed {
		img.mu.Unlock()
		return errors.New("image is closed")
	}
	t, idx, err := img.l2TableFor(off, true)
	if err != nil {
		img.mu.Unlock()
		return err
	}
	ent := binary.BigEndian.Uint64(t.data[idx*8:])
	if inPlace(ent) {
		if err := img.checkDataEntry(ent, off); err != nil {
			img.mu.Unlock()
			return err
		}
		host := ent&offsetMask + off&(img.clusterSize-1)
		img.io.RLock()
		img.mu.Unlock()
		defer img.io.RUnlock()
		if _, err := img.f.WriteAt(p, int64(host)); err != nil {
			return fmt.Errorf("write data cluster: %w", err)
		}
		return nil
	}
	defer img.mu.Unlock()
	return img.allocateAndWrite(ent, p, off)
}

// inPlace reports whether an L2 entry names a plain cluster with refcount
// 1 that a write may change directly.
func inPlace(ent uint64) bool {
	return ent&(flagCompressed|flagZero) == 0 && ent&offsetMask != 0 && ent&flagCopied != 0
}

// allocateAndWrite gives the guest cluster at off a new host cluster whose
// content is the old content with p written over it, and points the L2
// entry at it. Order: refcount (allocClusters), data, then the entry; the
// old host cluster is freed only after the next flush made the new entry
// durable. The caller holds mu.
func (img *Image) allocateAndWrite(ent uint64, p []byte, off uint64) error {
	cs := img.clusterSize
	inCluster := off & (cs - 1)
	buf := p
	if uint64(len(p)) != cs {
		buf = make([]byte, cs)
		if err := img.readMapped(buf, off-inCluster, ent); err != nil {
			return fmt.Errorf("copy on write: %w", err)
		}
		copy(buf[inCluster:], p)
	}
	host, err := img.allocClusters(1)
	if err != nil {
		return err
	}
	if _, err := img.f.WriteAt(buf, int64(host)); err != nil {
		// The cluster stays counted but unused: a leak, not corruption.
		return fmt.Errorf("write data cluster: %w", err)
	}
	// Fetch the table only now: allocating may have evicted it.
	t, idx, err := img.l2TableFor(off, true)
	if err != nil {
		return err
	}
	setL2Entry(t, idx, host|flagCopied)
	img.freeLater(ent)
	return nil
}

// freeLater queues the host clusters an old L2 entry used for a refcount
// decrement at the next flush. The caller holds mu.
func (img *Image) freeLater(ent uint64) {
	if ent&flagCompressed != 0 {
		first, n := img.compressedClusters(ent)
		for c := uint64(0); c < n; c++ {
			img.pendFree = append(img.pendFree, (first+c)<<img.clusterBits)
		}
		return
	}
	if host := ent & offsetMask; host != 0 {
		img.pendFree = append(img.pendFree, host)
	}
}

// Discard drops [off, off+n): whole clusters lose their host cluster and
// read as zeroes (with the zero flag when a backing file would otherwise
// show through); partial clusters get zeroes written.
func (img *Image) Discard(off, n int64) error {
	if img.readOnly {
		return storage.ErrReadOnly
	}
	if err := img.checkRange("discard", off, n); err != nil {
		return err
	}
	err := img.forEachCluster(off, n, func(o, n int64) error { return img.zeroChunk(uint64(o), uint64(n)) })
	if err != nil {
		return fmt.Errorf("discard qcow2 %s: %w", img.path, err)
	}
	return nil
}

// WriteZeroes zeroes [off, off+n); for qcow2 that is the same as Discard.
func (img *Image) WriteZeroes(off, n int64) error { return img.Discard(off, n) }

// zeroChunk zeroes [off, off+n) inside one guest cluster.
func (img *Image) zeroChunk(off, n uint64) error {
	img.mu.Lock()
	if img.closed {
		img.mu.Unlock()
		return errors.New("image is closed")
	}
	t, idx, err := img.l2TableFor(off, false)
	if err != nil {
		img.mu.Unlock()
		return err
	}
	var ent uint64
	if t != nil {
		ent = binary.BigEndian.Uint64(t.data[idx*8:])
	}
	readsZero := ent&flagZero != 0 && ent&flagCompressed == 0 && img.hdr.version >= 3 ||
		ent == 0 && img.backing == nil
	if readsZero && ent&offsetMask == 0 {
		img.mu.Unlock()
		return nil
	}
	canFlag := img.hdr.version >= 3 || img.backing == nil
	if n != img.clusterSize || !canFlag {
		img.mu.Unlock()
		return img.writeChunk(make([]byte, n), off)
	}
	defer img.mu.Unlock()
	if t == nil {
		if t, idx, err = img.l2TableFor(off, true); err != nil {
			return err
		}
	}
	newEnt := uint64(0)
	if img.backing != nil {
		newEnt = flagZero
	}
	setL2Entry(t, idx, newEnt)
	img.freeLater(ent)
	return nil
}

// Flush makes every completed write durable, writing cached metadata back
// in dependency order.
func (img *Image) Flush() error {
	if img.readOnly {
		return nil
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.closed {
		return errors.New("image is closed")
	}
	if err := img.flushLocked(); err != nil {
		return fmt.Errorf("flush qcow2 %s: %w", img.path, err)
	}
	return nil
}

// flushLocked writes metadata back in four steps, each durable before
// the next starts:
//
//  1. refcount blocks (and table) with every increment, and all data;
//  2. L2 tables, which may now point at those clusters;
//  3. the L1 table, which may point at new L2 tables;
//  4. refcount decrements for clusters nothing on disk points at any more.
//
// The caller holds mu.
func (img *Image) flushLocked() error {
	if img.broken != nil {
		return img.broken
	}
	if err := img.flushRefcounts(); err != nil {
		return img.fail(err)
	}
	if dirty := img.l2Cache.dirtyTables(); len(dirty) > 0 {
		for _, t := range dirty {
			if err := img.writeTable(t); err != nil {
				return img.fail(err)
			}
		}
		if err := img.sync(); err != nil {
			return img.fail(err)
		}
	}
	if img.l1Dirty {
		if err := img.writeEntries(img.hdr.l1Offset, img.l1); err != nil {
			return img.fail(err)
		}
		if err := img.sync(); err != nil {
			return img.fail(err)
		}
		img.l1Dirty = false
	}
	return img.releasePending()
}

// releasePending applies the queued refcount decrements and writes them.
// It waits for data I/O in flight, which may still use a freed cluster.
// The caller holds mu.
func (img *Image) releasePending() error {
	if len(img.pendFree) == 0 {
		return nil
	}
	img.io.Lock()
	defer img.io.Unlock()
	for len(img.pendFree) > 0 {
		off := img.pendFree[0]
		c := off >> img.clusterBits
		if err := img.addRefcount(c, -1); err != nil {
			return img.fail(err)
		}
		img.pendFree = img.pendFree[1:]
		img.freeCursor = min(img.freeCursor, c)
	}
	if err := img.writeDirtyRefBlocks(); err != nil {
		return img.fail(err)
	}
	if err := img.sync(); err != nil {
		return img.fail(err)
	}
	return nil
}

// Resize grows the virtual disk to newSize bytes. When the L1 table must
// grow past its clusters, a new one is written elsewhere and made durable
// before the header points at it.
func (img *Image) Resize(newSize int64) error {
	if img.readOnly {
		return storage.ErrReadOnly
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.resizeLocked(newSize); err != nil {
		return fmt.Errorf("resize qcow2 %s: %w", img.path, err)
	}
	return nil
}

func (img *Image) resizeLocked(newSize int64) error {
	old := img.size.Load()
	if newSize < 0 || uint64(newSize) < old {
		return fmt.Errorf("from %d to %d bytes: %w", old, newSize, storage.ErrShrink)
	}
	if uint64(newSize) > maxVirtualSize {
		return fmt.Errorf("size %d too large", newSize)
	}
	size := uint64(newSize)
	// Everything cached reaches the disk first, so that the new L1 table
	// written below points only at durable L2 tables.
	if err := img.flushLocked(); err != nil {
		return err
	}
	need := l1EntriesFor(size, img.clusterBits)
	l1Off := img.hdr.l1Offset
	if need > uint64(len(img.l1)) {
		if need*8 > maxL1Bytes {
			return fmt.Errorf("L1 table for %d bytes exceeds %d bytes", size, maxL1Bytes)
		}
		oldClusters := (uint64(len(img.l1))*8 + img.clusterSize - 1) >> img.clusterBits
		newClusters := (need*8 + img.clusterSize - 1) >> img.clusterBits
		l1 := make([]uint64, need)
		copy(l1, img.l1)
		if newClusters > oldClusters {
			var err error
			if l1Off, err = img.allocClusters(newClusters); err != nil {
				return err
			}
		}
		if err := img.writeEntries(l1Off, l1); err != nil {
			return err
		}
		if err := img.flushRefcounts(); err != nil { // also syncs the new L1
			return img.fail(err)
		}
		if l1Off != img.hdr.l1Offset {
			for c := uint64(0); c < oldClusters; c++ {
				img.pendFree = append(img.pendFree, img.hdr.l1Offset+c<<img.clusterBits)
			}
		}
		img.l1 = l1
	}
	// size, l1_size and l1_table_offset are adjacent header fields
	// (bytes 24 to 47): one write changes them together.
	var hb [24]byte
	binary.BigEndian.PutUint64(hb[0:], size)
	binary.BigEndian.PutUint32(hb[offCryptMethod-offSize:], 0)
	binary.BigEndian.PutUint32(hb[offL1Size-offSize:], uint32(len(img.l1)))
	binary.BigEndian.PutUint64(hb[offL1Offset-offSize:], l1Off)
	if _, err := img.f.WriteAt(hb[:], offSize); err != nil {
		return img.fail(err)
	}
	if err := img.sync(); err != nil {
		return img.fail(err)
	}
	img.hdr.size, img.hdr.l1Size, img.hdr.l1Offset = size, uint32(len(img.l1)), l1Off
	img.size.Store(size)
	// A backing file longer than the old size must not show through in the
	// new tail, which reads as zeroes.
	if img.backing != nil {
		if bs := uint64(img.backing.Size()); bs > old {
			end := min(bs, size)
			img.mu.Unlock()
			err := img.forEachCluster(int64(old), int64(end-old), func(o, n int64) error {
				return img.zeroChunk(uint64(o), uint64(n))
			})
			img.mu.Lock()
			if err != nil {
				return err
			}
		}
	}
	return img.flushLocked()
}

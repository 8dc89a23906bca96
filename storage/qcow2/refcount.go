package qcow2

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Refcounts: host cluster c has its count in refcount block
// refTable[c / refPerBlock], entry c % refPerBlock. An entry is
// 2^refcount_order bits wide: widths below a byte are packed from the
// low bit up, wider ones are big-endian.

// getRefcountEntry decodes entry i of a refcount block.
func getRefcountEntry(block []byte, i uint64, order uint32) uint64 {
	switch {
	case order < 3:
		w := uint64(1) << order
		bit := i * w
		return uint64(block[bit/8]>>(bit%8)) & (1<<w - 1)
	case order == 3:
		return uint64(block[i])
	case order == 4:
		return uint64(binary.BigEndian.Uint16(block[i*2:]))
	case order == 5:
		return uint64(binary.BigEndian.Uint32(block[i*4:]))
	default:
		return binary.BigEndian.Uint64(block[i*8:])
	}
}

// setRefcountEntry encodes v as entry i; v must fit the width.
func setRefcountEntry(block []byte, i uint64, order uint32, v uint64) {
	switch {
	case order < 3:
		w := uint64(1) << order
		bit := i * w
		mask := byte(1<<w-1) << (bit % 8)
		block[bit/8] = block[bit/8]&^mask | byte(v<<(bit%8))&mask
	case order == 3:
		block[i] = byte(v)
	case order == 4:
		binary.BigEndian.PutUint16(block[i*2:], uint16(v))
	case order == 5:
		binary.BigEndian.PutUint32(block[i*4:], uint32(v))
	default:
		binary.BigEndian.PutUint64(block[i*8:], v)
	}
}

// maxRefcount is the largest count an entry can hold.
func (img *Image) maxRefcount() uint64 {
	if img.refOrder == 6 {
		return ^uint64(0)
	}
	return 1<<(uint64(1)<<img.refOrder) - 1
}

// refBlock returns the cached refcount block j, or nil if the table has
// no block there. The caller holds mu.
func (img *Image) refBlock(j uint64) (*cachedTable, error) {
	if j >= uint64(len(img.refTable)) {
		return nil, nil
	}
	off := img.refTable[j] & offsetMask
	if off == 0 {
		return nil, nil
	}
	if t := img.refCache.get(off); t != nil {
		return t, nil
	}
	t := &cachedTable{offset: off, data: make([]byte, img.clusterSize)}
	if err := img.readFull(t.data, off); err != nil {
		return nil, fmt.Errorf("read refcount block at %#x: %w", off, err)
	}
	if err := img.refCache.add(t); err != nil {
		return nil, err
	}
	return t, nil
}

// refcount returns host cluster c's count. The caller holds mu.
func (img *Image) refcount(c uint64) (uint64, error) {
	t, err := img.refBlock(c / img.refPerBlock)
	if err != nil || t == nil {
		return 0, err
	}
	return getRefcountEntry(t.data, c%img.refPerBlock, img.refOrder), nil
}

// addRefcount changes host cluster c's count by delta. The block must
// exist. The caller holds mu.
func (img *Image) addRefcount(c uint64, delta int64) error {
	t, err := img.refBlock(c / img.refPerBlock)
	if err != nil {
		return err
	}
	if t == nil {
		return fmt.Errorf("cluster %#x has no refcount block", c<<img.clusterBits)
	}
	i := c % img.refPerBlock
	v := getRefcountEntry(t.data, i, img.refOrder)
	switch {
	case delta < 0 && v < uint64(-delta):
		return fmt.Errorf("refcount of cluster %#x would drop below zero", c<<img.clusterBits)
	case delta > 0 && img.maxRefcount()-v < uint64(delta):
		return fmt.Errorf("refcount of cluster %#x would overflow", c<<img.clusterBits)
	}
	setRefcountEntry(t.data, i, img.refOrder, uint64(int64(v)+delta))
	t.dirty = true
	return nil
}

// allocClusters finds n contiguous free host clusters, sets their counts
// to 1 and returns the first one's offset. Free clusters inside the file
// are reused first; otherwise the clusters are appended at its end. The
// caller holds mu.
func (img *Image) allocClusters(n uint64) (uint64, error) {
	if img.broken != nil {
		return 0, img.broken
	}
	start, found, err := img.findFree(n)
	if err != nil {
		return 0, err
	}
	if !found {
		return img.allocAtEnd(n)
	}
	for c := start; c < start+n; c++ {
		if err := img.addRefcount(c, 1); err != nil {
			return 0, err
		}
	}
	return start << img.clusterBits, nil
}

// findFree looks for a run of n clusters below endCluster with count 0
// and an existing refcount block, at or after freeCursor. It moves
// freeCursor to the first free cluster it saw.
func (img *Image) findFree(n uint64) (uint64, bool, error) {
	c := img.freeCursor
	first := true
	for c+n <= img.endCluster {
		run := uint64(0)
		for run < n {
			t, err := img.refBlock((c + run) / img.refPerBlock)
			if err != nil {
				return 0, false, err
			}
			if t == nil || getRefcountEntry(t.data, (c+run)%img.refPerBlock, img.refOrder) != 0 {
				break
			}
			run++
		}
		if run > 0 && first {
			img.freeCursor = c
			first = false
		}
		if run == n {
			if img.freeCursor == c {
				img.freeCursor = c + n
			}
			return c, true, nil
		}
		c += run + 1
	}
	if first {
		img.freeCursor = img.endCluster
	}
	return 0, false, nil
}

// allocAtEnd appends n clusters at the end of the file, with new refcount
// blocks after them for every block range the new clusters touch that
// has none, and, when the refcount table is too small for those, a new
// bigger table after the blocks. New blocks count themselves and the
// table, so the layout is found by iterating to a fixed point.
//
// A moved table is written and made durable before the header points at
// it, and the old table's clusters are freed only after that.
func (img *Image) allocAtEnd(n uint64) (uint64, error) {
	start := img.endCluster
	old := img.refTable
	var nBlocks, nTable uint64
	var missing []uint64
	for {
		end := start + n + nBlocks + nTable
		entries := (end + img.refPerBlock - 1) / img.refPerBlock
		tableClusters := uint64(0)
		if entries > uint64(len(old)) {
			tableClusters = (entries*8 + img.clusterSize - 1) >> img.clusterBits
		}
		missing = missing[:0]
		for j := start / img.refPerBlock; j*img.refPerBlock < end; j++ {
			if j >= uint64(len(old)) || old[j]&offsetMask == 0 {
				missing = append(missing, j)
			}
		}
		if tableClusters <= nTable && uint64(len(missing)) <= nBlocks {
			break
		}
		nTable, nBlocks = max(tableClusters, nTable), max(uint64(len(missing)), nBlocks)
	}
	if nTable*img.clusterSize > maxRefTableBytes {
		return 0, fmt.Errorf("refcount table would exceed %d bytes", maxRefTableBytes)
	}
	end := start + n + nBlocks + nTable
	table := old
	if nTable > 0 {
		table = make([]uint64, nTable*img.clusterSize/8)
		copy(table, old)
	}
	newBlocks := make(map[uint64]*cachedTable)
	for i, j := range missing {
		t := &cachedTable{offset: (start + n + uint64(i)) << img.clusterBits, data: make([]byte, img.clusterSize), dirty: true}
		table[j] = t.offset
		newBlocks[j] = t
	}
	for c := start; c < end; c++ {
		if t, ok := newBlocks[c/img.refPerBlock]; ok {
			setRefcountEntry(t.data, c%img.refPerBlock, img.refOrder, 1)
			continue
		}
		if err := img.addRefcount(c, 1); err != nil {
			return 0, img.fail(err)
		}
	}
	img.refTable = table
	for _, t := range newBlocks {
		if err := img.refCache.add(t); err != nil {
			return 0, img.fail(err)
		}
	}
	img.endCluster = end
	if len(missing) > 0 {
		img.refTableDirty = true
	}
	if nTable > 0 {
		if err := img.moveRefTable((start+n+nBlocks)<<img.clusterBits, nTable); err != nil {
			return 0, err
		}
	}
	return start << img.clusterBits, nil
}

// moveRefTable writes img.refTable at its new place and points the header
// at it. The caller holds mu.
func (img *Image) moveRefTable(tableOff, nTable uint64) error {
	// Blocks and the new table reach the disk before the header names it.
	if err := img.writeDirtyRefBlocks(); err != nil {
		return img.fail(err)
	}
	if err := img.writeEntries(tableOff, img.refTable); err != nil {
		return img.fail(err)
	}
	if err := img.sync(); err != nil {
		return img.fail(err)
	}
	var hb [12]byte
	binary.BigEndian.PutUint64(hb[0:], tableOff)
	binary.BigEndian.PutUint32(hb[8:], uint32(nTable))
	if _, err := img.f.WriteAt(hb[:], offRefTableOffset); err != nil {
		return img.fail(err)
	}
	if err := img.sync(); err != nil {
		return img.fail(err)
	}
	oldOff, oldClusters := img.hdr.refTableOffset, uint64(img.hdr.refTableCluster)
	img.hdr.refTableOffset, img.hdr.refTableCluster = tableOff, uint32(nTable)
	img.refTableDirty = false
	for c := uint64(0); c < oldClusters; c++ {
		img.pendFree = append(img.pendFree, oldOff+c<<img.clusterBits)
	}
	return nil
}

// fail marks the image unusable for writes after a metadata write failed
// half way: the file is still consistent on disk, but memory no longer
// matches it.
func (img *Image) fail(err error) error {
	img.broken = fmt.Errorf("image unusable after a failed metadata write: %w", err)
	return img.broken
}

// writeTable writes a cached table back to its place in the file.
func (img *Image) writeTable(t *cachedTable) error {
	if _, err := img.f.WriteAt(t.data, int64(t.offset)); err != nil {
		return fmt.Errorf("write metadata at %#x: %w", t.offset, err)
	}
	t.dirty = false
	return nil
}

// writeEntries writes a table of 64-bit entries at off.
func (img *Image) writeEntries(off uint64, table []uint64) error {
	buf := make([]byte, len(table)*8)
	for i, e := range table {
		binary.BigEndian.PutUint64(buf[i*8:], e)
	}
	if _, err := img.f.WriteAt(buf, int64(off)); err != nil {
		return fmt.Errorf("write table at %#x: %w", off, err)
	}
	return nil
}

func (img *Image) writeDirtyRefBlocks() error {
	for _, t := range img.refCache.dirtyTables() {
		if err := img.writeTable(t); err != nil {
			return err
		}
	}
	return nil
}

// sync makes everything written so far durable.
func (img *Image) sync() error {
	if err := unix.Fdatasync(int(img.f.Fd())); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	return nil
}

// flushRefcounts puts every refcount increment on disk: dirty blocks,
// then (once they are durable) the refcount table that points at new
// ones. It also makes all data written so far durable.
func (img *Image) flushRefcounts() error {
	if err := img.writeDirtyRefBlocks(); err != nil {
		return err
	}
	if img.refTableDirty {
		if err := img.sync(); err != nil {
			return err
		}
		if err := img.writeEntries(img.hdr.refTableOffset, img.refTable); err != nil {
			return err
		}
		img.refTableDirty = false
	}
	return img.sync()
}

// writeBackL2 is the L2 cache's eviction hook: the refcounts of every
// cluster the table may point at, and the data in them, must be durable
// before the table is.
func (img *Image) writeBackL2(t *cachedTable) error {
	if err := img.flushRefcounts(); err != nil {
		return err
	}
	return img.writeTable(t)
}

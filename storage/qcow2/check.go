package qcow2

import (
	"encoding/binary"
	"fmt"
)

// CheckResult is what Check found.
type CheckResult struct {
	// Leaks counts clusters whose refcount is higher than the number of
	// references to them: space wasted, harmless, what a crash leaves.
	Leaks int64
	// Corruptions counts real damage: refcounts below the references
	// (a write could reuse a cluster still in use), clusters used twice,
	// pointers that are misaligned or outside the file.
	Corruptions int64
	// LeaksFixed counts leaked clusters whose refcount Repair lowered.
	LeaksFixed int64
	// Problems describes what was found, the first maxProblems of it.
	Problems []string
	// FileClusters is the file's length in clusters.
	FileClusters int64
}

// maxProblems bounds CheckResult.Problems.
const maxProblems = 100

// OK reports whether the image has neither leaks nor corruption.
func (r *CheckResult) OK() bool { return r.Leaks == 0 && r.Corruptions == 0 }

func (r *CheckResult) problem(corrupt bool, format string, args ...any) {
	if corrupt {
		r.Corruptions++
	}
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check reads the image at path and recounts every reference to every
// host cluster (header, tables, refcount blocks, data) to compare with
// the stored refcounts. It never writes.
func Check(path string) (*CheckResult, error) {
	return check(path, false)
}

// Repair is Check followed by lowering the refcount of each leaked
// cluster to its real number of references, which makes the space
// reusable. It refuses to touch an image with corruption, since any fix
// there needs judgement (qemu-img check -r all).
func Repair(path string) (*CheckResult, error) {
	return check(path, true)
}

// checker holds the reference counts as they should be.
type checker struct {
	img    *Image
	res    *CheckResult
	refs   []uint32 // references per host cluster
	single []bool   // cluster may not be shared (metadata or plain data)
}

func check(path string, repair bool) (*CheckResult, error) {
	img, err := Open(path, Options{ReadOnly: !repair, noBacking: true})
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	defer img.Close()
	if img.hdr.nbSnapshots != 0 {
		return nil, fmt.Errorf("check %s: images with internal snapshots are not supported", path)
	}
	st, err := img.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	fileClusters := (uint64(st.Size()) + img.clusterSize - 1) >> img.clusterBits
	c := &checker{
		img:    img,
		res:    &CheckResult{FileClusters: int64(fileClusters)},
		refs:   make([]uint32, fileClusters),
		single: make([]bool, fileClusters),
	}
	if err := c.countReferences(); err != nil {
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	leaks, err := c.compare()
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	if repair && len(leaks) > 0 {
		if c.res.Corruptions > 0 {
			return c.res, fmt.Errorf("repair %s: %d corruptions found; leaks left alone", path, c.res.Corruptions)
		}
		if err := c.fixLeaks(leaks); err != nil {
			return c.res, fmt.Errorf("repair %s: %w", path, err)
		}
	}
	return c.res, nil
}

// use records a reference to the clusters of [off, off+length).
func (c *checker) use(what string, off, length uint64, single bool) {
	cs := c.img.clusterSize
	if single && off&(cs-1) != 0 {
		c.res.problem(true, "%s at %#x is not cluster aligned", what, off)
		return
	}
	for cl := off >> c.img.clusterBits; cl <= (off+length-1)>>c.img.clusterBits; cl++ {
		if cl >= uint64(len(c.refs)) {
			c.res.problem(true, "%s at %#x points past the end of the file", what, off)
			return
		}
		c.refs[cl]++
		if single {
			c.single[cl] = true
		}
		if c.single[cl] && c.refs[cl] == 2 {
			c.res.problem(true, "%s at %#x overlaps another use of cluster %#x", what, off, cl<<c.img.clusterBits)
		}
	}
}

func (c *checker) countReferences() error {
	img, h := c.img, c.img.hdr
	cs := img.clusterSize
	c.use("header", 0, cs, true)
	c.use("L1 table", h.l1Offset, uint64(h.l1Size)*8, true)
	c.use("refcount table", h.refTableOffset, uint64(h.refTableCluster)*cs, true)
	for j, e := range img.refTable {
		if off := e & offsetMask; off != 0 {
			c.use(fmt.Sprintf("refcount block %d", j), off, cs, true)
		}
	}
	buf := make([]byte, cs)
	for i, e := range img.l1 {
		l2 := e & offsetMask
		if l2 == 0 {
			continue
		}
		if l2>>img.clusterBits >= uint64(len(c.refs)) {
			c.res.problem(true, "L1 entry %d: L2 table %#x past the end of the file", i, l2)
			continue
		}
		c.use(fmt.Sprintf("L2 table (L1 entry %d)", i), l2, cs, true)
		c.wantCopied(e, l2, fmt.Sprintf("L1 entry %d", i))
		if err := img.readFull(buf, l2); err != nil {
			return fmt.Errorf("read L2 table %#x: %w", l2, err)
		}
		for k := uint64(0); k < img.l2Entries; k++ {
			c.l2Entry(binary.BigEndian.Uint64(buf[k*8:]), uint64(i)*img.l2Entries+k)
		}
	}
	return nil
}

// l2Entry counts the clusters one L2 entry uses.
func (c *checker) l2Entry(ent, guestCluster uint64) {
	img := c.img
	what := fmt.Sprintf("data of guest cluster %d", guestCluster)
	if ent&flagCompressed != 0 {
		off, length := img.compressedRange(ent)
		if ent&flagCopied != 0 {
			c.res.problem(true, "%s: compressed entry with the copied flag", what)
		}
		c.use(what, off, length, false)
		return
	}
	host := ent & offsetMask
	if ent&^(offsetMask|flagCopied|flagZero) != 0 {
		c.res.problem(true, "%s: reserved bits set in L2 entry %#x", what, ent)
	}
	if host == 0 {
		return
	}
	c.use(what, host, img.clusterSize, true)
	c.wantCopied(ent, host, what)
}

// wantCopied remembers that a pointer claims (or denies) refcount 1, to
// be compared once refcounts are read. Without internal snapshots every
// cluster a table points at has refcount 1, so the flag must be set.
func (c *checker) wantCopied(ent, host uint64, what string) {
	if ent&flagCopied == 0 {
		c.res.problem(true, "%s at %#x: copied flag clear but the cluster is not shared", what, host)
	}
}

// compare reads every stored refcount and compares. It returns the leaked
// clusters with the count they should have.
func (c *checker) compare() (map[uint64]uint32, error) {
	img := c.img
	leaks := make(map[uint64]uint32)
	scanned := make(map[uint64]bool) // refcount blocks compared so far
	dup := false                     // the current block was compared before
	covered := uint64(len(img.refTable)) * img.refPerBlock
	last := max(covered, uint64(len(c.refs)))
	for cl := uint64(0); cl < last; cl++ {
		var rc uint64
		if cl < covered {
			t, err := img.refBlock(cl / img.refPerBlock)
			if err != nil {
				return nil, err
			}
			if t != nil && cl%img.refPerBlock == 0 {
				dup = scanned[t.offset]
				scanned[t.offset] = true
			}
			if cl >= uint64(len(c.refs)) && (t == nil || dup) {
				// Past the file there are no references: a missing block
				// has nothing to compare, and a block met twice is already
				// reported as an overlap.
				cl = (cl/img.refPerBlock+1)*img.refPerBlock - 1
				continue
			}
			if t != nil {
				rc = getRefcountEntry(t.data, cl%img.refPerBlock, img.refOrder)
			}
		}
		var want uint64
		if cl < uint64(len(c.refs)) {
			want = uint64(c.refs[cl])
		}
		switch {
		case rc < want:
			c.res.problem(true, "cluster %#x: refcount %d but %d references", cl<<img.clusterBits, rc, want)
		case rc > want:
			c.res.Leaks++
			leaks[cl] = uint32(want)
			if cl >= uint64(len(c.refs)) {
				c.res.problem(false, "cluster %#x past the end of the file has refcount %d", cl<<img.clusterBits, rc)
			} else {
				c.res.problem(false, "leaked cluster %#x: refcount %d, %d references", cl<<img.clusterBits, rc, want)
			}
		}
	}
	return leaks, nil
}

// fixLeaks lowers the leaked clusters' refcounts and writes the blocks.
func (c *checker) fixLeaks(leaks map[uint64]uint32) error {
	img := c.img
	img.mu.Lock()
	defer img.mu.Unlock()
	for cl, want := range leaks {
		rc, err := img.refcount(cl)
		if err != nil {
			return err
		}
		if err := img.addRefcount(cl, int64(want)-int64(rc)); err != nil {
			return err
		}
		c.res.LeaksFixed++
	}
	if err := img.writeDirtyRefBlocks(); err != nil {
		return err
	}
	return img.sync()
}

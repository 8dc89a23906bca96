package qcow2

import "container/list"

// tableCache is a bounded least-recently-used cache of metadata clusters
// (L2 tables or refcount blocks), keyed by their offset in the file.
// Entries may be dirty: changed in memory, not yet written. Evicting a
// dirty entry calls writeBack first, which is where the image puts the
// write-order rules (see image.go). The cache is guarded by Image.mu.
type tableCache struct {
	capacity  int
	order     *list.List // front = most recently used; values are *cachedTable
	byOffset  map[uint64]*list.Element
	writeBack func(t *cachedTable) error
}

// cachedTable is one metadata cluster in memory.
type cachedTable struct {
	offset uint64
	data   []byte
	dirty  bool
}

func newTableCache(capacity int, writeBack func(*cachedTable) error) *tableCache {
	return &tableCache{
		capacity:  max(capacity, 2),
		order:     list.New(),
		byOffset:  make(map[uint64]*list.Element),
		writeBack: writeBack,
	}
}

// get returns the cached table at offset, or nil.
func (c *tableCache) get(offset uint64) *cachedTable {
	e, ok := c.byOffset[offset]
	if !ok {
		return nil
	}
	c.order.MoveToFront(e)
	return e.Value.(*cachedTable)
}

// add inserts a table, evicting the least recently used ones beyond the
// capacity. An eviction that fails to write back keeps the table cached
// and returns the error.
func (c *tableCache) add(t *cachedTable) error {
	c.byOffset[t.offset] = c.order.PushFront(t)
	for c.order.Len() > c.capacity {
		victim := c.order.Back().Value.(*cachedTable)
		if victim.dirty {
			if err := c.writeBack(victim); err != nil {
				return err
			}
		}
		c.remove(victim.offset)
	}
	return nil
}

// remove drops a table from the cache without writing it.
func (c *tableCache) remove(offset uint64) {
	if e, ok := c.byOffset[offset]; ok {
		c.order.Remove(e)
		delete(c.byOffset, offset)
	}
}

// dirtyTables lists the dirty tables, in no particular order.
func (c *tableCache) dirtyTables() []*cachedTable {
	var out []*cachedTable
	for e := c.order.Front(); e != nil; e = e.Next() {
		if t := e.Value.(*cachedTable); t.dirty {
			out = append(out, t)
		}
	}
	return out
}

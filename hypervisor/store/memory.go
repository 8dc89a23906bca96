package store

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Memory is a Store held in a map, for tests of code that uses a store.
// It has the same transaction semantics as Bolt: one Update at a time,
// Views concurrent with each other, writes visible only on commit.
type Memory struct {
	mu     sync.RWMutex // Update holds it for writing, View for reading
	kinds  map[string]map[string][]byte
	closed bool
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{kinds: map[string]map[string][]byte{}}
}

var errClosed = errors.New("store closed")

// View runs fn under the read lock.
func (s *Memory) View(fn func(Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed
	}
	return fn(&memoryTx{base: s.kinds})
}

// Update runs fn under the write lock on an overlay of the data, and
// applies the overlay only if fn returns nil.
func (s *Memory) Update(fn func(Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	tx := &memoryTx{base: s.kinds, writes: map[string]map[string][]byte{}, writable: true}
	if err := fn(tx); err != nil {
		return err
	}
	for kind, w := range tx.writes {
		if s.kinds[kind] == nil {
			s.kinds[kind] = map[string][]byte{}
		}
		for k, v := range w {
			if v == nil {
				delete(s.kinds[kind], k)
			} else {
				s.kinds[kind][k] = v
			}
		}
	}
	return nil
}

// Close makes later transactions fail.
func (s *Memory) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// memoryTx reads through its own writes to the base. In writes, a nil
// value records a delete.
type memoryTx struct {
	base     map[string]map[string][]byte
	writes   map[string]map[string][]byte
	writable bool
}

func (t *memoryTx) Get(kind, key string) ([]byte, error) {
	if err := checkName(kind, key); err != nil {
		return nil, err
	}
	v, ok := t.writes[kind][key]
	if !ok {
		v, ok = t.base[kind][key]
	}
	if !ok || v == nil {
		return nil, fmt.Errorf("%s/%s: %w", kind, key, ErrNotFound)
	}
	return slices.Clone(v), nil
}

func (t *memoryTx) Put(kind, key string, value []byte) error {
	if err := checkName(kind, key); err != nil {
		return err
	}
	if !t.writable {
		return ErrReadOnly
	}
	t.write(kind, key, append([]byte{}, value...))
	return nil
}

func (t *memoryTx) Delete(kind, key string) error {
	if err := checkName(kind, key); err != nil {
		return err
	}
	if !t.writable {
		return ErrReadOnly
	}
	t.write(kind, key, nil)
	return nil
}

func (t *memoryTx) write(kind, key string, v []byte) {
	if t.writes[kind] == nil {
		t.writes[kind] = map[string][]byte{}
	}
	t.writes[kind][key] = v
}

func (t *memoryTx) List(kind string) ([]Entry, error) {
	if kind == "" {
		return nil, errors.New("empty kind")
	}
	merged := maps.Clone(t.base[kind])
	if merged == nil {
		merged = map[string][]byte{}
	}
	maps.Copy(merged, t.writes[kind])
	var out []Entry
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		if v := merged[k]; v != nil {
			out = append(out, Entry{Key: k, Value: slices.Clone(v)})
		}
	}
	return out, nil
}

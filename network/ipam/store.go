package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Store keeps the address plan across restarts. The daemon implements it
// on its own state store; MemoryStore and FileStore serve tests and simple
// setups. Save is called with the whole plan after every change and must
// be durable when it returns; Load of a store never saved returns an empty
// State.
type Store interface {
	Load() (State, error)
	Save(State) error
}

// MemoryStore keeps the plan in memory (it survives a new IPAM made on the
// same store, as a restart would see it, but not the process).
type MemoryStore struct {
	mu    sync.Mutex
	saved []byte
}

// Load returns a deep copy of the last saved plan.
func (m *MemoryStore) Load() (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var st State
	if m.saved == nil {
		return st, nil
	}
	if err := json.Unmarshal(m.saved, &st); err != nil {
		return State{}, fmt.Errorf("decode address plan: %w", err)
	}
	return st, nil
}

// Save keeps a copy of st.
func (m *MemoryStore) Save(st State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode address plan: %w", err)
	}
	m.mu.Lock()
	m.saved = b
	m.mu.Unlock()
	return nil
}

// FileStore keeps the plan as JSON in one file. Save writes a temporary
// file, syncs it and renames it over the old one, so a crash leaves either
// the old plan or the new one, never half of one.
type FileStore struct {
	Path string
}

// Load reads the file; a missing file is an empty plan.
func (f FileStore) Load() (State, error) {
	var st State
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read address plan: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("decode address plan %s: %w", f.Path, err)
	}
	return st, nil
}

// Save replaces the file atomically.
func (f FileStore) Save(st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode address plan: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), ".ipam-*")
	if err != nil {
		return fmt.Errorf("save address plan: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save address plan: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save address plan: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save address plan: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("save address plan: %w", err)
	}
	if d, err := os.Open(filepath.Dir(f.Path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

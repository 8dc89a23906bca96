// Package store is the control plane's state: records of named kinds
// (instance, volume, lifecycle ...) read and written in transactions.
//
// The interface is deliberately small (get, put, delete and list by kind,
// inside a read-only View or a read-write Update) so that the embedded
// bbolt store used on one host can later be replaced by etcd for a cluster
// without touching callers. Values are opaque bytes; most callers store
// JSON with GetJSON and PutJSON.
//
// Transactions are serializable: an Update sees no other Update's partial
// writes, and its writes become visible all at once when its function
// returns nil. When the function returns an error nothing it wrote is kept.
// Callers rely on that to persist a state change and its pending-operation
// record together.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrNotFound is returned by Get for a key that does not exist.
var ErrNotFound = errors.New("not found")

// ErrReadOnly is returned by writes inside a View.
var ErrReadOnly = errors.New("write in a read-only transaction")

// Store opens transactions. All methods are safe for concurrent use by
// any goroutine. A transaction function must not keep the Tx or any value
// slice past its return, and must not open another transaction on the same
// store (bbolt would deadlock).
type Store interface {
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits its writes
	// if fn returns nil.
	Update(fn func(Tx) error) error
	// Close releases the store; transactions after Close fail.
	Close() error
}

// Tx is one transaction's view of the store. Kinds and keys are non-empty
// strings; a kind need not be declared before use.
type Tx interface {
	// Get returns the value under kind/key, or ErrNotFound.
	Get(kind, key string) ([]byte, error)
	// Put stores value under kind/key, replacing what was there.
	Put(kind, key string, value []byte) error
	// Delete removes kind/key; deleting a missing key is not an error.
	Delete(kind, key string) error
	// List returns every entry of a kind, sorted by key.
	List(kind string) ([]Entry, error)
}

// Entry is one key and value of a kind.
type Entry struct {
	Key   string
	Value []byte
}

// GetJSON reads kind/key into v.
func GetJSON(tx Tx, kind, key string, v any) error {
	b, err := tx.Get(kind, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s/%s: %w", kind, key, err)
	}
	return nil
}

// PutJSON stores v as JSON under kind/key.
func PutJSON(tx Tx, kind, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", kind, key, err)
	}
	return tx.Put(kind, key, b)
}

func checkName(kind, key string) error {
	if kind == "" {
		return errors.New("empty kind")
	}
	if key == "" {
		return fmt.Errorf("empty key in kind %s", kind)
	}
	return nil
}

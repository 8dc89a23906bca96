package store

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bolt is a Store in one bbolt file: each kind is a top-level bucket,
// created on its first Put. bbolt allows one writer and many readers at a
// time, and takes an exclusive lock on the file, so two daemons cannot open
// the same data directory.
type Bolt struct {
	db *bolt.DB
}

// OpenBolt opens (creating if needed) the store file at path. It waits at
// most one second for another process's lock before failing.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// View runs fn in a bbolt read transaction.
func (s *Bolt) View(fn func(Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(boltTx{btx}) })
}

// Update runs fn in a bbolt write transaction; bbolt commits (with fsync)
// when fn returns nil and rolls back otherwise.
func (s *Bolt) Update(fn func(Tx) error) error {
	return s.db.Update(func(btx *bolt.Tx) error { return fn(boltTx{btx}) })
}

// Close closes the file.
func (s *Bolt) Close() error {
	return s.db.Close()
}

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Get(kind, key string) ([]byte, error) {
	if err := checkName(kind, key); err != nil {
		return nil, err
	}
	b := t.tx.Bucket([]byte(kind))
	if b == nil {
		return nil, fmt.Errorf("%s/%s: %w", kind, key, ErrNotFound)
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil, fmt.Errorf("%s/%s: %w", kind, key, ErrNotFound)
	}
	// bbolt's slices point into the mmap and die with the transaction.
	return append([]byte(nil), v...), nil
}

func (t boltTx) Put(kind, key string, value []byte) error {
	if err := checkName(kind, key); err != nil {
		return err
	}
	if !t.tx.Writable() {
		return ErrReadOnly
	}
	b, err := t.tx.CreateBucketIfNotExists([]byte(kind))
	if err != nil {
		return fmt.Errorf("create kind %s: %w", kind, err)
	}
	if value == nil {
		value = []byte{} // bbolt treats a nil value as absent on Get
	}
	if err := b.Put([]byte(key), value); err != nil {
		return fmt.Errorf("put %s/%s: %w", kind, key, err)
	}
	return nil
}

func (t boltTx) Delete(kind, key string) error {
	if err := checkName(kind, key); err != nil {
		return err
	}
	if !t.tx.Writable() {
		return ErrReadOnly
	}
	b := t.tx.Bucket([]byte(kind))
	if b == nil {
		return nil
	}
	if err := b.Delete([]byte(key)); err != nil {
		return fmt.Errorf("delete %s/%s: %w", kind, key, err)
	}
	return nil
}

func (t boltTx) List(kind string) ([]Entry, error) {
	if kind == "" {
		return nil, errors.New("empty kind")
	}
	b := t.tx.Bucket([]byte(kind))
	if b == nil {
		return nil, nil
	}
	var out []Entry
	// bbolt keeps keys sorted bytewise, which is the order List promises.
	err := b.ForEach(func(k, v []byte) error {
		out = append(out, Entry{Key: string(k), Value: append([]byte(nil), v...)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	return out, nil
}

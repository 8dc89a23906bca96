package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// implementations runs the conformance suite on every Store.
func implementations(t *testing.T) map[string]func() Store {
	return map[string]func() Store{
		"memory": func() Store { return NewMemory() },
		"bolt": func() Store {
			s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

func TestConformance(t *testing.T) {
	for name, open := range implementations(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("CRUD", func(t *testing.T) { testCRUD(t, open()) })
			t.Run("Rollback", func(t *testing.T) { testRollback(t, open()) })
			t.Run("ReadOnlyView", func(t *testing.T) { testReadOnly(t, open()) })
			t.Run("ConcurrentUpdates", func(t *testing.T) { testConcurrent(t, open()) })
			t.Run("JSON", func(t *testing.T) { testJSON(t, open()) })
		})
	}
}

func testCRUD(t *testing.T, s Store) {
	defer s.Close()
	err := s.View(func(tx Tx) error {
		if _, err := tx.Get("instance", "i-1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("get of a missing kind: %v", err)
		}
		l, err := tx.List("instance")
		if err != nil || len(l) != 0 {
			t.Errorf("list of a missing kind: %v %v", l, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx Tx) error {
		for _, k := range []string{"b", "a", "c"} {
			if err := tx.Put("instance", k, []byte("v"+k)); err != nil {
				return err
			}
		}
		if err := tx.Put("volume", "a", []byte("other kind")); err != nil {
			return err
		}
		// Reads inside the transaction see its own writes.
		v, err := tx.Get("instance", "b")
		if err != nil || string(v) != "vb" {
			t.Errorf("read own write: %q %v", v, err)
		}
		if err := tx.Delete("instance", "c"); err != nil {
			return err
		}
		if err := tx.Delete("instance", "never"); err != nil {
			t.Errorf("delete of a missing key: %v", err)
		}
		if err := tx.Put("", "x", nil); err == nil {
			t.Error("empty kind accepted")
		}
		if err := tx.Put("instance", "", nil); err == nil {
			t.Error("empty key accepted")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx Tx) error {
		l, err := tx.List("instance")
		if err != nil {
			return err
		}
		if len(l) != 2 || l[0].Key != "a" || l[1].Key != "b" || string(l[0].Value) != "va" {
			t.Errorf("list: %+v", l)
		}
		if _, err := tx.Get("instance", "c"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted key: %v", err)
		}
		v, err := tx.Get("volume", "a")
		if err != nil || string(v) != "other kind" {
			t.Errorf("kinds are separate: %q %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// An empty value is a value, not an absence.
	if err := s.Update(func(tx Tx) error { return tx.Put("k", "empty", nil) }); err != nil {
		t.Fatal(err)
	}
	if err := s.View(func(tx Tx) error { _, err := tx.Get("k", "empty"); return err }); err != nil {
		t.Errorf("empty value: %v", err)
	}
}

func testRollback(t *testing.T, s Store) {
	defer s.Close()
	boom := errors.New("boom")
	err := s.Update(func(tx Tx) error {
		if err := tx.Put("instance", "a", []byte("1")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update error not returned: %v", err)
	}
	_ = s.View(func(tx Tx) error {
		if _, err := tx.Get("instance", "a"); !errors.Is(err, ErrNotFound) {
			t.Errorf("write of a failed update survived: %v", err)
		}
		return nil
	})
}

func testReadOnly(t *testing.T, s Store) {
	defer s.Close()
	_ = s.View(func(tx Tx) error {
		if err := tx.Put("a", "b", []byte("c")); err == nil {
			t.Error("put in a view succeeded")
		}
		if err := tx.Delete("a", "b"); err == nil {
			t.Error("delete in a view succeeded")
		}
		return nil
	})
}

// testConcurrent increments one counter from many goroutines; with
// serializable transactions no increment is lost.
func testConcurrent(t *testing.T, s Store) {
	defer s.Close()
	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	for range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range rounds {
				err := s.Update(func(tx Tx) error {
					n := 0
					if v, err := tx.Get("counter", "n"); err == nil {
						n, _ = strconv.Atoi(string(v))
					} else if !errors.Is(err, ErrNotFound) {
						return err
					}
					return tx.Put("counter", "n", []byte(strconv.Itoa(n+1)))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // readers never see a torn value
			defer wg.Done()
			for range rounds {
				err := s.View(func(tx Tx) error {
					v, err := tx.Get("counter", "n")
					if errors.Is(err, ErrNotFound) {
						return nil
					}
					if err != nil {
						return err
					}
					if _, err := strconv.Atoi(string(v)); err != nil {
						return fmt.Errorf("torn value %q", v)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_ = s.View(func(tx Tx) error {
		v, _ := tx.Get("counter", "n")
		if string(v) != strconv.Itoa(workers*rounds) {
			t.Errorf("counter %s, want %d", v, workers*rounds)
		}
		return nil
	})
}

func testJSON(t *testing.T, s Store) {
	defer s.Close()
	type rec struct {
		Name string
		N    int
	}
	if err := s.Update(func(tx Tx) error { return PutJSON(tx, "rec", "x", rec{"x", 3}) }); err != nil {
		t.Fatal(err)
	}
	var got rec
	if err := s.View(func(tx Tx) error { return GetJSON(tx, "rec", "x", &got) }); err != nil {
		t.Fatal(err)
	}
	if got != (rec{"x", 3}) {
		t.Errorf("got %+v", got)
	}
	err := s.View(func(tx Tx) error { return GetJSON(tx, "rec", "missing", &got) })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
}

func TestBoltReopenKeepsCommittedData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx Tx) error { return tx.Put("instance", "i-1", []byte("running")) }); err != nil {
		t.Fatal(err)
	}
	_ = s.Update(func(tx Tx) error {
		_ = tx.Put("instance", "i-2", []byte("lost"))
		return errors.New("abort")
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.View(func(Tx) error { return nil }); err == nil {
		t.Error("view after close succeeded")
	}
	s, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.View(func(tx Tx) error {
		v, err := tx.Get("instance", "i-1")
		if err != nil || string(v) != "running" {
			t.Errorf("after reopen: %q %v", v, err)
		}
		if _, err := tx.Get("instance", "i-2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("aborted write after reopen: %v", err)
		}
		return nil
	})
}

func TestBoltSecondOpenIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := OpenBolt(path); err == nil {
		s2.Close()
		t.Fatal("a second open of a locked store succeeded")
	}
}

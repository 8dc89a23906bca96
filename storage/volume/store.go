// Package volume is gureum's EBS: persistent volumes that outlive
// instances, and point-in-time snapshots of them.
//
// A volume is a chain of qcow2 files. Its top file takes the guest's
// writes; every file below it is frozen and belongs to a snapshot:
//
//	snap-A file  <-  snap-B file  <-  vol top      (arrows: "is backing of")
//
// Taking a snapshot freezes the top (it becomes the snapshot's file) and
// puts a new empty top on it, so a snapshot holds exactly the clusters
// written since the previous one and costs no copying. A volume created
// from a snapshot is another new top on that snapshot's file; it and the
// original then diverge, each in its own top. Deleting a snapshot merges
// its clusters into the files built on it (its children) and drops it from
// the chain. See docs/storage.md, "Volumes and snapshots".
//
// A Store owns one data directory:
//
//	<dir>/lock                     flock: one process owns the store
//	<dir>/volumes/vol-….json       one record per volume
//	<dir>/snapshots/snap-….json    one record per snapshot
//	<dir>/layers/layer-….qcow2     the chain files
//
// Records are written to a temporary file and renamed over the old one,
// so a crash leaves either the old or the new record, never half of one.
// Store methods may be called from any goroutine; a mutex serialises them.
package volume

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"gureum/storage/ratelimit"
)

// LiveDrive is a running VMM's drive that holds a volume's top file open.
// The store asks it to do what only the VMM can do safely to a file it
// writes. Implementations talk to the VMM's socket; calls may block for
// the length of a flush.
type LiveDrive interface {
	// SwitchTop flushes the drive's current top file, then continues on
	// newTopPath, a new qcow2 file whose backing is the current top. After
	// it returns the VMM no longer writes the old top.
	SwitchTop(newTopPath string) error
	// Resize grows the drive's top file to newSize bytes and tells the
	// guest (a virtio configuration change).
	Resize(newSize int64) error
	// SetLimits changes the drive's I/O caps.
	SetLimits(l ratelimit.Limits) error
}

// Drives finds the live drive of an attachment. It returns (nil, nil) when
// the instance is not running, so the store works on the files itself.
type Drives interface {
	Drive(instanceID, device string) (LiveDrive, error)
}

// Options configure a Store.
type Options struct {
	// Images does the file work; nil means the store's default format code.
	Images Images
	// Drives finds running VMMs; nil means no instance is ever running.
	Drives Drives
	// Now is the clock for timestamps; nil means time.Now.
	Now func() time.Time
}

// Store is a data directory of volumes and snapshots.
type Store struct {
	dir    string
	images Images
	drives Drives
	now    func() time.Time
	lock   *os.File // holds the flock until Close

	mu        sync.Mutex
	volumes   map[string]*Volume   // guarded by mu
	snapshots map[string]*Snapshot // guarded by mu
}

// Open opens (creating if needed) the store in dir and takes its lock; a
// second Open of the same directory, from any process, fails until Close.
// Work a crash interrupted is finished or undone (see recoverState).
func Open(dir string, opts Options) (*Store, error) {
	for _, sub := range []string{"volumes", "snapshots", "layers"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("open volume store: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open volume store: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open volume store %s: another process holds it: %w", dir, err)
	}
	s := &Store{
		dir: dir, images: opts.Images, drives: opts.Drives, now: opts.Now, lock: lock,
		volumes: map[string]*Volume{}, snapshots: map[string]*Snapshot{},
	}
	if s.images == nil {
		s.images = defaultImages()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.load(); err != nil {
		lock.Close()
		return nil, err
	}
	s.mu.Lock()
	err = s.recoverState()
	s.mu.Unlock()
	if err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the lock. The store must not be used afterwards.
func (s *Store) Close() error {
	if err := s.lock.Close(); err != nil {
		return fmt.Errorf("close volume store: %w", err)
	}
	return nil
}

// load reads every record.
func (s *Store) load() error {
	for _, kind := range []string{"volumes", "snapshots"} {
		names, err := filepath.Glob(filepath.Join(s.dir, kind, "*.json"))
		if err != nil {
			return fmt.Errorf("load volume store: %w", err)
		}
		for _, name := range names {
			data, err := os.ReadFile(name)
			if err != nil {
				return fmt.Errorf("load volume store: %w", err)
			}
			if kind == "volumes" {
				v := &Volume{}
				if err := json.Unmarshal(data, v); err != nil {
					return fmt.Errorf("load volume record %s: %w", name, err)
				}
				s.volumes[v.ID] = v
			} else {
				sn := &Snapshot{}
				if err := json.Unmarshal(data, sn); err != nil {
					return fmt.Errorf("load snapshot record %s: %w", name, err)
				}
				s.snapshots[sn.ID] = sn
			}
		}
	}
	return nil
}

// recoverState finishes what a crash interrupted. Caller holds mu.
//   - A pending snapshot whose volume never moved to a new top is dropped:
//     nothing was frozen. One whose volume did move may or may not have
//     been switched in the VMM, so it cannot be trusted as a point in
//     time: it is marked error (it stays in the chain, which needs it).
//   - A volume left deleting is deleted.
//   - Layer files no record names are leftovers of an interrupted create
//     and are removed.
//   - Deletions of snapshots that waited are retried.
func (s *Store) recoverState() error {
	for _, sn := range s.snapshots {
		if sn.State != SnapshotPending {
			continue
		}
		v := s.volumes[sn.VolumeID]
		if v == nil || v.Top == sn.File {
			if err := s.removeRecord("snapshots", sn.ID); err != nil {
				return err
			}
			delete(s.snapshots, sn.ID)
			continue
		}
		sn.State, sn.Progress = SnapshotError, "0%"
		if err := s.saveSnapshot(sn); err != nil {
			return err
		}
	}
	for _, v := range s.volumes {
		if v.State == StateDeleting {
			if err := s.finishDeleteVolume(v); err != nil {
				return err
			}
		}
	}
	used := map[string]bool{}
	for _, v := range s.volumes {
		used[v.Top] = true
	}
	for _, sn := range s.snapshots {
		used[sn.File] = true
	}
	files, err := filepath.Glob(filepath.Join(s.dir, "layers", "*"))
	if err != nil {
		return fmt.Errorf("recover volume store: %w", err)
	}
	for _, f := range files {
		if !used[filepath.Base(f)] {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("recover volume store: %w", err)
			}
		}
	}
	return s.collect()
}

// layerPath is the full path of a layer file named by a record.
func (s *Store) layerPath(name string) string {
	if name == "" {
		return ""
	}
	return filepath.Join(s.dir, "layers", name)
}

// newLayerName picks a fresh layer file name.
func newLayerName() string { return "layer-" + randomHex(8) + ".qcow2" }

// newID makes an EC2-style ID: prefix, dash, 17 hex digits.
func newID(prefix string) string { return prefix + "-" + randomHex(9)[:17] }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never fails on Linux
	}
	return hex.EncodeToString(b)
}

// writeRecord stores v as kind/id.json atomically: write a temporary
// file, sync it, rename it over the record, sync the directory.
func (s *Store) writeRecord(kind, id string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return internal(err, "encode %s record", id)
	}
	dir := filepath.Join(s.dir, kind)
	tmp, err := os.CreateTemp(dir, "."+id+".*.tmp")
	if err != nil {
		return internal(err, "write %s record", id)
	}
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, id+".json"))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return internal(err, "write %s record", id)
	}
	return syncDir(dir)
}

func (s *Store) removeRecord(kind, id string) error {
	dir := filepath.Join(s.dir, kind)
	if err := os.Remove(filepath.Join(dir, id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return internal(err, "remove %s record", id)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return internal(err, "sync %s", dir)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return internal(err, "sync %s", dir)
	}
	return nil
}

func (s *Store) saveVolume(v *Volume) error      { return s.writeRecord("volumes", v.ID, v) }
func (s *Store) saveSnapshot(sn *Snapshot) error { return s.writeRecord("snapshots", sn.ID, sn) }

// removeLayer deletes a layer file that nothing uses any more.
func (s *Store) removeLayer(name string) error {
	if err := os.Remove(s.layerPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return internal(err, "remove layer %s", name)
	}
	return nil
}

// sortedVolumes and sortedSnapshots list records by creation time, then
// ID, so listings are stable. Caller holds mu.
func (s *Store) sortedVolumes() []Volume {
	out := make([]Volume, 0, len(s.volumes))
	for _, v := range s.volumes {
		out = append(out, v.clone())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreateTime.Equal(out[j].CreateTime) {
			return out[i].CreateTime.Before(out[j].CreateTime)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func (s *Store) sortedSnapshots() []Snapshot {
	out := make([]Snapshot, 0, len(s.snapshots))
	for _, sn := range s.snapshots {
		if !sn.Deleted {
			out = append(out, *sn)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartTime.Equal(out[j].StartTime) {
			return out[i].StartTime.Before(out[j].StartTime)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// validID reports whether id has the shape newID makes, so a record name
// built from it cannot leave the store's directories.
func validID(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix+"-")
	if !ok || len(rest) == 0 || len(rest) > 32 {
		return false
	}
	for _, c := range rest {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

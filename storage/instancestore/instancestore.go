// Package instancestore is the instance store: scratch block storage that
// lives and dies with its instance, as on EC2 instance types with local
// NVMe disks.
//
// Each instance gets one sparse raw file, <dir>/<instance-id>.img, sized
// by its instance type (the caller maps types to sizes). A sparse file
// costs no host space until the guest writes, so a large instance store
// is free at launch. Lifecycle, as EC2 promises it:
//
//   - launch: Create makes the file;
//   - guest reboot: nothing happens, the file and its data stay (the VMM
//     keeps its disks open across a reset);
//   - stop, terminate, host failure: Erase deletes the file, so the next
//     start gets a fresh, zero-filled disk and no data leaks to whoever
//     gets the space next.
//
// There are no snapshots of an instance store; that is what EBS is for.
package instancestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"gureum/storage/raw"
)

// instanceIDPattern is what an instance ID may look like. IDs become file
// names, so anything that could walk out of the directory is refused.
var instanceIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ErrExists is returned by Create when the instance already has a disk.
var ErrExists = errors.New("instance store already exists")

// Path is the file of instanceID's instance store in dir. It is an error
// to pass an ID that is not a plain name.
func Path(dir, instanceID string) (string, error) {
	if !instanceIDPattern.MatchString(instanceID) {
		return "", fmt.Errorf("instance store: invalid instance id %q", instanceID)
	}
	return filepath.Join(dir, instanceID+".img"), nil
}

// Create makes the instance store of instanceID: a sparse raw file of size
// bytes, zero-filled by construction. It fails with ErrExists if the
// instance already has one, since silently reusing a disk would hand the
// guest stale data. Call it once at launch (and again at the start after
// a stop, since stop erased it).
func Create(dir, instanceID string, size int64) (string, error) {
	path, err := Path(dir, instanceID)
	if err != nil {
		return "", err
	}
	if size <= 0 {
		return "", fmt.Errorf("create instance store for %s: size %d is not positive", instanceID, size)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create instance store for %s: %w", instanceID, err)
	}
	if _, err := os.Lstat(path); err == nil {
		return "", fmt.Errorf("create instance store for %s: %w", instanceID, ErrExists)
	}
	if err := raw.Create(path, size); err != nil {
		return "", fmt.Errorf("create instance store for %s: %w", instanceID, err)
	}
	return path, nil
}

// Erase deletes instanceID's instance store, on stop and terminate.
// Erasing an instance that has none is not an error, so a stop that was
// interrupted can simply be retried.
func Erase(dir, instanceID string) error {
	path, err := Path(dir, instanceID)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("erase instance store of %s: %w", instanceID, err)
	}
	return nil
}

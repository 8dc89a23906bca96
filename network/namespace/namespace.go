// Package namespace creates, enters and removes named Linux network
// namespaces, the way `ip netns` does, without running `ip`.
//
// A network namespace is a private copy of the kernel's network stack:
// its own interfaces, addresses, routes, firewall and sockets. It lives as
// long as something refers to it. A named namespace is kept alive by a bind
// mount of its /proc/<tid>/ns/net file onto /run/netns/NAME, which is also
// how `ip netns exec NAME` and other tools find it.
//
// Namespaces belong to threads, not processes. To act inside one, a
// goroutine locks itself to its OS thread, switches that thread with
// setns(2), does its work, and switches back (Do). Sockets and interfaces
// made there stay in the namespace after the thread leaves, so a listener
// opened in Do keeps serving the namespace from any goroutine.
package namespace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named namespaces are mounted (shared with iproute2).
const Dir = "/run/netns"

// Create makes a new named namespace with its loopback interface up. It
// fails if the name is taken.
func Create(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if Exists(name) {
		return fmt.Errorf("namespace %s: %w", name, os.ErrExist)
	}
	// NewNamed switches the calling thread into the new namespace; the
	// thread is switched back before it is unlocked.
	err := onLockedThread(func(orig netns.NsHandle) error {
		h, err := netns.NewNamed(name)
		if err != nil {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
		h.Close()
		return nil
	})
	if err != nil {
		return err
	}
	if err := Do(name, bringUpLoopback); err != nil {
		Delete(name)
		return err
	}
	return nil
}

// Delete unmounts and removes a named namespace. The namespace itself goes
// away with its last user: a process or socket still inside keeps it (and
// its interfaces) alive, nameless. Deleting a missing name is an error
// matching os.ErrNotExist.
func Delete(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if !Exists(name) {
		return fmt.Errorf("delete namespace %s: %w", name, os.ErrNotExist)
	}
	if err := netns.DeleteNamed(name); err != nil {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

// Exists reports whether a named namespace is mounted.
func Exists(name string) bool {
	_, err := os.Stat(Path(name))
	return err == nil
}

// Path is the bind-mount file of a named namespace. Opening it gives an fd
// that setns(2) accepts.
func Path(name string) string { return filepath.Join(Dir, name) }

// List returns the names of the mounted namespaces that start with prefix.
func List(prefix string) ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Do runs fn on an OS thread that is inside the named namespace and
// returns fn's error. fn must not start goroutines that expect to be in the
// namespace (they run on other threads) and must not unlock the thread.
func Do(name string, fn func() error) error {
	target, err := netns.GetFromPath(Path(name))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer target.Close()
	return onLockedThread(func(orig netns.NsHandle) error {
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("enter namespace %s: %w", name, err)
		}
		return fn()
	})
}

// onLockedThread runs fn on a locked thread and puts the thread back into
// its original namespace afterwards. If that fails, the thread is left
// locked: Go then ends it with the goroutine instead of reusing a thread
// that sits in the wrong namespace.
func onLockedThread(fn func(orig netns.NsHandle) error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current namespace: %w", err)
	}
	defer orig.Close()
	fnErr := fn(orig)
	if err := netns.Set(orig); err != nil {
		return errors.Join(fnErr, fmt.Errorf("return to original namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// bringUpLoopback sets lo up in the current thread's namespace (a new
// namespace starts with it down, and local services need it).
func bringUpLoopback() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback up: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: set flags: %w", err)
	}
	return nil
}

// checkName refuses names that would escape Dir or that the kernel's
// mount table cannot hold.
func checkName(name string) error {
	if name == "" || len(name) > 200 || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("bad namespace name %q", name)
	}
	return nil
}

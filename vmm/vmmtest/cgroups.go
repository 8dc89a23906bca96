package vmmtest

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CleanupCgroups registers a cleanup that removes every cgroup directory
// named name under /sys/fs/cgroup (in every hierarchy, also nested under
// the test process's own cgroup, as --cgroup-nested makes them) with the
// instance cgroups inside it. A process still in one of them was started
// by the test (a VMM a failed test left behind) and is killed first.
// Register it before the daemon or service it cleans up after, so that it
// runs last.
func CleanupCgroups(t testing.TB, name string) {
	t.Cleanup(func() {
		for _, dir := range findCgroups("/sys/fs/cgroup", name, 5) {
			subs, _ := filepath.Glob(filepath.Join(dir, "*", "cgroup.procs"))
			for _, procs := range append(subs, filepath.Join(dir, "cgroup.procs")) {
				killAll(t, procs)
			}
			for _, procs := range subs {
				removeCgroup(filepath.Dir(procs))
			}
			removeCgroup(dir)
		}
	})
}

// findCgroups lists directories named name at most depth levels below root.
func findCgroups(root, name string, depth int) []string {
	var out []string
	base := strings.Count(root, string(filepath.Separator))
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if d.Name() == name {
			out = append(out, p)
			return fs.SkipDir
		}
		if strings.Count(p, string(filepath.Separator))-base >= depth {
			return fs.SkipDir
		}
		return nil
	})
	return out
}

func killAll(t testing.TB, procs string) {
	b, _ := os.ReadFile(procs)
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			t.Logf("cleanup: killing process %d left in %s", pid, filepath.Dir(procs))
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeCgroup removes an empty cgroup, waiting briefly for killed
// processes to leave it.
func removeCgroup(dir string) {
	for i := 0; i < 50; i++ {
		if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

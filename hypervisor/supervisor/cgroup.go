package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A control group (cgroup) is a kernel-kept set of processes that share
// resource limits. Linux has two interfaces for them:
//
//   - cgroup v1: one mounted hierarchy per controller (or a few controllers
//     mounted together), e.g. /sys/fs/cgroup/cpu and /sys/fs/cgroup/memory.
//     A process group for one VM is then one directory in each hierarchy,
//     and the limits are cpu.cfs_quota_us/cpu.cfs_period_us and
//     memory.limit_in_bytes.
//   - cgroup v2: one unified hierarchy (usually /sys/fs/cgroup) in which a
//     directory carries every controller enabled by its parent's
//     cgroup.subtree_control; the limits are cpu.max and memory.max.
//
// In both, writing a PID to a directory's cgroup.procs moves that process
// there, and children forked afterwards are born in it. An empty directory
// is removed with rmdir.

// cfsPeriodUS is the scheduler period the CPU quota is expressed against:
// in every 100 ms window the group may run quota microseconds of CPU,
// summed over all its threads, then it is throttled until the next window.
const cfsPeriodUS = 100_000

// minCPUMilli is the smallest quota the kernel accepts (1 ms per period).
const minCPUMilli = 10

// cgroupSystem is the host's cgroup setup as the supervisor uses it: where
// gureum's parent group lives in each hierarchy it needs.
type cgroupSystem struct {
	v2 bool
	// cpuParent and memParent are the directories under which instance
	// groups are made (equal under v2, or when v1 co-mounts the two).
	cpuParent string
	memParent string
}

// mountinfoPath and selfCgroupPath are variables so tests can point them at
// fixtures.
var (
	mountinfoPath  = "/proc/self/mountinfo"
	selfCgroupPath = "/proc/self/cgroup"
)

// cgroupMount is one cgroup filesystem mount from mountinfo.
type cgroupMount struct {
	v2          bool
	dir         string   // where it is mounted
	root        string   // which subtree of the hierarchy the mount shows
	controllers []string // v1: from the super options (cpu, memory, ...)
}

// readCgroupMounts lists the cgroup mounts of this mount namespace.
func readCgroupMounts() ([]cgroupMount, error) {
	f, err := os.Open(mountinfoPath)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var out []cgroupMount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 {
			continue
		}
		m := cgroupMount{dir: unescapeMount(pf[4]), root: unescapeMount(pf[3])}
		switch sf[0] {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			m.controllers = strings.Split(sf[2], ",")
		default:
			continue
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// selfCgroups maps a v1 controller name (or "" for v2) to this process's
// group path within that hierarchy, from /proc/self/cgroup.
func selfCgroups() (map[string]string, error) {
	b, err := os.ReadFile(selfCgroupPath)
	if err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// hierarchy-id:controller,list:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, nil
}

// detectCgroups finds the cpu and memory controllers and decides where
// gureum's parent group goes: name under each hierarchy's root, or, when
// nest is set, under the group this process itself runs in (a delegated
// subtree, or a test that must stay inside its own limits).
func detectCgroups(name string, nest bool) (*cgroupSystem, error) {
	mounts, err := readCgroupMounts()
	if err != nil {
		return nil, err
	}
	self := map[string]string{}
	if nest {
		if self, err = selfCgroups(); err != nil {
			return nil, err
		}
	}
	// place returns the parent directory inside mount m for the hierarchy
	// whose own-group key is key.
	place := func(m cgroupMount, key string) string {
		base := m.dir
		if nest {
			// Inside a cgroup namespace or a bind mount of a subtree, the
			// mount shows only m.root and what lies below it.
			rel := self[key]
			if m.root != "/" {
				r, ok := strings.CutPrefix(rel, m.root)
				if !ok {
					r = "/"
				}
				rel = r
			}
			base = filepath.Join(m.dir, rel)
		}
		return filepath.Join(base, name)
	}
	var cpu, mem *cgroupMount
	for i := range mounts {
		m := &mounts[i]
		for _, c := range m.controllers {
			switch c {
			case "cpu":
				cpu = m
			case "memory":
				mem = m
			}
		}
	}
	if cpu != nil && mem != nil {
		return &cgroupSystem{cpuParent: place(*cpu, "cpu"), memParent: place(*mem, "memory")}, nil
	}
	for _, m := range mounts {
		if !m.v2 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.dir, "cgroup.controllers"))
		if err != nil {
			continue
		}
		have := strings.Fields(string(b))
		if contains(have, "cpu") && contains(have, "memory") {
			p := place(m, "")
			return &cgroupSystem{v2: true, cpuParent: p, memParent: p}, nil
		}
	}
	return nil, errors.New("no cgroup hierarchy with the cpu and memory controllers is mounted")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ensureParent creates gureum's parent group(s). Under v2 the cpu and
// memory controllers must also be enabled for the parent's children, which
// is done by writing "+cpu +memory" to the grandparent's and the parent's
// cgroup.subtree_control.
func (c *cgroupSystem) ensureParent() error {
	for _, d := range []string{c.cpuParent, c.memParent} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create cgroup parent: %w", err)
		}
	}
	if c.v2 {
		for _, d := range []string{filepath.Dir(c.cpuParent), c.cpuParent} {
			if err := writeCgroupFile(filepath.Join(d, "cgroup.subtree_control"), "+cpu +memory"); err != nil {
				return fmt.Errorf("enable cpu and memory controllers: %w", err)
			}
		}
	}
	return nil
}

// group returns the (not yet created) group of the instance id.
func (c *cgroupSystem) group(id string) cgroup {
	if c.v2 || c.cpuParent == c.memParent {
		return cgroup{V2: c.v2, CPUDir: filepath.Join(c.cpuParent, id), MemDir: filepath.Join(c.memParent, id)}
	}
	return cgroup{CPUDir: filepath.Join(c.cpuParent, id), MemDir: filepath.Join(c.memParent, id)}
}

// cgroup is one instance's group: one directory under v2, one per
// controller under v1. It is stored in the instance's state file, so a
// later supervisor finds it again.
type cgroup struct {
	V2     bool   `json:"v2"`
	CPUDir string `json:"cpu_dir"`
	MemDir string `json:"memory_dir"`
}

// dirs lists the group's distinct directories.
func (g cgroup) dirs() []string {
	if g.CPUDir == g.MemDir {
		return []string{g.CPUDir}
	}
	return []string{g.CPUDir, g.MemDir}
}

// create makes the group's directories and applies the limits.
func (g cgroup) create(l Limits) error {
	for _, d := range g.dirs() {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create cgroup: %w", err)
		}
	}
	if err := g.setLimits(l); err != nil {
		g.remove()
		return err
	}
	return nil
}

// procsFiles are the files a process writes its PID to in order to join
// the group.
func (g cgroup) procsFiles() []string {
	var out []string
	for _, d := range g.dirs() {
		out = append(out, filepath.Join(d, "cgroup.procs"))
	}
	return out
}

// setLimits writes the CPU quota and memory limit. Zero means unlimited.
func (g cgroup) setLimits(l Limits) error {
	quota := int64(-1)
	if l.CPUMilli > 0 {
		quota = int64(max(l.CPUMilli, minCPUMilli)) * cfsPeriodUS / 1000
	}
	if g.V2 {
		cpuMax := "max " + strconv.Itoa(cfsPeriodUS)
		if quota > 0 {
			cpuMax = fmt.Sprintf("%d %d", quota, cfsPeriodUS)
		}
		if err := writeCgroupFile(filepath.Join(g.CPUDir, "cpu.max"), cpuMax); err != nil {
			return fmt.Errorf("set cpu.max: %w", err)
		}
		mem := "max"
		if l.MemoryBytes > 0 {
			mem = strconv.FormatInt(l.MemoryBytes, 10)
		}
		if err := writeCgroupFile(filepath.Join(g.MemDir, "memory.max"), mem); err != nil {
			return fmt.Errorf("set memory.max: %w", err)
		}
		return nil
	}
	if err := writeCgroupFile(filepath.Join(g.CPUDir, "cpu.cfs_period_us"), strconv.Itoa(cfsPeriodUS)); err != nil {
		return fmt.Errorf("set cpu.cfs_period_us: %w", err)
	}
	if err := writeCgroupFile(filepath.Join(g.CPUDir, "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10)); err != nil {
		return fmt.Errorf("set cpu.cfs_quota_us: %w", err)
	}
	mem := int64(-1)
	if l.MemoryBytes > 0 {
		mem = l.MemoryBytes
	}
	if err := writeCgroupFile(filepath.Join(g.MemDir, "memory.limit_in_bytes"), strconv.FormatInt(mem, 10)); err != nil {
		return fmt.Errorf("set memory.limit_in_bytes: %w", err)
	}
	return nil
}

// limits reads the limits back from the kernel. Unlimited reads as zero.
// (The kernel rounds a memory limit down to whole pages.)
func (g cgroup) limits() (Limits, error) {
	var l Limits
	if g.V2 {
		cpuMax, err := readCgroupFile(filepath.Join(g.CPUDir, "cpu.max"))
		if err != nil {
			return l, err
		}
		q, p, _ := strings.Cut(cpuMax, " ")
		if q != "max" {
			qn, err1 := strconv.ParseInt(q, 10, 64)
			pn, err2 := strconv.ParseInt(p, 10, 64)
			if err1 != nil || err2 != nil || pn <= 0 {
				return l, fmt.Errorf("bad cpu.max %q", cpuMax)
			}
			l.CPUMilli = int(qn * 1000 / pn)
		}
		mem, err := readCgroupFile(filepath.Join(g.MemDir, "memory.max"))
		if err != nil {
			return l, err
		}
		if mem != "max" {
			if l.MemoryBytes, err = strconv.ParseInt(mem, 10, 64); err != nil {
				return l, fmt.Errorf("bad memory.max %q", mem)
			}
		}
		return l, nil
	}
	q, err := readCgroupInt(filepath.Join(g.CPUDir, "cpu.cfs_quota_us"))
	if err != nil {
		return l, err
	}
	p, err := readCgroupInt(filepath.Join(g.CPUDir, "cpu.cfs_period_us"))
	if err != nil {
		return l, err
	}
	if q > 0 && p > 0 {
		l.CPUMilli = int(q * 1000 / p)
	}
	m, err := readCgroupInt(filepath.Join(g.MemDir, "memory.limit_in_bytes"))
	if err != nil {
		return l, err
	}
	// v1 reports "no limit" as a huge page-rounded number.
	if m > 0 && m < 1<<62 {
		l.MemoryBytes = m
	}
	return l, nil
}

// pids lists the processes in the group (from its first directory).
func (g cgroup) pids() ([]int, error) {
	s, err := readCgroupFile(filepath.Join(g.CPUDir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(s) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// remove deletes the group's directories. The kernel refuses (EBUSY) while
// a process is still inside, so a caller removes the group only after the
// VMM and its wrapper have exited; a just-exited process can linger in
// cgroup.procs for a moment, hence the short retry.
func (g cgroup) remove() error {
	var errs []error
	for _, d := range g.dirs() {
		var err error
		for try := 0; try < 50; try++ {
			err = os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}

func writeCgroupFile(path, value string) error {
	return os.WriteFile(path, []byte(value), 0)
}

func readCgroupFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read cgroup file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func readCgroupInt(path string) (int64, error) {
	s, err := readCgroupFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

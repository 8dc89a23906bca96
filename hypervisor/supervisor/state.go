package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Names of the files in an instance's run directory.
const (
	stateFileName   = "state.json" // record, written by the supervisor
	apiSockName     = "api.sock"   // the VMM's REST API
	consoleSockName = "console.sock"
	consoleLogName  = "console.log" // the guest's serial console
	vmmLogName      = "vmm.log"     // stdout and stderr of the wrapper and the VMM
	vmmPIDName      = "vmm.pid"     // written by the wrapper once it forked the VMM
	exitFileName    = "exit-status" // written by the wrapper when the VMM ended
)

// record is what a run directory's state.json holds: enough for a
// supervisor started later (after the previous one was killed) to find the
// processes, check they are still the same ones, reach the VMM's socket and
// clean up the cgroup.
//
// A PID alone does not name a process for long: once a process is reaped
// the kernel may hand its number to a new one. The start time (field 22 of
// /proc/PID/stat, in clock ticks since boot) does not change for the life
// of a process, so the pair (PID, start time) does.
type record struct {
	ID          string    `json:"id"`
	Spec        Spec      `json:"spec"`
	Limits      Limits    `json:"limits"`
	Cgroup      cgroup    `json:"cgroup"`
	WrapperPID  int       `json:"wrapper_pid,omitempty"`
	WrapperTime uint64    `json:"wrapper_start_ticks,omitempty"`
	VMMPID      int       `json:"vmm_pid,omitempty"`
	VMMTime     uint64    `json:"vmm_start_ticks,omitempty"`
	APISock     string    `json:"api_sock"`
	ConsoleSock string    `json:"console_sock"`
	ConsoleLog  string    `json:"console_log"`
	VMMLog      string    `json:"vmm_log"`
	StartedAt   time.Time `json:"started_at"`
}

// writeRecord replaces dir/state.json atomically: the new content goes to a
// temporary file that is synced and then renamed over the old one, so a
// reader (or a crash) sees either the old record or the new one, never a
// torn mix.
func writeRecord(dir string, r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, stateFileName+".tmp*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, stateFileName))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write state: %w", err)
	}
	// Make the rename itself durable.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// readRecord loads dir/state.json.
func readRecord(dir string) (record, error) {
	var r record
	b, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if err != nil {
		return r, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode state %s: %w", filepath.Join(dir, stateFileName), err)
	}
	return r, nil
}

// procStat is what the supervisor needs from /proc/PID/stat.
type procStat struct {
	state byte   // R, S, D, Z (zombie: exited, not yet reaped), ...
	start uint64 // start time in clock ticks since boot
}

// procRoot is a variable so tests can use a fake /proc.
var procRoot = "/proc"

// readProcStat parses /proc/PID/stat. The second field is the command name
// in parentheses and may itself contain spaces or parentheses, so the
// fields are counted from the last ')'.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("pid %d: malformed stat", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("pid %d: malformed start time: %w", pid, err)
	}
	return procStat{state: f[0][0], start: start}, nil
}

// processAlive reports whether pid is still the process that started at
// start ticks and has not exited. A zombie has exited.
func processAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readProcStat(pid)
	if err != nil {
		return false
	}
	return st.start == start && st.state != 'Z' && st.state != 'X'
}

// readIntFile reads a file holding one decimal number and a newline, as the
// wrapper writes them. The newline proves the write was complete: a file
// caught between its creation and the write reads as "not yet".
func readIntFile(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 || b[len(b)-1] != '\n' {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false
	}
	return n, true
}

// tailFile returns up to the last n bytes of a file ("" if unreadable).
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-n, 0)
	b := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(b, off)
	return string(b[:k])
}

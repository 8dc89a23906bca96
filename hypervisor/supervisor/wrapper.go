package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The wrapper is a few lines of POSIX shell that stand between the
// supervisor and each gureum-vmm. It solves two problems at once:
//
//  1. Placing the VMM in its cgroup before it runs any guest code. The
//     wrapper writes its own PID to the group's cgroup.procs files and only
//     then forks the VMM, which is therefore born inside the group: no
//     moment of running unlimited, and every page it touches is charged to
//     the group from the first one. (Starting the VMM and moving it
//     afterwards leaves a window, and under cgroup v1 memory charged
//     before the move stays with the old group.)
//  2. Keeping the VMM's exit status when no supervisor is around. Only a
//     parent can learn a child's exit status. The supervisor is the
//     wrapper's parent only until the supervisor dies; the wrapper is the
//     VMM's parent for the VMM's whole life. It waits for the VMM and
//     writes the status to a file in the run directory, so a supervisor
//     started later still learns whether the guest powered off, rebooted,
//     or the VMM crashed or was killed.
//
// The wrapper ignores SIGHUP, SIGINT and SIGTERM once the VMM is forked
// (only SIGKILL ends it early), and exits with the VMM's status. Exit 125
// means it could not join the cgroup; a VMM killed by signal N shows as
// 128+N, as shells report it.
//
// The PID and exit status files are written beside their place and renamed
// into it, so a reader never sees one empty or half written.
//
// Arguments: $1 VMM PID file, $2 exit status file, then cgroup.procs paths
// up to "--", then the VMM command.
const wrapperScript = `pidfile=$1 exitfile=$2
shift 2
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
	echo $$ >"$1" || exit 125
	shift
done
shift
"$@" &
vmm=$!
trap '' HUP INT TERM
echo $vmm >"$pidfile.tmp" && mv -f "$pidfile.tmp" "$pidfile"
wait $vmm
status=$?
echo $status >"$exitfile.tmp" && mv -f "$exitfile.tmp" "$exitfile"
exit $status
`

// exitCgroupJoin is the wrapper's status when it could not join the group.
const exitCgroupJoin = 125

// wrapperCommand returns argv for the wrapper running the VMM command.
func wrapperCommand(netns, pidFile, exitFile string, procs []string, vmm []string) []string {
	argv := []string{"/bin/sh", "-c", wrapperScript, "gureum-vmm-wrapper", pidFile, exitFile}
	argv = append(argv, procs...)
	argv = append(argv, "--")
	argv = append(argv, vmm...)
	if netns != "" {
		// nsenter enters the named network namespace and then execs the
		// wrapper in place, so the PID stays the one the supervisor
		// started. (Not `ip netns exec`: it also makes a mount namespace
		// and remounts /sys for the network namespace, which hides the
		// cgroup v1 hierarchies under /sys/fs/cgroup from the wrapper.)
		argv = append([]string{"nsenter", "--net=/run/netns/" + netns, "--"}, argv...)
	}
	return argv
}

// waitExit blocks until the process pid, started at start ticks, has
// exited, or ctx is done. It works for any process, child or not, through
// a pidfd: a file descriptor that names one process (not a reusable
// number) and becomes readable when that process exits. If the process is
// the caller's child (the supervisor started it, or this process is a
// child subreaper that inherited it), waitExit also reaps it so it does not
// stay a zombie, and returns its exit status; otherwise the status is -1.
func waitExit(ctx context.Context, pid int, start uint64) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, nil // already gone (and reaped)
	}
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	// Check identity after opening: if pid is our process now, the pidfd
	// (which pins the process it was opened on) is for our process too.
	st, err := readProcStat(pid)
	if err != nil || st.start != start {
		unix.Close(fd)
		return -1, nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("pidfd nonblock: %w", err)
	}
	// os.NewFile registers a non-blocking descriptor with Go's poller, so
	// this goroutine sleeps without holding an OS thread.
	f := os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid))
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("pidfd: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	err = rc.Read(func(fd uintptr) bool {
		n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return n > 0
	})
	if err != nil {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, fmt.Errorf("wait for pid %d: %w", pid, err)
	}
	// A zombie keeps its PID until reaped, so the number cannot have been
	// reused yet: wait4 on it reaps exactly this process (or fails with
	// ECHILD when it is not our child).
	var ws unix.WaitStatus
	if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && got == pid {
		return shellStatus(ws), nil
	}
	return -1, nil
}

// shellStatus turns a wait status into the number a shell reports: the
// exit code, or 128+N for death by signal N.
func shellStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

package supervisor

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"gureum/vmm/api"
)

// EndKind says how an instance's VMM ended. The values are the VMM's own
// end kinds (GET /vm "end.kind", docs/vmm-api.md).
type EndKind string

// How a VMM can end.
const (
	// EndPoweroff: the guest powered off (VMM exit status 0). The control
	// plane moves the instance to stopped (or terminated, per its
	// shutdown behaviour).
	EndPoweroff EndKind = "poweroff"
	// EndReboot: the guest rebooted and the VMM ran with --no-reboot (exit
	// status 3). The control plane starts the VMM again; the instance
	// stays running.
	EndReboot EndKind = "reboot"
	// EndStopped: stopped from outside through the VMM API or SIGTERM
	// (exit status 4), usually because the control plane asked.
	EndStopped EndKind = "stopped"
	// EndCrash: the guest or the VMM failed, the VMM was killed, or how it
	// ended is unknown. Reason says which; the instance goes to stopped
	// with that as its state reason.
	EndCrash EndKind = "crash"
)

// VMM exit statuses (cmd/gureum-vmm).
const (
	vmmExitPoweroff = 0
	vmmExitCrash    = 1
	vmmExitUsage    = 2
	vmmExitReboot   = 3
	vmmExitStopped  = 4
)

// Exit reports the end of one instance's VMM.
type Exit struct {
	ID     string
	Kind   EndKind
	Reason string
	// Status is the VMM's exit status as a shell reports it (128+N for
	// signal N), or -1 when it is unknown.
	Status int
	// WhileAway is set when the VMM ended while no supervisor watched it
	// (found when a new supervisor re-adopted the run directory).
	WhileAway bool
	// At is when the supervisor noticed the end.
	At time.Time
	// BootCount is the boot count of the last GET /vm the supervisor saw
	// (0 if none).
	BootCount int
	// ConsoleTail and LogTail are the ends of the guest console log and of
	// the VMM's own output; the run directory holding them is removed
	// before the exit is reported.
	ConsoleTail string
	LogTail     string
}

// classify decides how a VMM ended from its exit status (-1: unknown), the
// last GET /vm answer the supervisor saw (nil: none) and the tail of the
// VMM's own output (where gureum-vmm prints "gureum-vmm: ..." on failure).
func classify(status int, last *api.VMInfo, logTail string) (EndKind, string) {
	vmmSaid := lastVMMLine(logTail)
	switch {
	case status == vmmExitPoweroff:
		return EndPoweroff, "the guest powered off"
	case status == vmmExitReboot:
		return EndReboot, "the guest rebooted"
	case status == vmmExitStopped:
		return EndStopped, "the VMM was stopped through its API or by SIGTERM"
	case status == vmmExitCrash:
		if vmmSaid != "" {
			return EndCrash, vmmSaid
		}
		if last != nil && last.End != nil && last.End.Reason != "" {
			return EndCrash, last.End.Reason
		}
		return EndCrash, "the VMM failed"
	case status == vmmExitUsage:
		return EndCrash, "the VMM refused its configuration: " + orUnknown(vmmSaid)
	case status == exitCgroupJoin:
		return EndCrash, "the VMM could not be placed in its cgroup: " + orUnknown(lastLine(logTail))
	case status == 127:
		return EndCrash, "the VMM could not be executed: " + orUnknown(lastLine(logTail))
	case status > 128 && status < 128+65:
		sig := syscall.Signal(status - 128)
		return EndCrash, fmt.Sprintf("the VMM was killed by signal %s", signalName(sig))
	case status >= 0:
		return EndCrash, fmt.Sprintf("the VMM exited with unexpected status %d", status)
	}
	// Unknown status: the wrapper was killed too, or its file is gone.
	if last != nil && last.End != nil {
		return EndKind(last.End.Kind), last.End.Reason
	}
	return EndCrash, "the VMM ended and its exit status was not recorded"
}

func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return fmt.Sprintf("%d", int(s))
}

// lastVMMLine returns the last line gureum-vmm printed about itself
// ("gureum-vmm: ..."), without the prefix.
func lastVMMLine(log string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(lines[i]), "gureum-vmm: "); ok {
			return rest
		}
	}
	return ""
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func orUnknown(s string) string {
	if s == "" {
		return "no message"
	}
	return s
}

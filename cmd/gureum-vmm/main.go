// Command gureum-vmm runs one virtual machine on /dev/kvm.
//
// Foreground (for people, like qemu-system-x86_64 -nographic):
//
//	gureum-vmm --kernel FILE [--initrd FILE] [--cmdline STR] [--cpus N]
//	           [--memory SIZE] [--disk PATH[,ro][,iops=N][,bps=N]...]...
//	           [--drive-slots N] [--net TAP[,mac=MAC]]...
//
// The guest's serial console is on the terminal, in raw mode: every key
// goes to the guest, and Ctrl-A x stops the VM. Service mode (for the
// daemon) adds --api-sock PATH: a REST API on that unix socket
// (docs/vmm-api.md). Exit status: 0 guest powered off, 1 VMM or guest
// failure (crash), 2 bad flags or config, 3 guest rebooted (--no-reboot),
// 4 stopped from outside (API stop, SIGTERM, SIGINT).
//
// SIGQUIT prints the machine's state (each vCPU's registers, pending
// events and local APIC, the IOAPIC, each device's queues) and every
// goroutine's stack on stderr, then exits with status 1: the way to see
// why a guest hangs.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"gureum/vmm"
)

// Exit statuses.
const (
	exitPoweroff = 0
	exitCrash    = 1
	exitUsage    = 2
	exitReboot   = 3
	exitStopped  = 4
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	os.Exit(run(os.Args[1:]))
}

// setProcs lets every vCPU thread and the event loop's thread run Go code
// at the same time (GOMAXPROCS of at least vCPUs+2, more if the host has
// more CPUs), unless GOMAXPROCS is set. Each of them is a locked thread
// that wakes from a blocking ioctl or epoll_wait(2) and must then find a
// free P: with fewer Ps than such threads, one that woke could have to
// wait for Go's monitor to take a P back from a thread still asleep in
// the kernel, which takes from 20 µs to 10 ms.
func setProcs(vcpus int) {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(runtime.NumCPU(), vcpus+2))
	}
}

func fail(code int, format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "gureum-vmm: "+format+"\n", a...)
	return code
}

func run(args []string) int {
	fs := flag.NewFlagSet("gureum-vmm", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		cfg         vmm.Config
		memory      string
		disks, nets listFlag
		apiSock     string
		consoleLog  string
		consoleSock string
	)
	fs.StringVar(&cfg.Kernel, "kernel", "", "guest kernel: PVH ELF or bzImage")
	fs.StringVar(&cfg.Initrd, "initrd", "", "initial ramdisk")
	fs.StringVar(&cfg.Cmdline, "cmdline", "", "kernel command line")
	fs.IntVar(&cfg.VCPUs, "cpus", 1, "number of vCPUs")
	fs.StringVar(&memory, "memory", "128M", "guest memory (e.g. 512M, 2G)")
	fs.Var(&disks, "disk", "virtio-blk drive PATH[,ro][,iops=N][,iops_burst=N][,bps=N][,bps_burst=N] (repeatable; bps takes K/M/G)")
	fs.IntVar(&cfg.DriveSlots, "drive-slots", 0, "empty virtio-blk drives for attaching disks through the API")
	fs.Var(&nets, "net", "virtio-net on tap TAP[,mac=MAC] (repeatable)")
	fs.BoolVar(&cfg.NoReboot, "no-reboot", false, "end the VMM (exit 3) when the guest reboots")
	fs.StringVar(&apiSock, "api-sock", "", "serve the REST API on this unix socket (service mode)")
	fs.StringVar(&consoleLog, "console-log", "", "append the serial console to this file (- for standard output)")
	fs.StringVar(&consoleSock, "console-sock", "", "serve the serial console on this unix socket")
	help := fs.Bool("help", false, "show usage")
	if err := fs.Parse(args); err != nil {
		return fail(exitUsage, "%v (see gureum-vmm --help)", err)
	}
	if *help {
		fs.SetOutput(os.Stdout)
		fmt.Println("usage: gureum-vmm --kernel FILE [flags]")
		fs.PrintDefaults()
		return 0
	}
	if fs.NArg() > 0 {
		return fail(exitUsage, "unexpected argument %q (see gureum-vmm --help)", fs.Arg(0))
	}
	mem, err := vmm.ParseSize(memory)
	if err != nil {
		return fail(exitUsage, "--memory: %v", err)
	}
	cfg.MemoryMiB = mem
	for _, d := range disks {
		dc, err := vmm.ParseDisk(d)
		if err != nil {
			return fail(exitUsage, "--disk: %v", err)
		}
		cfg.Disks = append(cfg.Disks, dc)
	}
	for _, n := range nets {
		nc, err := vmm.ParseNet(n)
		if err != nil {
			return fail(exitUsage, "--net: %v", err)
		}
		cfg.Nets = append(cfg.Nets, nc)
	}
	if err := cfg.Validate(); err != nil {
		return fail(exitUsage, "%v", err)
	}
	setProcs(cfg.VCPUs)

	var sinks []io.Writer
	if apiSock == "" {
		sinks = append(sinks, os.Stdout)
	}
	if consoleLog == "-" {
		if apiSock != "" { // in foreground mode the console is on standard output already
			sinks = append(sinks, os.Stdout)
		}
	} else if consoleLog != "" {
		f, err := os.OpenFile(consoleLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return fail(exitUsage, "--console-log: %v", err)
		}
		defer f.Close()
		sinks = append(sinks, f)
	}
	console := vmm.NewConsole(sinks...)
	defer console.Close()
	if consoleSock != "" {
		if err := console.Listen(consoleSock); err != nil {
			return fail(exitUsage, "--console-sock: %v", err)
		}
		defer os.Remove(consoleSock)
	}

	vm, err := vmm.New(cfg, console)
	if err != nil {
		if errors.Is(err, vmm.ErrInvalidConfig) {
			return fail(exitUsage, "%v", err)
		}
		return fail(exitCrash, "%v", err)
	}
	defer vm.Close()
	if apiSock != "" {
		srv, err := vmm.Listen(vm, apiSock)
		if err != nil {
			return fail(exitUsage, "--api-sock: %v", err)
		}
		defer os.Remove(apiSock)
		defer srv.Close()
	} else if isTerminal(os.Stdin) {
		// Interactive: raw keys to the guest, Ctrl-A x to quit.
		restore := rawTerminal(int(os.Stdin.Fd()))
		defer restore()
		console.ReadInputFrom(&escapeFilter{r: os.Stdin, onQuit: func() { vm.Do(vmm.ActionStop, 0) }})
	} else {
		console.ReadInputFrom(os.Stdin)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for range sigs {
			vm.Do(vmm.ActionStop, 0)
		}
	}()

	quit := make(chan os.Signal, 1)
	signal.Notify(quit, syscall.SIGQUIT)
	go func() {
		<-quit
		dumpAndExit(vm)
	}()

	end, err := vm.Run()
	if err != nil {
		return fail(exitCrash, "%v", err)
	}
	switch end.Kind {
	case vmm.EndPoweroff:
		return exitPoweroff
	case vmm.EndReboot:
		return exitReboot
	case vmm.EndStopped:
		return exitStopped
	default:
		fmt.Fprintf(os.Stderr, "gureum-vmm: guest %s: %s\n", end.Kind, end.Reason)
		return exitCrash
	}
}

// dumpAndExit answers SIGQUIT: the machine's state, then every
// goroutine's stack (what Go prints on SIGQUIT by itself), then exit.
func dumpAndExit(vm *vmm.VM) {
	fmt.Fprintln(os.Stderr, "gureum-vmm: SIGQUIT: machine state")
	vm.DebugState(os.Stderr)
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	fmt.Fprintf(os.Stderr, "gureum-vmm: SIGQUIT: goroutines\n%s\n", buf[:n])
	os.Exit(exitCrash)
}

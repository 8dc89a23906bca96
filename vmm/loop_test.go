package vmm

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func startLoop(t *testing.T) *eventLoop {
	t.Helper()
	l, err := newEventLoop()
	if err != nil {
		t.Fatal(err)
	}
	l.start()
	t.Cleanup(l.stop)
	return l
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Posted functions run in order, one at a time, and call waits for its
// function.
func TestLoopPostOrderAndCall(t *testing.T) {
	l := startLoop(t)
	var got []int
	for i := range 100 {
		if !l.Post(func() { got = append(got, i) }) {
			t.Fatal("Post refused on a running loop")
		}
	}
	var n int
	if !l.call(func() { n = len(got) }) {
		t.Fatal("call refused on a running loop")
	}
	if n != 100 {
		t.Fatalf("call ran after %d of 100 posted functions", n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("function %d ran in place %d", v, i)
		}
	}
}

// Device code never runs concurrently: posted work, fd callbacks and vCPU
// accesses all hold the device lock.
func TestLoopDeviceLockExcludes(t *testing.T) {
	l := startLoop(t)
	var inside atomic.Int32
	var overlaps atomic.Int32
	body := func() {
		if inside.Add(1) != 1 {
			overlaps.Add(1)
		}
		time.Sleep(10 * time.Microsecond)
		inside.Add(-1)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	var buf [8]byte
	var kicks atomic.Int32
	remove, err := l.watch(efd, false, func() {
		unix.Read(efd, buf[:])
		body()
		kicks.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				l.access(body)
				l.Post(body)
				unix.Write(efd, eventfdAdd1[:])
			}
		}()
	}
	wg.Wait()
	l.call(func() {})
	if overlaps.Load() != 0 {
		t.Fatalf("device code overlapped %d times", overlaps.Load())
	}
	if kicks.Load() == 0 {
		t.Fatal("the watched eventfd never called its function")
	}
}

// A level-triggered watch calls again while the fd stays ready; an
// edge-triggered one calls once per arrival; a watch made on a ready fd
// reports at once; after removal nothing is called and the fd is closed.
func TestLoopWatch(t *testing.T) {
	l := startLoop(t)
	level, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(level, eventfdAdd1[:]) // ready before the watch
	var levelCalls atomic.Int32
	var buf [8]byte
	removeLevel, err := l.watch(level, false, func() {
		if levelCalls.Add(1) == 3 {
			unix.Read(level, buf[:]) // ready until read
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three calls of a level-triggered watch", func() bool { return levelCalls.Load() >= 3 })
	l.call(func() {})
	settled := levelCalls.Load()
	time.Sleep(20 * time.Millisecond)
	if n := levelCalls.Load(); n != settled {
		t.Fatalf("level-triggered watch called %d more times after the fd was read empty", n-settled)
	}

	p := make([]int, 2)
	if err := unix.Pipe2(p, unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[1])
	var edgeCalls atomic.Int32
	removeEdge, err := l.watch(p[0], true, func() { edgeCalls.Add(1) }) // never reads
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(p[1], []byte("x"))
	waitFor(t, "an edge-triggered call", func() bool { return edgeCalls.Load() == 1 })
	time.Sleep(20 * time.Millisecond)
	if n := edgeCalls.Load(); n != 1 {
		t.Fatalf("edge-triggered watch called %d times for one arrival", n)
	}
	unix.Write(p[1], []byte("y"))
	waitFor(t, "a second edge-triggered call", func() bool { return edgeCalls.Load() == 2 })

	removeEdge()
	removeEdge() // twice is harmless
	removeLevel()
	unix.Write(p[1], []byte("z"))
	l.call(func() {}) // a turn of the loop closes removed fds
	l.call(func() {})
	if n := edgeCalls.Load(); n != 2 {
		t.Fatalf("removed watch called again (%d calls)", n)
	}
	if _, err := unix.FcntlInt(uintptr(level), unix.F_GETFD, 0); err != unix.EBADF {
		t.Fatalf("fd of a removed watch still open (fcntl: %v)", err)
	}
}

// After stop, posts and calls are refused, vCPU accesses report the
// machine gone, and removal closes fds at once.
func TestLoopStop(t *testing.T) {
	l, err := newEventLoop()
	if err != nil {
		t.Fatal(err)
	}
	l.start()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	remove, err := l.watch(efd, false, func() {})
	if err != nil {
		t.Fatal(err)
	}
	l.stop()
	l.stop() // idempotent
	if l.Post(func() { t.Error("posted function ran after stop") }) {
		t.Fatal("Post accepted after stop")
	}
	if l.call(func() { t.Error("called function ran after stop") }) {
		t.Fatal("call reported success after stop")
	}
	if l.access(func() { t.Error("access ran after stop") }) {
		t.Fatal("access reported success after stop")
	}
	remove()
	if _, err := unix.FcntlInt(uintptr(efd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Fatalf("fd removed after stop still open (fcntl: %v)", err)
	}
}

package tap

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// seqpacketPair returns a Tap over one end of a SOCK_SEQPACKET socketpair
// and the other end as a raw fd. A seqpacket socket keeps message
// boundaries, so each read returns one "frame", as a tap does.
func seqpacketPair(t *testing.T) (*Tap, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	tp, err := FromFile(os.NewFile(uintptr(fds[0]), "pair"), "pair")
	if err != nil {
		unix.Close(fds[1])
		t.Fatalf("FromFile: %v", err)
	}
	t.Cleanup(func() {
		tp.Close()
		unix.Close(fds[1])
	})
	return tp, fds[1]
}

func TestReadWriteScatterGather(t *testing.T) {
	tp, peer := seqpacketPair(t)

	// Nothing queued: a read must not block and must say "empty".
	buf := make([]byte, 64)
	if _, err := tp.ReadPacket(buf); !IsEmpty(err) {
		t.Fatalf("read of empty fd: got %v, want EAGAIN", err)
	}

	// One frame written by the peer lands split across two buffers.
	if _, err := unix.Write(peer, []byte("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	a, b := make([]byte, 4), make([]byte, 64)
	n, err := tp.ReadPacket(a, b)
	if err != nil || n != 16 {
		t.Fatalf("ReadPacket = %d, %v; want 16, nil", n, err)
	}
	if string(a) != "0123" || string(b[:12]) != "456789abcdef" {
		t.Fatalf("scattered read got %q %q", a, b[:12])
	}

	// A frame gathered from three buffers arrives as one message.
	if n, err := tp.WritePacket([]byte("ab"), nil, []byte("cde")); err != nil || n != 5 {
		t.Fatalf("WritePacket = %d, %v; want 5, nil", n, err)
	}
	got := make([]byte, 64)
	n, err = unix.Read(peer, got)
	if err != nil || string(got[:n]) != "abcde" {
		t.Fatalf("peer read %q, %v; want \"abcde\"", got[:n], err)
	}
}

func TestWaitReadable(t *testing.T) {
	tp, peer := seqpacketPair(t)
	ctx := context.Background()

	woke := make(chan error, 1)
	go func() { woke <- tp.WaitReadable(ctx) }()
	select {
	case err := <-woke:
		t.Fatalf("WaitReadable returned %v before anything was sent", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := unix.Write(peer, []byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if err != nil {
			t.Fatalf("WaitReadable: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitReadable did not wake for a queued frame")
	}

	// The frame is still queued (waiting does not read), and readiness
	// that arrived before the call must not be lost: the wait returns at
	// once.
	done := make(chan error, 1)
	go func() { done <- tp.WaitReadable(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("second WaitReadable: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitReadable missed a frame queued before it was called")
	}
	if n, err := tp.ReadPacket(make([]byte, 8)); err != nil || n != 1 {
		t.Fatalf("ReadPacket = %d, %v", n, err)
	}
}

func TestWaitReadableCancelAndClose(t *testing.T) {
	tp, _ := seqpacketPair(t)

	ctx, cancel := context.WithCancel(context.Background())
	woke := make(chan error, 1)
	go func() { woke <- tp.WaitReadable(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-woke:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled wait returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not wake WaitReadable")
	}

	// The cancellation's deadline must not leak into the next wait.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := tp.WaitReadable(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait after a cancelled wait returned %v, want it to block until its own deadline", err)
	}

	go func() { woke <- tp.WaitReadable(context.Background()) }()
	time.Sleep(20 * time.Millisecond)
	tp.Close()
	select {
	case err := <-woke:
		if err == nil {
			t.Fatal("WaitReadable on a closed tap returned nil")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake WaitReadable")
	}
}

func TestSetOffloadOnNonTapFails(t *testing.T) {
	tp, _ := seqpacketPair(t)
	if err := tp.SetOffload(OffloadCsum); err == nil {
		t.Fatal("SetOffload on a socket succeeded")
	}
}

func TestBadName(t *testing.T) {
	if _, err := Open("a-name-that-is-far-too-long-for-ifnamsiz"); err == nil {
		t.Fatal("Open accepted a name longer than IFNAMSIZ")
	}
}

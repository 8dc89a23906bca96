package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// ICMP echo over a raw IPv4 socket. The harness carries its own pinger
// rather than depend on ping(8) being installed; it follows ping -f's
// pacing: the next request goes out as soon as the previous reply is back,
// or after 10 ms without one.

const (
	icmpEchoReply   = 0
	icmpEchoRequest = 8
	echoPayloadLen  = 56 // ping's default
	floodInterval   = 10 * time.Millisecond
)

// openICMPSocket opens a raw ICMP socket inside network namespace ns. A
// socket belongs to the namespace of the thread that created it and stays
// there, so only its creation needs the namespace: a locked OS thread
// enters it, makes the socket and goes back. If going back fails the
// thread is left locked, and Go ends it with the goroutine.
func openICMPSocket(ns string) (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		fd, back, err := socketInNetns(ns)
		if back {
			runtime.UnlockOSThread()
		}
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

// socketInNetns does the work of openICMPSocket on a locked thread; back
// reports whether the thread is in its original namespace again.
func socketInNetns(ns string) (fd int, back bool, err error) {
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, true, fmt.Errorf("open own network namespace: %w", err)
	}
	defer unix.Close(orig)
	target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, true, fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return -1, true, fmt.Errorf("enter namespace %s: %w", ns, err)
	}
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		err = fmt.Errorf("raw icmp socket: %w", err)
	} else if err = enableReceiveStamps(fd); err != nil {
		unix.Close(fd)
		fd = -1
	}
	if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr != nil {
		return fd, false, err
	}
	return fd, true, err
}

// internetChecksum is the one's-complement sum of 16-bit words used by
// IPv4 and ICMP (RFC 1071).
func internetChecksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// echoRequest builds an ICMP echo request with a filled-in checksum.
func echoRequest(id, seq uint16) []byte {
	p := make([]byte, 8+echoPayloadLen)
	p[0] = icmpEchoRequest
	binary.BigEndian.PutUint16(p[4:], id)
	binary.BigEndian.PutUint16(p[6:], seq)
	for i := 8; i < len(p); i++ {
		p[i] = byte(i)
	}
	binary.BigEndian.PutUint16(p[2:], internetChecksum(p))
	return p
}

// parseEchoReply reads a packet as a raw ICMP socket delivers it (IPv4
// header first) and returns the sequence number if it is an echo reply
// with identifier id and a correct checksum.
func parseEchoReply(pkt []byte, id uint16) (uint16, bool) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return 0, false
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < 20 || len(pkt) < ihl+8 || pkt[9] != unix.IPPROTO_ICMP {
		return 0, false
	}
	icmp := pkt[ihl:]
	if icmp[0] != icmpEchoReply || icmp[1] != 0 || internetChecksum(icmp) != 0 {
		return 0, false
	}
	if binary.BigEndian.Uint16(icmp[4:]) != id {
		return 0, false
	}
	return binary.BigEndian.Uint16(icmp[6:]), true
}

// echoStats is the outcome of a flood.
type echoStats struct {
	sent, received int
	elapsed        time.Duration // first request until the last reply
}

// enableReceiveStamps asks the kernel to stamp every packet the socket
// receives with the time it arrived (SO_TIMESTAMPNS), as ping(8) does.
func enableReceiveStamps(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("icmp socket: receive time stamps: %w", err)
	}
	return nil
}

// receiveStamp returns the kernel's receive time stamp (SCM_TIMESTAMPNS)
// among a packet's control messages, or the zero time if there is none.
func receiveStamp(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			return time.Unix(sec, nsec)
		}
	}
	return time.Time{}
}

// pinger sends echo requests to one IPv4 address over a raw socket.
type pinger struct {
	fd   int
	dst  unix.SockaddrInet4
	id   uint16
	seen map[uint16]bool
	buf  []byte
	oob  []byte // a received packet's control messages
	// arrived is the kernel's receive time stamp of the last new reply
	// that receive took in; zero if the socket does not stamp
	// (enableReceiveStamps).
	arrived time.Time
}

func newPinger(fd int, dst [4]byte) *pinger {
	return &pinger{fd: fd, dst: unix.SockaddrInet4{Addr: dst}, id: uint16(os.Getpid()),
		seen: map[uint16]bool{}, buf: make([]byte, 1500), oob: make([]byte, 128)}
}

func (p *pinger) send(seq uint16) error {
	if err := unix.Sendto(p.fd, echoRequest(p.id, seq), 0, &p.dst); err != nil {
		return fmt.Errorf("send echo request: %w", err)
	}
	return nil
}

// receive waits until the reply to seq arrives or until deadline, and
// returns how many new replies (to any request) came in meanwhile, plus
// the time the harness read the last one (p.arrived has the kernel's
// time stamp of its arrival).
func (p *pinger) receive(seq uint16, deadline time.Time) (n int, last time.Time, err error) {
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return n, last, nil
		}
		fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
		ms := int(wait.Milliseconds())
		if ms == 0 {
			ms = 1
		}
		if _, err := unix.Poll(fds, ms); err != nil && !errors.Is(err, unix.EINTR) {
			return n, last, fmt.Errorf("poll icmp socket: %w", err)
		}
		for {
			k, oobn, _, _, err := unix.Recvmsg(p.fd, p.buf, p.oob, unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				break
			}
			if err != nil {
				return n, last, fmt.Errorf("receive echo reply: %w", err)
			}
			got, ok := parseEchoReply(p.buf[:k], p.id)
			if !ok || p.seen[got] {
				continue
			}
			p.seen[got] = true
			n++
			last = time.Now()
			p.arrived = receiveStamp(p.oob[:oobn])
			if got == seq {
				return n, last, nil
			}
		}
	}
}

// waitAlive sends one request every 200 ms until the first reply, which
// also settles ARP on the host side, or until timeout.
func (p *pinger) waitAlive(ctx context.Context, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for seq := uint16(60000); time.Now().Before(end); seq++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := p.send(seq); err != nil {
			return err
		}
		n, _, err := p.receive(seq, time.Now().Add(200*time.Millisecond))
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
	return fmt.Errorf("no echo reply from the guest within %v", timeout)
}

// flood sends count requests with ping -f's pacing, bounded by limit, then
// waits up to a second for late replies.
func (p *pinger) flood(ctx context.Context, count int, limit time.Duration) (echoStats, error) {
	var st echoStats
	start := time.Now()
	end := start.Add(limit)
	var last time.Time
	for seq := 0; seq < count && time.Now().Before(end); seq++ {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if err := p.send(uint16(seq)); err != nil {
			return st, err
		}
		st.sent++
		n, t, err := p.receive(uint16(seq), minTime(time.Now().Add(floodInterval), end))
		if err != nil {
			return st, err
		}
		st.received += n
		if n > 0 {
			last = t
		}
	}
	if st.received < st.sent {
		n, t, err := p.receive(uint16(st.sent-1), time.Now().Add(time.Second))
		if err != nil {
			return st, err
		}
		st.received += n
		if n > 0 {
			last = t
		}
	}
	if !last.IsZero() {
		st.elapsed = last.Sub(start)
	}
	return st, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

package main

import (
	"context"
	"encoding/binary"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ipv4Packet wraps an ICMP message in a minimal IPv4 header, as a raw
// socket hands it over.
func ipv4Packet(icmp []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(icmp)))
	h[8] = 64
	h[9] = unix.IPPROTO_ICMP
	return append(h, icmp...)
}

// replyTo turns an echo request into the reply a guest would send.
func replyTo(req []byte) []byte {
	r := append([]byte(nil), req...)
	r[0] = icmpEchoReply
	r[2], r[3] = 0, 0
	binary.BigEndian.PutUint16(r[2:], internetChecksum(r))
	return r
}

func TestEchoRequestAndReply(t *testing.T) {
	req := echoRequest(0x1234, 7)
	if req[0] != icmpEchoRequest || len(req) != 8+echoPayloadLen {
		t.Fatalf("request % x", req)
	}
	if internetChecksum(req) != 0 {
		t.Fatal("request checksum does not verify")
	}
	seq, ok := parseEchoReply(ipv4Packet(replyTo(req)), 0x1234)
	if !ok || seq != 7 {
		t.Fatalf("reply parsed as seq %d ok %v", seq, ok)
	}
	if _, ok := parseEchoReply(ipv4Packet(replyTo(req)), 0x9999); ok {
		t.Fatal("accepted a reply with another identifier")
	}
	if _, ok := parseEchoReply(ipv4Packet(req), 0x1234); ok {
		t.Fatal("accepted our own request as a reply")
	}
	bad := replyTo(req)
	bad[20] ^= 0xff
	if _, ok := parseEchoReply(ipv4Packet(bad), 0x1234); ok {
		t.Fatal("accepted a reply with a bad checksum")
	}
	if _, ok := parseEchoReply(ipv4Packet(replyTo(req))[:24], 0x1234); ok {
		t.Fatal("accepted a truncated packet")
	}
}

func TestInternetChecksumOddLength(t *testing.T) {
	// RFC 1071: an odd last byte is padded with zero on the right.
	if got, want := internetChecksum([]byte{0x01, 0x02, 0x03}), ^uint16(0x0102+0x0300); got != want {
		t.Fatalf("checksum %#x, want %#x", got, want)
	}
}

// rawICMPSocket opens a raw ICMP socket for the test, closed at its end.
// Raw sockets need root: the test is skipped without, or fails when
// GUREUM_REQUIRE_KVM=1.
func rawICMPSocket(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("GUREUM_REQUIRE_KVM") == "1" {
			t.Fatal("needs root for a raw ICMP socket, and GUREUM_REQUIRE_KVM=1 forbids skipping")
		}
		t.Skip("needs root for a raw ICMP socket: skipping")
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestFloodLoopback floods 127.0.0.1 (the kernel answers) to check pacing
// and counting end to end.
func TestFloodLoopback(t *testing.T) {
	fd := rawICMPSocket(t)
	p := newPinger(fd, [4]byte{127, 0, 0, 1})
	ctx := context.Background()
	if err := p.waitAlive(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := p.flood(ctx, 200, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.sent != 200 || st.received != 200 || st.elapsed <= 0 {
		t.Fatalf("flood: %+v, want 200 sent and answered", st)
	}
	// Replies come back at once, so the 10 ms pacing never waits: 200
	// requests take well under 200 × 10 ms.
	if st.elapsed > time.Second {
		t.Fatalf("flood took %v: pacing waited for replies that had arrived", st.elapsed)
	}
}

// TestRoundTripsLoopback pings 127.0.0.1 as the vpc part pings its guest:
// every round trip is measured to the kernel's receive time stamp, which
// comes before the harness reads the reply.
func TestRoundTripsLoopback(t *testing.T) {
	fd := rawICMPSocket(t)
	if err := enableReceiveStamps(fd); err != nil {
		t.Fatal(err)
	}
	p := newPinger(fd, [4]byte{127, 0, 0, 1})
	rtts, reads, sent, err := p.roundTrips(context.Background(), 20, time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if sent != 20 || len(rtts) != 20 || len(reads) != 20 {
		t.Fatalf("sent %d, %d round trips, %d reads; want 20 each", sent, len(rtts), len(reads))
	}
	if p.arrived.IsZero() {
		t.Fatal("no kernel receive time stamp on the replies")
	}
	for i := range rtts {
		if rtts[i] <= 0 || rtts[i] > reads[i] {
			t.Errorf("ping %d: %v to the stamp, %v to the read", i, rtts[i], reads[i])
		}
	}
}

func TestReceiveStampWithout(t *testing.T) {
	if got := receiveStamp(nil); !got.IsZero() {
		t.Fatalf("no control messages gave %v", got)
	}
	if got := receiveStamp([]byte{1, 2, 3}); !got.IsZero() {
		t.Fatalf("a cut control message gave %v", got)
	}
}

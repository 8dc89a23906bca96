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

// TestFloodLoopback floods 127.0.0.1 (the kernel answers) to check pacing
// and counting end to end. Raw sockets need root.
func TestFloodLoopback(t *testing.T) {
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
	defer unix.Close(fd)
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

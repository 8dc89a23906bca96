package net

import (
	"encoding/binary"
	"errors"
	"fmt"

	"gureum/network/tap"
)

// The virtio_net_hdr_v1 that precedes every frame (virtio 1.x, 5.1.6):
//
//	flags u8         NEEDS_CSUM: the checksum is partial, complete it
//	gso_type u8      NONE, TCPV4, UDP, TCPV6 (+ ECN bit): cut into segments
//	hdr_len le16     length of the headers repeated in every segment (hint)
//	gso_size le16    payload bytes per segment
//	csum_start le16  where the checksummed range starts
//	csum_offset le16 where, after csum_start, the checksum goes
//	num_buffers le16 receive only: chains this frame spans
//
// On transmit the guest fills it and the host kernel acts on it: with
// NEEDS_CSUM it computes the checksum, with a GSO type it segments. On
// receive the tap fills it the same way, if the offloads allow (SetOffload),
// and the guest's stack finishes the work or skips checks the host already
// did.
const (
	hdrLen = tap.VnetHdrLen

	hdrFlags      = 0
	hdrGSOType    = 1
	hdrGSOSize    = 4
	hdrCsumStart  = 6
	hdrCsumOffset = 8
	hdrNumBuffers = 10
)

// Header flags and GSO types.
const (
	flagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM

	gsoNone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	gsoTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	gsoUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP
	gsoTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	gsoECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN, or'ed into a TCP type
)

// Frame size limits. maxFrame is the largest Ethernet frame the device
// moves: a 64 KiB IP packet with Ethernet and VLAN headers, rounded as
// other VMMs do. ethHeaderLen is the smallest frame the tap accepts.
const (
	maxFrame     = 65550
	maxPacket    = hdrLen + maxFrame
	ethHeaderLen = 14
)

// ErrBadHeader is returned (wrapped) for a transmitted virtio_net_hdr the
// device refuses.
var ErrBadHeader = errors.New("bad virtio-net header")

// checkTxHeader validates the header a guest put in front of a frame of
// frameLen bytes (header excluded), given the negotiated features. hdr is
// the device's private copy, so the guest cannot change it between this
// check and the write to the tap.
//
// The host kernel validates the header again; this check exists so that a
// guest gets exactly the offloads it negotiated, and so that bad frames are
// counted as errors at the device rather than vanishing in the kernel.
func checkTxHeader(hdr *[hdrLen]byte, features uint64, frameLen int) error {
	has := func(bit uint) bool { return features&(1<<bit) != 0 }
	flags := hdr[hdrFlags]
	gso := hdr[hdrGSOType]
	if flags&^flagNeedsCsum != 0 {
		// DATA_VALID and RSC_INFO exist only on receive.
		return fmt.Errorf("%w: flags %#x", ErrBadHeader, flags)
	}
	if flags&flagNeedsCsum != 0 {
		if !has(FeatureCsum) {
			return fmt.Errorf("%w: partial checksum without VIRTIO_NET_F_CSUM", ErrBadHeader)
		}
		start := int(binary.LittleEndian.Uint16(hdr[hdrCsumStart:]))
		off := int(binary.LittleEndian.Uint16(hdr[hdrCsumOffset:]))
		if start+off+2 > frameLen {
			return fmt.Errorf("%w: checksum at %d+%d outside a %d-byte frame", ErrBadHeader, start, off, frameLen)
		}
	}
	if gso == gsoNone {
		return nil
	}
	if gso&gsoECN != 0 {
		return fmt.Errorf("%w: GSO with ECN not negotiated", ErrBadHeader)
	}
	switch gso {
	case gsoTCPv4:
		if !has(FeatureHostTSO4) {
			return fmt.Errorf("%w: TCPv4 segmentation not negotiated", ErrBadHeader)
		}
	case gsoTCPv6:
		if !has(FeatureHostTSO6) {
			return fmt.Errorf("%w: TCPv6 segmentation not negotiated", ErrBadHeader)
		}
	case gsoUDP:
		if !has(FeatureHostUFO) {
			return fmt.Errorf("%w: UDP fragmentation not negotiated", ErrBadHeader)
		}
	default:
		return fmt.Errorf("%w: GSO type %#x", ErrBadHeader, gso)
	}
	if binary.LittleEndian.Uint16(hdr[hdrGSOSize:]) == 0 {
		return fmt.Errorf("%w: GSO with segment size 0", ErrBadHeader)
	}
	return nil
}

// tapOffloads maps the negotiated receive-side (GUEST_*) features to the tap
// offloads that let the host hand the guest such frames. The kernel refuses
// segmentation offloads without checksum offload, and so does the spec, so
// without GUEST_CSUM nothing is enabled.
func tapOffloads(features uint64) uint {
	has := func(bit uint) bool { return features&(1<<bit) != 0 }
	if !has(FeatureGuestCsum) {
		return 0
	}
	flags := uint(tap.OffloadCsum)
	if has(FeatureGuestTSO4) {
		flags |= tap.OffloadTSO4
	}
	if has(FeatureGuestTSO6) {
		flags |= tap.OffloadTSO6
	}
	if has(FeatureGuestECN) && flags&(tap.OffloadTSO4|tap.OffloadTSO6) != 0 {
		flags |= tap.OffloadTSOECN
	}
	if has(FeatureGuestUFO) {
		flags |= tap.OffloadUFO
	}
	return flags
}

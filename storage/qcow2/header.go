package qcow2

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// The qcow2 header is big-endian and starts at byte 0 of the file. Version
// 2 ends at byte 72; version 3 adds feature bit masks, the refcount width
// and the header's own length, followed by optional header extensions
// (type, length, payload padded to 8 bytes) up to an end marker.
const (
	magic = 0x514649fb // "QFI\xfb"

	offVersion          = 4
	offBackingOffset    = 8
	offBackingSize      = 16
	offClusterBits      = 20
	offSize             = 24
	offCryptMethod      = 32
	offL1Size           = 36
	offL1Offset         = 40
	offRefTableOffset   = 48
	offRefTableClusters = 56
	offNbSnapshots      = 60
	offSnapshotsOffset  = 64
	offIncompatible     = 72
	offCompatible       = 80
	offAutoclear        = 88
	offRefcountOrder    = 96
	offHeaderLength     = 100
	offCompressionType  = 104

	headerV2Length = 72
	headerV3Length = 104
	// headerWrittenLength is the v3 header we write: it includes the
	// compression type byte and pads to a multiple of 8.
	headerWrittenLength = 112
)

// Feature bits. An incompatible bit we do not know means we cannot read
// the image correctly, so it is refused; a compatible bit can be ignored;
// an autoclear bit is cleared by a writer that does not know it, telling
// the tool that set it that its extra data may be stale.
const (
	incompatDirty       = 1 << 0 // refcounts may be wrong (lazy refcounts)
	incompatCorrupt     = 1 << 1 // qemu found corruption; writes unsafe
	incompatDataFile    = 1 << 2 // data lives in an external file
	incompatCompression = 1 << 3 // compression_type field is not zlib
	incompatExtendedL2  = 1 << 4 // 128-bit L2 entries with subclusters
	incompatKnown       = incompatDirty | incompatCorrupt | incompatDataFile | incompatCompression | incompatExtendedL2
	// Compatible bit 0 (lazy refcounts) lets a writer skip refcount
	// updates until close; we always keep refcounts exact, which the bit
	// permits, so it needs no handling.
)

// Header extension types.
const (
	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extFeatureNames  = 0x6803f857
	extBitmaps       = 0x23852875
	extEncryption    = 0x0537be77
	extDataFile      = 0x44415441
)

// Limits that keep a corrupt header from making us allocate absurd
// amounts of memory; they are the same order as QEMU's.
const (
	minClusterBits   = 9  // 512 bytes
	maxClusterBits   = 21 // 2 MiB
	maxL1Bytes       = 32 << 20
	maxRefTableBytes = 8 << 20
	maxBackingName   = 1023
	maxVirtualSize   = 1 << 55 // a bound well above any real disk
)

// header is the decoded, validated image header.
type header struct {
	version         uint32
	backingOffset   uint64
	backingSize     uint32
	clusterBits     uint32
	size            uint64
	l1Size          uint32
	l1Offset        uint64
	refTableOffset  uint64
	refTableCluster uint32
	nbSnapshots     uint32
	snapshotsOffset uint64
	incompatible    uint64
	compatible      uint64
	autoclear       uint64
	refcountOrder   uint32
	headerLength    uint32

	backingFile   string
	backingFormat string
	// extensionsEnd is the first byte after the header extensions; the
	// backing file name may follow it.
	extensionsEnd uint64
}

func (h *header) clusterSize() uint64 { return 1 << h.clusterBits }

// parseHeader decodes and validates the first cluster of an image. It
// needs fileSize to check that every table it names lies inside the file.
// Every error says which field is wrong.
func parseHeader(buf []byte, fileSize int64) (*header, error) {
	be := binary.BigEndian
	if len(buf) < headerV2Length {
		return nil, fmt.Errorf("file of %d bytes is too short for a qcow2 header", len(buf))
	}
	if m := be.Uint32(buf); m != magic {
		return nil, fmt.Errorf("bad magic %#x: not a qcow2 image", m)
	}
	h := &header{
		version:         be.Uint32(buf[offVersion:]),
		backingOffset:   be.Uint64(buf[offBackingOffset:]),
		backingSize:     be.Uint32(buf[offBackingSize:]),
		clusterBits:     be.Uint32(buf[offClusterBits:]),
		size:            be.Uint64(buf[offSize:]),
		l1Size:          be.Uint32(buf[offL1Size:]),
		l1Offset:        be.Uint64(buf[offL1Offset:]),
		refTableOffset:  be.Uint64(buf[offRefTableOffset:]),
		refTableCluster: be.Uint32(buf[offRefTableClusters:]),
		nbSnapshots:     be.Uint32(buf[offNbSnapshots:]),
		snapshotsOffset: be.Uint64(buf[offSnapshotsOffset:]),
		refcountOrder:   4,
		headerLength:    headerV2Length,
	}
	switch h.version {
	case 2:
	case 3:
		if len(buf) < headerV3Length {
			return nil, fmt.Errorf("file too short for a version 3 header")
		}
		h.incompatible = be.Uint64(buf[offIncompatible:])
		h.compatible = be.Uint64(buf[offCompatible:])
		h.autoclear = be.Uint64(buf[offAutoclear:])
		h.refcountOrder = be.Uint32(buf[offRefcountOrder:])
		h.headerLength = be.Uint32(buf[offHeaderLength:])
		if h.headerLength < headerV3Length {
			return nil, fmt.Errorf("header_length %d is below the version 3 minimum %d", h.headerLength, headerV3Length)
		}
	default:
		return nil, fmt.Errorf("unsupported qcow2 version %d", h.version)
	}
	if h.clusterBits < minClusterBits || h.clusterBits > maxClusterBits {
		return nil, fmt.Errorf("cluster_bits %d outside [%d, %d]", h.clusterBits, minClusterBits, maxClusterBits)
	}
	cs := h.clusterSize()
	if uint64(h.headerLength) > cs || uint64(h.headerLength) > uint64(len(buf)) {
		return nil, fmt.Errorf("header_length %d larger than the first cluster", h.headerLength)
	}
	if unknown := h.incompatible &^ incompatKnown; unknown != 0 {
		return nil, fmt.Errorf("unknown incompatible feature bits %#x: image needs a newer reader", unknown)
	}
	if h.incompatible&incompatDataFile != 0 {
		return nil, fmt.Errorf("external data files are not supported")
	}
	if h.incompatible&incompatExtendedL2 != 0 {
		return nil, fmt.Errorf("extended L2 entries (subclusters) are not supported")
	}
	if h.headerLength > offCompressionType {
		if len(buf) <= offCompressionType {
			return nil, fmt.Errorf("file too short for compression_type")
		}
		if ct := buf[offCompressionType]; ct != 0 {
			return nil, fmt.Errorf("compression type %d (zstd) is not supported, only zlib", ct)
		}
	}
	if m := be.Uint32(buf[offCryptMethod:]); m != 0 {
		return nil, fmt.Errorf("encrypted images (crypt_method %d) are not supported", m)
	}
	if h.refcountOrder > 6 {
		return nil, fmt.Errorf("refcount_order %d above the maximum 6", h.refcountOrder)
	}
	if h.size > maxVirtualSize {
		return nil, fmt.Errorf("virtual size %d too large", h.size)
	}
	// L1 table: must be cluster aligned, inside the file, and big enough
	// to map the whole virtual size.
	if err := checkTable("L1 table", h.l1Offset, uint64(h.l1Size)*8, maxL1Bytes, cs, fileSize); err != nil {
		return nil, err
	}
	if need := l1EntriesFor(h.size, h.clusterBits); uint64(h.l1Size) < need {
		return nil, fmt.Errorf("l1_size %d cannot map %d bytes (needs %d entries)", h.l1Size, h.size, need)
	}
	if h.refTableCluster == 0 {
		return nil, fmt.Errorf("refcount_table_clusters is 0")
	}
	if err := checkTable("refcount table", h.refTableOffset, uint64(h.refTableCluster)*cs, maxRefTableBytes, cs, fileSize); err != nil {
		return nil, err
	}
	if h.nbSnapshots != 0 {
		if err := checkTable("snapshot table", h.snapshotsOffset, 1, 1<<30, cs, fileSize); err != nil {
			return nil, err
		}
	}
	if h.version == 3 {
		if err := h.parseExtensions(buf); err != nil {
			return nil, err
		}
	}
	if h.backingOffset != 0 {
		if h.backingSize == 0 || h.backingSize > maxBackingName {
			return nil, fmt.Errorf("backing file name length %d outside [1, %d]", h.backingSize, maxBackingName)
		}
		end := h.backingOffset + uint64(h.backingSize)
		if h.backingOffset < uint64(h.headerLength) || end > cs || end > uint64(len(buf)) {
			return nil, fmt.Errorf("backing file name at [%d, %d) is not inside the first cluster after the header", h.backingOffset, end)
		}
		h.backingFile = string(buf[h.backingOffset:end])
	} else if h.backingFormat != "" {
		return nil, fmt.Errorf("backing format %q given without a backing file", h.backingFormat)
	}
	return h, nil
}

// checkTable validates a table's offset and length against the file.
func checkTable(what string, off, length, maxLen, cs uint64, fileSize int64) error {
	if off == 0 || off%cs != 0 {
		return fmt.Errorf("%s offset %#x is not a non-zero multiple of the cluster size %d", what, off, cs)
	}
	if length > maxLen {
		return fmt.Errorf("%s of %d bytes exceeds the %d-byte limit", what, length, maxLen)
	}
	if off > uint64(fileSize) || length > uint64(fileSize)-off {
		return fmt.Errorf("%s [%#x, +%d) reaches past the end of the %d-byte file", what, off, length, fileSize)
	}
	return nil
}

// parseExtensions walks the header extensions after the v3 header. They
// must all lie in the first cluster.
func (h *header) parseExtensions(buf []byte) error {
	be := binary.BigEndian
	limit := min(uint64(len(buf)), h.clusterSize())
	off := uint64(h.headerLength)
	off = (off + 7) &^ 7
	for {
		if off+8 > limit {
			return fmt.Errorf("header extensions run past the first cluster at byte %d", off)
		}
		typ := be.Uint32(buf[off:])
		n := uint64(be.Uint32(buf[off+4:]))
		off += 8
		if typ == extEnd {
			h.extensionsEnd = off
			return nil
		}
		if n > limit-off {
			return fmt.Errorf("header extension %#x of %d bytes runs past the first cluster", typ, n)
		}
		data := buf[off : off+n]
		switch typ {
		case extBackingFormat:
			h.backingFormat = string(data)
		case extEncryption:
			return fmt.Errorf("full disk encryption header found: encrypted images are not supported")
		case extDataFile:
			return fmt.Errorf("external data file extension found: external data files are not supported")
		case extFeatureNames, extBitmaps:
			// Names of feature bits are for humans; bitmaps are an
			// autoclear feature that we drop by clearing its bit.
		}
		off += (n + 7) &^ 7
	}
}

// l1EntriesFor is the number of L1 entries that map size bytes: each L2
// table (one cluster of 8-byte entries) maps clusterSize/8 clusters.
func l1EntriesFor(size uint64, clusterBits uint32) uint64 {
	l2Bits := clusterBits - 3
	shift := clusterBits + l2Bits
	return (size + 1<<shift - 1) >> shift
}

// encodeHeader writes a fresh v3 header with extensions and the backing
// name into the first cluster buf (which must be zeroed). It is used by
// Create and by the header rewrites of Resize.
func encodeHeader(buf []byte, h *header) error {
	be := binary.BigEndian
	be.PutUint32(buf, magic)
	be.PutUint32(buf[offVersion:], 3)
	be.PutUint32(buf[offClusterBits:], h.clusterBits)
	be.PutUint64(buf[offSize:], h.size)
	be.PutUint32(buf[offL1Size:], h.l1Size)
	be.PutUint64(buf[offL1Offset:], h.l1Offset)
	be.PutUint64(buf[offRefTableOffset:], h.refTableOffset)
	be.PutUint32(buf[offRefTableClusters:], h.refTableCluster)
	be.PutUint64(buf[offIncompatible:], h.incompatible)
	be.PutUint64(buf[offCompatible:], h.compatible)
	be.PutUint64(buf[offAutoclear:], h.autoclear)
	be.PutUint32(buf[offRefcountOrder:], h.refcountOrder)
	be.PutUint32(buf[offHeaderLength:], headerWrittenLength)
	off := headerWrittenLength
	putExt := func(typ uint32, data []byte) {
		be.PutUint32(buf[off:], typ)
		be.PutUint32(buf[off+4:], uint32(len(data)))
		copy(buf[off+8:], data)
		off += 8 + (len(data)+7)&^7
	}
	if h.backingFormat != "" {
		putExt(extBackingFormat, []byte(h.backingFormat))
	}
	putExt(extFeatureNames, featureNameTable())
	putExt(extEnd, nil)
	if h.backingFile != "" {
		if len(h.backingFile) > maxBackingName || off+len(h.backingFile) > len(buf) {
			return fmt.Errorf("backing file name of %d bytes does not fit the header", len(h.backingFile))
		}
		be.PutUint64(buf[offBackingOffset:], uint64(off))
		be.PutUint32(buf[offBackingSize:], uint32(len(h.backingFile)))
		copy(buf[off:], h.backingFile)
	}
	return nil
}

// featureNameTable names the feature bits for tools such as qemu-img
// info: entries of type (0 incompatible, 1 compatible, 2 autoclear), bit
// number and a 46-byte name.
func featureNameTable() []byte {
	names := []struct {
		typ, bit byte
		name     string
	}{
		{0, 0, "dirty bit"}, {0, 1, "corrupt bit"}, {0, 2, "external data file"},
		{0, 3, "compression type"}, {0, 4, "extended L2 entries"},
		{1, 0, "lazy refcounts"},
		{2, 0, "bitmaps"}, {2, 1, "raw external data"},
	}
	out := make([]byte, 48*len(names))
	for i, n := range names {
		out[48*i] = n.typ
		out[48*i+1] = n.bit
		copy(out[48*i+2:48*i+48], n.name)
	}
	return out
}

// log2 of a power of two.
func log2(x uint64) uint32 { return uint32(bits.TrailingZeros64(x)) }

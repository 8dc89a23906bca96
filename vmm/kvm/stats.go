package kvm

import (
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Stats reads KVM's binary statistics for a VM or vCPU
// (Documentation/virt/kvm/api.rst, "KVM_GET_STATS_FD"): a header, a table
// of descriptors naming each counter, then the counter values. The
// descriptors are read once; Read re-reads only the values with one pread.
type Stats struct {
	fd         int
	dataOffset int64
	names      []string
	offsets    []uint32 // byte offset of each value in the data block
	sizes      []uint16 // number of u64 values (histograms have several)
	dataLen    int
}

func openStats(fd int) (*Stats, error) {
	unix.CloseOnExec(fd)
	s := &Stats{fd: fd}
	if err := s.readDescriptors(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

func (s *Stats) readDescriptors() error {
	hb := make([]byte, 24)
	if _, err := unix.Pread(s.fd, hb, 0); err != nil {
		return fmt.Errorf("read stats header: %w", err)
	}
	h := StatsHeader{
		Flags:      binary.LittleEndian.Uint32(hb[0:]),
		NameSize:   binary.LittleEndian.Uint32(hb[4:]),
		NumDesc:    binary.LittleEndian.Uint32(hb[8:]),
		IDOffset:   binary.LittleEndian.Uint32(hb[12:]),
		DescOffset: binary.LittleEndian.Uint32(hb[16:]),
		DataOffset: binary.LittleEndian.Uint32(hb[20:]),
	}
	if h.NumDesc > 4096 || h.NameSize > 4096 {
		return fmt.Errorf("stats header: %d descriptors with %d-byte names is implausible", h.NumDesc, h.NameSize)
	}
	descSize := StatsDescSize + int(h.NameSize)
	db := make([]byte, descSize*int(h.NumDesc))
	if _, err := unix.Pread(s.fd, db, int64(h.DescOffset)); err != nil {
		return fmt.Errorf("read stats descriptors: %w", err)
	}
	s.dataOffset = int64(h.DataOffset)
	for i := 0; i < int(h.NumDesc); i++ {
		d := db[i*descSize:]
		size := binary.LittleEndian.Uint16(d[6:])
		off := binary.LittleEndian.Uint32(d[8:])
		name := string(d[StatsDescSize : StatsDescSize+int(h.NameSize)])
		if j := strings.IndexByte(name, 0); j >= 0 {
			name = name[:j]
		}
		s.names = append(s.names, name)
		s.offsets = append(s.offsets, off)
		s.sizes = append(s.sizes, size)
		if end := int(off) + 8*int(size); end > s.dataLen {
			s.dataLen = end
		}
	}
	return nil
}

// Names lists the statistics this fd offers.
func (s *Stats) Names() []string { return s.names }

// Read returns the current value of every single-valued statistic by name
// (histograms are left out).
func (s *Stats) Read() (map[string]uint64, error) {
	buf := make([]byte, s.dataLen)
	if _, err := unix.Pread(s.fd, buf, s.dataOffset); err != nil {
		return nil, fmt.Errorf("read stats: %w", err)
	}
	out := make(map[string]uint64, len(s.names))
	for i, n := range s.names {
		if s.sizes[i] != 1 {
			continue
		}
		out[n] = binary.LittleEndian.Uint64(buf[s.offsets[i]:])
	}
	return out, nil
}

// Close closes the stats fd.
func (s *Stats) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

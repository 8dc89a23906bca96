package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// statusSizes reads the "kB" fields of /proc/PID/status that matter here:
// VmRSS, every page of the process in RAM, and its parts RssAnon (private
// anonymous: heap, stacks), RssFile (pages of mapped files: the binary and
// its libraries, shared with every other process mapping them) and
// RssShmem (shared anonymous memory, which includes gureum's guest RAM).
func statusSizes(pid int) (map[string]int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	defer f.Close()
	sizes := map[string]int64{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok || (k != "VmRSS" && k != "RssAnon" && k != "RssFile" && k != "RssShmem") {
			continue
		}
		n, err := parseKiB(v)
		if err != nil {
			return nil, fmt.Errorf("pid %d status %s: %w", pid, k, err)
		}
		sizes[k] = n
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	if _, ok := sizes["VmRSS"]; !ok {
		return nil, fmt.Errorf("pid %d: no VmRSS in status (a kernel thread or a zombie?)", pid)
	}
	return sizes, nil
}

// parseKiB parses the value part of "VmRSS:    1234 kB".
func parseKiB(v string) (int64, error) {
	f := strings.Fields(v)
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf("unexpected size %q", v)
	}
	return strconv.ParseInt(f[0], 10, 64)
}

// mapping is one entry of /proc/PID/smaps: a virtual memory area.
type mapping struct {
	start, end uint64
	perms      string // e.g. "rw-s"
	path       string // "" for private anonymous memory
	sizeKiB    int64
	rssKiB     int64
}

// anonymous reports whether the area is RAM not backed by a file: private
// anonymous memory has no path; shared anonymous memory (what gureum-vmm
// maps for the guest) shows as "/dev/zero (deleted)"; memfd-backed memory
// as "/memfd:NAME (deleted)".
func (m mapping) anonymous() bool {
	return m.path == "" || m.path == "/dev/zero (deleted)" ||
		strings.HasPrefix(m.path, "/memfd:") || strings.HasPrefix(m.path, "[anon")
}

// readSmaps lists the memory areas of a process.
func readSmaps(pid int) ([]mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, fmt.Errorf("read smaps of pid %d: %w", pid, err)
	}
	defer f.Close()
	return parseSmaps(f)
}

// parseSmaps parses smaps text: each area starts with a header line
// "START-END PERMS OFFSET DEV INODE [PATH]" followed by "Key: value kB"
// lines, of which Size and Rss are kept.
func parseSmaps(r io.Reader) ([]mapping, error) {
	var out []mapping
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if key, val, ok := strings.Cut(line, ":"); ok && !strings.Contains(fields[0], "-") {
			if len(out) == 0 {
				return nil, fmt.Errorf("smaps: %q before the first area", line)
			}
			m := &out[len(out)-1]
			switch key {
			case "Size":
				n, err := parseKiB(val)
				if err != nil {
					return nil, fmt.Errorf("smaps Size: %w", err)
				}
				m.sizeKiB = n
			case "Rss":
				n, err := parseKiB(val)
				if err != nil {
					return nil, fmt.Errorf("smaps Rss: %w", err)
				}
				m.rssKiB = n
			}
			continue
		}
		if len(fields) < 5 {
			return nil, fmt.Errorf("smaps: bad area line %q", line)
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			return nil, fmt.Errorf("smaps: bad address range %q", fields[0])
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("smaps: bad address range %q", fields[0])
		}
		m := mapping{start: start, end: end, perms: fields[1]}
		if len(fields) > 5 {
			// The path may contain spaces ("/dev/zero (deleted)").
			m.path = strings.Join(fields[5:], " ")
		}
		out = append(out, m)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("smaps: %w", err)
	}
	return out, nil
}

// guestRAM picks the mapping that holds guest RAM: the largest readable
// and writable anonymous area of at least guestKiB. Large PROT_NONE
// reservations (the Go runtime makes some) are not RAM and are skipped.
func guestRAM(maps []mapping, guestKiB int64) (mapping, bool) {
	var best mapping
	found := false
	for _, m := range maps {
		if !m.anonymous() || m.sizeKiB < guestKiB || !strings.HasPrefix(m.perms, "rw") {
			continue
		}
		if !found || m.sizeKiB > best.sizeKiB {
			best, found = m, true
		}
	}
	return best, found
}

// memoryFigures is the resident memory of a VMM split into the guest RAM
// the guest has touched and the rest, which is the VMM's own cost; fileKiB
// is the part of the own cost that is pages of the VMM's binary and
// libraries (shared by every VMM process of the host).
type memoryFigures struct {
	rssKiB   int64
	guestKiB int64
	ownKiB   int64
	fileKiB  int64
}

// measureMemory reads VmRSS and smaps of pid. smaps is read right after
// status so the two describe (nearly) the same moment of an idle guest.
func measureMemory(pid int, guestMiB int) (memoryFigures, error) {
	sizes, err := statusSizes(pid)
	if err != nil {
		return memoryFigures{}, err
	}
	rss := sizes["VmRSS"]
	maps, err := readSmaps(pid)
	if err != nil {
		return memoryFigures{}, err
	}
	ram, ok := guestRAM(maps, int64(guestMiB)<<10)
	if !ok {
		return memoryFigures{}, fmt.Errorf("pid %d: no anonymous read-write mapping of %d MiB or more", pid, guestMiB)
	}
	return memoryFigures{rssKiB: rss, guestKiB: ram.rssKiB, ownKiB: rss - ram.rssKiB, fileKiB: sizes["RssFile"]}, nil
}

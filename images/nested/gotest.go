package nested

import (
	"regexp"
	"strings"
)

// TestResult is one top-level test of a `go test -v` run, as read back
// from L1's console.
type TestResult struct {
	Name    string
	Status  string // "PASS", "FAIL", "SKIP", or "NONE" when no result line came (crash, timeout)
	Elapsed string // as go test printed it, e.g. "12.34s"
	Output  string // its lines from "=== RUN" to its result line, subtests included
}

var (
	runLine    = regexp.MustCompile(`^=== RUN\s+(\S+)`)
	resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([^)]*)\)`)
)

// ParseTestOutput reads the -test.v output of a test binary and returns its
// top-level tests in the order they started. Lines of L1's own heartbeat
// are dropped. Tests run one after another here (no t.Parallel at top
// level), so every line between a test's start and its result is its own.
func ParseTestOutput(out string) []TestResult {
	var results []TestResult
	index := map[string]int{}
	current := -1
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.HasPrefix(line, MarkerAlive) {
			continue
		}
		if m := runLine.FindStringSubmatch(line); m != nil && !strings.Contains(m[1], "/") {
			index[m[1]] = len(results)
			results = append(results, TestResult{Name: m[1], Status: "NONE"})
			current = len(results) - 1
		}
		if current >= 0 {
			results[current].Output += line + "\n"
		}
		if m := resultLine.FindStringSubmatch(line); m != nil && !strings.Contains(m[2], "/") {
			if i, ok := index[m[2]]; ok {
				results[i].Status, results[i].Elapsed = m[1], m[3]
				if i == current {
					current = -1
				}
			}
		}
	}
	return results
}

// TestSection returns the part of L1's console between the tests-begin and
// tests-end markers (to the end if the end marker never came).
func TestSection(console string) string {
	i := strings.Index(console, MarkerTestsBegin)
	if i < 0 {
		return ""
	}
	s := console[i:]
	if nl := strings.Index(s, "\n"); nl >= 0 {
		s = s[nl+1:]
	}
	if j := strings.Index(s, MarkerTestsEnd); j >= 0 {
		s = s[:j]
	}
	return s
}

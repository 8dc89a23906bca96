package main

import (
	"io"
	"strings"
	"testing"
)

func TestEscapeFilter(t *testing.T) {
	quits := 0
	f := &escapeFilter{r: strings.NewReader("ab\x01\x01c\x01xd\x01zq"), onQuit: func() { quits++ }}
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "ab\x01cdq" || quits != 1 {
		t.Fatalf("got %q with %d quits, want %q with 1", got, quits, "ab\x01cdq")
	}
}

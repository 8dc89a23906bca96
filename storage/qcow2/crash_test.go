package qcow2_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gureum/storage/qcow2"
)

// The crash test runs a writer in a child process (this test binary run
// again with crashChildEnv set), kills it with SIGKILL at a random moment
// and checks the image the way a host would after the crash: no
// corruption (leaks are allowed and repaired), and every byte written
// before the last flush the child reported reads back.

const (
	crashChildEnv = "GUREUM_QCOW2_CRASH_CHILD" // "path seed clusterSize"
	crashDiskSize = 4 << 20
	crashRounds   = 60
)

// crashOp is one step of the child's deterministic workload.
type crashOp struct {
	kind  int // 0 write, 1 discard, 2 flush
	off   int64
	n     int64
	data  []byte
	flush bool // flush after this op
}

// nextCrashOp draws the next op; parent and child draw the same sequence
// from the same seed.
func nextCrashOp(r *rand.Rand) crashOp {
	op := crashOp{kind: 0}
	if r.IntN(8) == 0 {
		op.kind = 1
	}
	op.n = 1 + r.Int64N(40000)
	if r.IntN(3) == 0 {
		op.n = 4096 * (1 + r.Int64N(8))
	}
	op.off = r.Int64N(crashDiskSize - op.n)
	if op.kind == 0 {
		op.data = make([]byte, op.n)
		for i := range op.data {
			op.data[i] = byte(r.Uint32())
		}
	}
	op.flush = r.IntN(5) == 0
	return op
}

func crashChild(spec string) {
	f := strings.Fields(spec)
	seed, _ := strconv.ParseUint(f[1], 10, 64)
	cs, _ := strconv.Atoi(f[2])
	img, err := qcow2.Open(f[0], qcow2.Options{CacheBytes: 6 * cs})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	r := rand.New(rand.NewPCG(seed, 99))
	out := os.Stdout
	for i := 0; ; i++ {
		op := nextCrashOp(r)
		fmt.Fprintf(out, "start %d\n", i)
		if op.kind == 0 {
			_, err = img.WriteAt(op.data, op.off)
		} else {
			err = img.Discard(op.off, op.n)
		}
		if err == nil && op.flush {
			if err = img.Flush(); err == nil {
				fmt.Fprintf(out, "flushed %d\n", i+1)
			}
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
	}
}

func TestCrashConsistency(t *testing.T) {
	if spec := os.Getenv(crashChildEnv); spec != "" {
		crashChild(spec)
		return
	}
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var path string
	var disk []byte // what the image holds for sure before this round
	leaky, totalOps, totalFlushed := 0, 0, 0
	for round := 0; round < crashRounds; round++ {
		if round%10 == 0 {
			// A fresh image every ten rounds, alternating cluster sizes
			// (512-byte clusters make the refcount table grow).
			cs := []int64{4096, 512, 65536}[round/10%3]
			path = filepath.Join(dir, fmt.Sprintf("crash%d.qcow2", round))
			if err := qcow2.Create(path, crashDiskSize, qcow2.CreateOptions{ClusterSize: cs}); err != nil {
				t.Fatal(err)
			}
			disk = make([]byte, crashDiskSize)
		}
		img, err := qcow2.Open(path, qcow2.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		cs := img.ClusterSize()
		img.Close()
		seed := r.Uint64()
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashConsistency$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", crashChildEnv, path, seed, cs))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		outc := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(stdout)
			outc <- b
		}()
		time.Sleep(time.Duration(20+r.IntN(200)) * time.Millisecond)
		cmd.Process.Kill()
		out := <-outc
		cmd.Wait()

		flushed, started := 0, -1
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "error":
				t.Fatalf("round %d: child failed: %s", round, sc.Text())
			case "flushed":
				flushed, _ = strconv.Atoi(f[1])
			case "start":
				started, _ = strconv.Atoi(f[1])
			}
		}
		totalOps += started + 1
		totalFlushed += flushed
		// Replay: ops before the last flush are certain; bytes that a later
		// op (up to the one in progress) touched may hold either content.
		unknown := make([]bool, crashDiskSize)
		opr := rand.New(rand.NewPCG(seed, 99))
		for i := 0; i <= started; i++ {
			op := nextCrashOp(opr)
			if i < flushed {
				if op.kind == 0 {
					copy(disk[op.off:], op.data)
				} else {
					clear(disk[op.off : op.off+op.n])
				}
				continue
			}
			for k := op.off; k < op.off+op.n; k++ {
				unknown[k] = true
			}
		}

		res, err := qcow2.Check(path)
		if err != nil {
			t.Fatalf("round %d: check: %v", round, err)
		}
		if res.Corruptions != 0 {
			t.Fatalf("round %d (killed after %d ops, %d flushed): %d corruptions: %v", round, started+1, flushed, res.Corruptions, res.Problems)
		}
		if res.Leaks != 0 {
			leaky++
			if res, err = qcow2.Repair(path); err != nil || res.LeaksFixed != res.Leaks {
				t.Fatalf("round %d: repair: %v (%+v)", round, err, res)
			}
			if res, err = qcow2.Check(path); err != nil || !res.OK() {
				t.Fatalf("round %d: check after repair: %v %+v", round, err, res)
			}
		}
		img, err = qcow2.Open(path, qcow2.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, crashDiskSize)
		if _, err := img.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		img.Close()
		for k := range got {
			if !unknown[k] && got[k] != disk[k] {
				t.Fatalf("round %d (killed after %d ops, %d flushed): byte %d reads %#x, flushed content %#x",
					round, started+1, flushed, k, got[k], disk[k])
			}
		}
		// What the image holds now is the next round's certain content.
		disk = got
	}
	t.Logf("%d rounds, %d ops started, %d covered by a flush; %d rounds left leaks that repair removed",
		crashRounds, totalOps, totalFlushed, leaky)
}

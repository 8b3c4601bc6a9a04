package journal

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The crash test runs ingestion in a child process (this test binary
// re-executed with crashEnv set), SIGKILLs it at a random moment, and then
// checks that every index the child reported as acknowledged holds the
// right entry, that Verify passes (and proves consistency with the
// previous round's checkpoint), and that appending resumes.

const (
	crashEnv     = "VIGIL_JOURNAL_CRASH_DIR"
	crashSeedEnv = "VIGIL_JOURNAL_CRASH_SEED"
	crashRounds  = 120
	// A small dedup bound freezes and merges dedup runs every few
	// batches, so crashes land inside freezes and merges too.
	crashDedupKeys = 128
)

// crashRaw derives a record's bytes from its id, so the parent can check
// what the child wrote without being told.
func crashRaw(id string) []byte {
	sum := sha256.Sum256([]byte(id))
	pad := strings.Repeat(hex.EncodeToString(sum[:]), 1+int(sum[0])%8)
	return []byte(`{"Id":"` + id + `","Operation":"MailItemsAccessed","Pad":"` + pad + `"}`)
}

func crashOptions(rng *rand.Rand) Options {
	o := quietOptions()
	o.SegmentSize = 64 << 10 // rotate often: rotation is a crash window too
	o.Compress = rng.IntN(3) == 0
	o.DedupMemoryKeys = crashDedupKeys
	return o
}

func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashRecovery")
	}
	seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	rng := rand.New(rand.NewPCG(seed, 2))
	ctx := context.Background()
	j, err := Open(ctx, dir, crashOptions(rng))
	if err != nil {
		fmt.Printf("open-error %v\n", err)
		os.Exit(3)
	}
	os.Stdout.WriteString("ready\n")
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wrng := rand.New(rand.NewPCG(seed, uint64(w)+10))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				n := 1 + wrng.IntN(20)
				es := make([]Entry, n)
				for i := range es {
					id := fmt.Sprintf("r-%d-%d-%d-%d", seed, w, k, i)
					if seed > 0 && wrng.IntN(10) == 0 {
						// Re-deliver a record of an earlier round.
						id = fmt.Sprintf("r-%d-%d-%d-%d", wrng.Uint64N(seed), w, wrng.IntN(3), 0)
					}
					es[i] = Entry{Source: "m365.ual", Origin: "crash", RecordID: id, Raw: crashRaw(id)}
				}
				acks, err := j.AppendBatch(ctx, es)
				if err != nil {
					fmt.Printf("append-error %v\n", err)
					os.Exit(3)
				}
				var b strings.Builder
				for i, a := range acks {
					fmt.Fprintf(&b, "ack %d %s\n", a.Index, es[i].RecordID)
				}
				// One write per batch: pipe writes below 4 KiB are atomic.
				os.Stdout.WriteString(b.String())
			}
		}()
	}
	wg.Wait()
}

func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("in the child")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(42, 42))
	var prevCheckpoint []byte
	totalAcks, cutTails, runDebris := 0, 0, 0
	// Every record id stored, with its index: none may be stored twice.
	stored := map[string]uint64{}
	checked := uint64(0)
	for round := 0; round < crashRounds; round++ {
		cmd := exec.Command(exe, "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashSeedEnv+"="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Half the rounds die at a random point after Open returned, the
		// others possibly inside Open's recovery.
		delay := time.Duration(rng.IntN(30_000)) * time.Microsecond
		afterReady := round%2 == 0
		var timer *time.Timer
		kill := func() { cmd.Process.Kill() }
		if !afterReady {
			timer = time.AfterFunc(delay, kill)
		}
		acks := map[uint64]string{}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "ready":
				if afterReady {
					timer = time.AfterFunc(delay, kill)
				}
			case strings.HasPrefix(line, "ack "):
				f := strings.Fields(line)
				idx, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil || len(f) != 3 {
					t.Fatalf("round %d: bad line %q", round, line)
				}
				acks[idx] = f[2]
			default:
				t.Fatalf("round %d: child said %q; stderr: %s", round, line, stderr.String())
			}
		}
		if timer != nil {
			timer.Stop()
		}
		kill()
		werr := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(werr, &ee) && ee.ExitCode() == 3 {
			t.Fatalf("round %d: child failed: %s", round, stderr.String())
		}
		totalAcks += len(acks)

		// The journal must verify as the crash left it, and extend the
		// previous round's checkpoint.
		res, err := Verify(t.Context(), dir, VerifyOptions{Checkpoint: prevCheckpoint})
		if err != nil {
			t.Fatalf("round %d: verify after crash: %v", round, err)
		}
		for _, n := range res.Notes {
			if strings.Contains(n, "torn tail") {
				cutTails++
			}
			if strings.Contains(n, "dedup run") {
				runDebris++ // a crash inside a freeze or a merge
			}
		}
		opts := quietOptions()
		opts.DedupMemoryKeys = crashDedupKeys
		j, err := Open(t.Context(), dir, opts)
		if err != nil {
			t.Fatalf("round %d: open after crash: %v", round, err)
		}
		err = j.Read(t.Context(), checked, func(i uint64, e *Entry) error {
			if first, ok := stored[e.RecordID]; ok {
				return fmt.Errorf("record %q stored twice, at %d and %d", e.RecordID, first, i)
			}
			stored[e.RecordID] = i
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		checked = j.Size()
		for idx := range acks {
			if idx >= j.Size() {
				t.Fatalf("round %d: acknowledged index %d missing (size %d)", round, idx, j.Size())
			}
		}
		if len(acks) > 0 {
			lo := uint64(1 << 63)
			for idx := range acks {
				lo = min(lo, idx)
			}
			err := j.Read(t.Context(), lo, func(i uint64, e *Entry) error {
				if id, ok := acks[i]; ok {
					if e.RecordID != id || !bytes.Equal(e.Raw, crashRaw(id)) {
						return fmt.Errorf("index %d holds record %q, acknowledged as %q", i, e.RecordID, id)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		cp := j.Latest()
		if err := j.Close(); err != nil {
			t.Fatalf("round %d: close: %v", round, err)
		}
		if res, err := Verify(t.Context(), dir, VerifyOptions{Checkpoint: prevCheckpoint}); err != nil || len(res.Notes) != 0 {
			t.Fatalf("round %d: verify after recovery: %v %v", round, err, res.Notes)
		}
		prevCheckpoint = cp.Note
	}
	res := mustVerify(t, dir)
	t.Logf("%d rounds, %d acknowledged appends, %d entries, %d torn tails seen, %d dedup runs (%d left half-done by a crash)", crashRounds, totalAcks, res.Entries, cutTails, res.DedupRuns, runDebris)
	if totalAcks == 0 {
		t.Fatal("no child ever acknowledged an append")
	}
}

package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-audit/vigil/internal/detect"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/progress"
	"github.com/vigil-audit/vigil/internal/sanitize"
	"github.com/vigil-audit/vigil/internal/source"
)

func init() {
	register(command{name: "ingest", summary: "decode audit logs and append them to the tamper-evident journal", run: runIngest})
	register(command{name: "verify", summary: "recompute and check every hash, frame and signed checkpoint of a journal", run: runVerify})
	register(command{name: "checkpoint", summary: "print the journal's latest signed checkpoint (signing one if needed)", run: runCheckpoint})
	register(command{name: "prove", summary: "print an RFC 6962 inclusion proof for one journal entry", run: runProve})
	register(command{name: "export", summary: "write journal entries back out as JSON lines, raw bytes verbatim", run: runExport})
}

func dataFlag(fs *flag.FlagSet) *string {
	return fs.String("data", "", "journal directory (required)")
}

func needData(dir string) error {
	if dir == "" {
		return usageError("--data DIR is required")
	}
	return nil
}

// parseNoArgs parses the flags of a subcommand that works on the journal
// in --data and takes no positional arguments. data is read after parsing.
func parseNoArgs(fs *flag.FlagSet, args []string, data *string) error {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := needData(*data); err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("unexpected arguments %q", pos)
	}
	return nil
}

// openLatest opens the journal in dir for reading its signed state (no
// checkpoint timer) and returns it with its latest signed checkpoint,
// signing one if appends came after the last. The caller closes it.
func openLatest(ctx context.Context, dir string, stderr io.Writer) (*journal.Journal, journal.Checkpoint, error) {
	j, err := journal.Open(ctx, dir, journal.Options{Logger: journalLogger(stderr), CheckpointInterval: -1})
	if err != nil {
		return nil, journal.Checkpoint{}, journalErr(err)
	}
	cp, err := j.Checkpoint(ctx)
	if err != nil {
		_ = j.Close() // the checkpoint error is the one to report
		return nil, journal.Checkpoint{}, err
	}
	return j, cp, nil
}

// journalLogger sends the journal's own log lines (torn tails cut, keys
// created, segments expired) to stderr.
func journalLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func runIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ingest", stderr)
	data := dataFlag(fs)
	quarantine := fs.String("quarantine", "vigil-quarantine.jsonl", "file for records that cannot be decoded (created only if there are any)")
	compress := fs.Bool("compress", false, "store new blocks zstd-compressed")
	retentionDays := fs.Int("retention-days", 180, "expire raw bytes of segments received more than this many days ago (hashes are kept)")
	origin := fs.String("origin", "", "log name for checkpoints, used only when the journal is created")
	quiet := fs.Bool("quiet", false, "nothing on stderr but warnings and errors (no progress, no informational log lines); the summary on stdout stays")
	limits := addLimitFlags(fs)
	noIndex := fs.Bool("no-index", false, "do not bring the investigation index (DIR/index) up to date")
	memFlag := indexMemoryFlag(fs)
	setHelp(fs, stderr, helpText{synopsis: "ingest --data DIR [flags] PATH...", summary: "Decodes audit logs and appends every record to the tamper-evident journal (duplicates are skipped).",
		args: []argHelp{{"PATH...", "log files, directories (walked) or - for stdin"}}})
	paths, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := needData(*data); err != nil {
		return err
	}
	if len(paths) == 0 {
		return usageError("no input paths (use - for stdin)")
	}
	if *retentionDays <= 0 {
		return usageError("--retention-days must be positive")
	}
	memory, err := parseIndexMemory(*memFlag)
	if err != nil {
		return err
	}
	if err := limits.Validate(); err != nil {
		return usageError("%v", err)
	}
	if *retentionDays < 180 {
		fmt.Fprintf(stderr, "vigil ingest: warning: retention of %d days is below the 180 days vigil recommends\n", *retentionDays)
	}
	logger := journalLogger(stderr)
	if *quiet {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	j, err := journal.Open(ctx, *data, journal.Options{
		Compress:  *compress,
		Retention: time.Duration(*retentionDays) * 24 * time.Hour,
		Origin:    *origin,
		Logger:    logger,
	})
	if err != nil {
		return journalErr(err)
	}
	defer j.Close()

	q := &lazyFile{path: *quarantine}
	defer q.Close()
	srcOpts := source.Options{Quarantine: q, Limits: *limits}
	bar := progress.New(stderr, "ingest")
	if *quiet {
		bar = nil
	}
	if bar != nil {
		srcOpts.Progress = func(done, total int64) { bar.Update(done, total, "") }
	}

	// Like hunt, never read back our own quarantine from an earlier run.
	inputs, skipped, err := inputFiles(paths, *quarantine)
	if err != nil {
		if errors.Is(err, source.ErrNoInput) {
			return usageError("no log files found in %s", strings.Join(paths, " "))
		}
		return err
	}

	// Decoding and appending overlap: batches go to one appender while
	// the decoders carry on.
	const batchSize = 1024
	batches := make(chan []journal.Entry, 4)
	var appended, dups uint64
	appendErr := make(chan error, 1)
	go func() {
		var err error
		for b := range batches {
			if err != nil {
				continue
			}
			var acks []journal.Ack
			if acks, err = j.AppendBatch(ctx, b); err == nil {
				for _, a := range acks {
					if a.Duplicate {
						dups++
					} else {
						appended++
					}
				}
			}
		}
		appendErr <- err
	}()
	cur := make([]journal.Entry, 0, batchSize)
	var prev *event.Event
	// Detection over the journal (vigil serve, vigil reindex) reads it in
	// order, and judges a mail read against the sign-ins held then: the
	// inputs of one ingest (a tenant's mail and sign-in exports, each in
	// time order) are appended merged by event time, as hunt reads them,
	// not one file after the other (a mail export appended after a month
	// of sign-ins would find their tokens long forgotten). An export
	// newest first (Purview's, Graph's) is read back to front, as hunt
	// reads it; one that cannot be (compressed) is appended as it is, and
	// said so. Another input not in order comes out merged as it is;
	// stdin and more than source.MaxMerged inputs are read one after the
	// other.
	read := source.ReadPaths
	if source.Mergeable(inputs) {
		read = source.ReadMerged
		srcOpts.Reverse = true
	}
	// Records more than the reordering window behind the newest before
	// them are late for detection over the journal: counted and said.
	var newest time.Time
	var behind int64
	emit := func(e *event.Event) error {
		if !e.Time.IsZero() {
			if e.Time.Before(newest.Add(-detect.DefaultReorder)) {
				behind++
			} else if e.Time.After(newest) {
				newest = e.Time
			}
		}
		// The journal keeps records, not events: the events of one
		// record (a Workspace activity's events[]) share its Raw and make
		// one entry.
		if prev != nil && source.SameRecord(prev, e) {
			return nil
		}
		prev = e
		cur = append(cur, source.Entry(e))
		if len(cur) == batchSize {
			select {
			case batches <- cur:
			case <-ctx.Done():
				return ctx.Err()
			}
			cur = make([]journal.Entry, 0, batchSize)
		}
		return nil
	}
	st, rerr := read(ctx, inputs, srcOpts, emit)
	if errors.Is(rerr, source.ErrNotReversible) {
		// Nothing was emitted: read again, forwards.
		fmt.Fprintf(stderr, "vigil ingest: %s; appending it as it is\n", sanitize.Line(rerr.Error()))
		srcOpts.Reverse = false
		st, rerr = read(ctx, inputs, srcOpts, emit)
	}
	if len(cur) > 0 {
		batches <- cur
	}
	close(batches)
	aerr := <-appendErr
	if bar != nil {
		bar.Done()
	}
	if aerr != nil {
		return fmt.Errorf("append: %w", aerr)
	}
	st.Skipped = append(skipped, st.Skipped...)
	// Damaged inputs are named below; what was read of them is kept.
	if rerr = damagedInputs(rerr); rerr != nil {
		return fmt.Errorf("read inputs: %w", rerr)
	}
	if err := q.Close(); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	expired, err := j.Expire(ctx, time.Now())
	if err != nil {
		return fmt.Errorf("expire: %w", err)
	}
	cp, err := j.Checkpoint(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ingested %d files, %d records: appended %d, duplicate %d, quarantined %d", st.Files, st.Records, appended, dups, st.Quarantined)
	if st.Quarantined > 0 {
		fmt.Fprintf(stdout, "%s -> %s", countList(st.Reasons), sanitize.Line(*quarantine))
	}
	fmt.Fprintln(stdout)
	printInputs(stdout, st)
	if behind > 0 {
		// A compressed export newest first cannot be read back to front.
		fmt.Fprintf(stderr, "vigil ingest: %d records came more than %s behind a newer one (an input newest first, compressed, or not in time order): detection over the journal (vigil serve, vigil reindex) counts them late; decompress such an export and ingest it into a new data directory to append it in time order\n", behind, detect.DefaultReorder)
	}
	if expired > 0 {
		fmt.Fprintf(stdout, "expired raw bytes of %d entries older than %d days (their hashes are kept)\n", expired, *retentionDays)
	}
	fmt.Fprintf(stdout, "journal: %d entries, root %s\ncheckpoint:\n%s", cp.Size, cp.Root, cp.Note)
	if err := j.Close(); err != nil {
		return err
	}
	if err := indexAfterIngest(ctx, *data, *noIndex, time.Duration(*retentionDays)*24*time.Hour, memory, stdout); err != nil {
		return err
	}
	return inputsErr(st)
}

// entryOf turns a decoded event into a journal entry. Raw is the record's
// bytes verbatim; ReadPaths lets emit keep the event, so no copy. A record
// without an id of its own is deduplicated by its content.
// journalErr turns journal damage into a verdict (exit 1); anything else
// stays an error (exit 2).
func journalErr(err error) error {
	var d *journal.Damage
	if errors.As(err, &d) {
		return &exitError{code: 1, msg: "journal damaged: " + d.Error()}
	}
	return err
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", stderr)
	data := dataFlag(fs)
	cpFile := fs.String("checkpoint", "", "a signed checkpoint saved earlier: also prove the journal extends it")
	keyFile := fs.String("key", "", "verifier key file (default: the journal's own journal.pub; pass a copy kept elsewhere for real assurance)")
	setHelp(fs, stderr, helpText{synopsis: "verify --data DIR [--checkpoint FILE] [--key FILE]",
		summary: "Recomputes and checks every hash, frame and signed checkpoint of a journal: exit 0 when intact, 1 naming the first damage found."})
	err := parseNoArgs(fs, args, data)
	if err != nil {
		return err
	}
	var opts journal.VerifyOptions
	if *keyFile != "" {
		if opts.VerifierKey, err = journal.ReadVerifierKey(*keyFile); err != nil {
			return err
		}
	}
	if *cpFile != "" {
		if opts.Checkpoint, err = os.ReadFile(*cpFile); err != nil {
			return fmt.Errorf("--checkpoint: %w", err)
		}
	}
	start := time.Now()
	res, err := journal.Verify(ctx, *data, opts)
	if err != nil {
		return journalErr(err)
	}
	fmt.Fprintf(stdout, "verified %d entries, root %s\n", res.Entries, res.Root)
	secs := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "  %d segments, %d entry bytes in %.2fs (%.0f MB/s), %d signed checkpoints (latest size %d)\n",
		res.Segments, res.EntryBytes, secs, float64(res.EntryBytes)/1e6/max(secs, 1e-9), res.Checkpoints, res.Latest.Size)
	if res.Expired > 0 {
		fmt.Fprintf(stdout, "  raw bytes of entries [0, %d) expired by retention; their hashes were checked against the signed checkpoints\n", res.Expired)
	}
	if res.Given != nil {
		fmt.Fprintf(stdout, "  extends the given checkpoint (size %d, root %s): consistency proof of %d hashes verified\n",
			res.Given.Size, res.Given.Root, len(res.ConsistencyProof))
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stdout, "  note: %s\n", n)
	}
	return nil
}

func runCheckpoint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("checkpoint", stderr)
	data := dataFlag(fs)
	setHelp(fs, stderr, helpText{synopsis: "checkpoint --data DIR",
		summary: "Prints the latest signed checkpoint (C2SP signed-note format); save it to check the journal later with verify --checkpoint."})
	if err := parseNoArgs(fs, args, data); err != nil {
		return err
	}
	j, cp, err := openLatest(ctx, *data, stderr)
	if err != nil {
		return err
	}
	defer j.Close()
	if _, err := stdout.Write(cp.Note); err != nil {
		return err
	}
	return j.Close()
}

type proofJSON struct {
	Index       uint64   `json:"index"`
	TreeSize    uint64   `json:"tree_size"`
	LeafHash    string   `json:"leaf_hash"`
	LeafData    string   `json:"leaf_data,omitempty"`
	Root        string   `json:"root"`
	Proof       []string `json:"proof"`
	Checkpoint  string   `json:"checkpoint"`
	VerifierKey string   `json:"verifier_key"`
}

func runProve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("prove", stderr)
	data := dataFlag(fs)
	index := fs.Int64("index", -1, "entry index (required)")
	asJSON := fs.Bool("json", false, "print JSON (hashes in base64) instead of text")
	setHelp(fs, stderr, helpText{synopsis: "prove --data DIR --index I [--json]",
		summary: "Prints an RFC 6962 inclusion proof of entry I in the tree of the latest signed checkpoint."})
	if err := parseNoArgs(fs, args, data); err != nil {
		return err
	}
	if *index < 0 {
		return usageError("--index I is required")
	}
	j, cp, err := openLatest(ctx, *data, stderr)
	if err != nil {
		return err
	}
	defer j.Close()
	i := uint64(*index)
	if i >= cp.Size {
		return usageError("--index %d: the journal holds %d entries", i, cp.Size)
	}
	leaf, err := j.LeafHash(i)
	if err != nil {
		return err
	}
	p, err := j.InclusionProof(i, cp.Size)
	if err != nil {
		return err
	}
	var leafData []byte
	err = j.Read(ctx, i, func(_ uint64, e *journal.Entry) error {
		leafData = journal.EncodeEntry(nil, e)
		return errStopRead
	})
	expired := errors.Is(err, journal.ErrExpired)
	if err != nil && !errors.Is(err, errStopRead) && !expired {
		return err
	}
	if *asJSON {
		out := proofJSON{Index: i, TreeSize: cp.Size, LeafHash: b64(leaf[:]), Root: b64(cp.Root[:]),
			Checkpoint: string(cp.Note), VerifierKey: j.VerifierKey(), Proof: []string{}}
		if leafData != nil {
			out.LeafData = base64.StdEncoding.EncodeToString(leafData)
		}
		for _, h := range p {
			out.Proof = append(out.Proof, b64(h[:]))
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
		return j.Close()
	}
	w := bufio.NewWriter(stdout)
	fmt.Fprintf(w, "entry      %d\ntree size  %d\n", i, cp.Size)
	fmt.Fprintf(w, "leaf hash  %s  %s\n", leaf, b64(leaf[:]))
	fmt.Fprintf(w, "root       %s  %s\n", cp.Root, b64(cp.Root[:]))
	fmt.Fprintf(w, "proof      %d hashes, leaf to root:\n", len(p))
	for k, h := range p {
		fmt.Fprintf(w, "  %2d  %s  %s\n", k, h, b64(h[:]))
	}
	if leafData != nil {
		fmt.Fprintf(w, "leaf data  (base64; leaf hash = SHA-256(0x00 || leaf data), layout in docs/journal.md)\n%s\n",
			base64.StdEncoding.EncodeToString(leafData))
	} else if expired {
		fmt.Fprintln(w, "leaf data  expired by retention (the leaf hash is kept)")
	}
	fmt.Fprintf(w, "verifier key\n%s\n", j.VerifierKey())
	fmt.Fprintf(w, "signed checkpoint (the root above is its third line, in base64)\n%s", cp.Note)
	fmt.Fprintln(w, `
How to check, with any RFC 6962 / RFC 9162 verifier:
  1. verify the checkpoint's signature with the verifier key (golang.org/x/mod/sumdb/note.Open);
  2. leaf hash = SHA-256(0x00 || leaf data); interior nodes are SHA-256(0x01 || left || right);
  3. run the RFC 9162 section 2.1.3.2 inclusion check with (entry, tree size, leaf hash, proof, root),
     e.g. in Go: proof.VerifyInclusion(rfc6962.DefaultHasher, entry, size, leaf, hashes, root)
     from github.com/transparency-dev/merkle.`)
	if err := w.Flush(); err != nil {
		return err
	}
	return j.Close()
}

var errStopRead = errors.New("stop")

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// exportRecord is one exported entry. Raw holds the record verbatim when
// it is single-line JSON in valid UTF-8; otherwise RawBase64 holds its
// exact bytes. The other strings are written by encoding/json, which
// replaces invalid UTF-8 with U+FFFD, so every line is valid JSON.
type exportRecord struct {
	Index     uint64          `json:"index"`
	Source    string          `json:"source"`
	Origin    string          `json:"origin"`
	Received  time.Time       `json:"received"`
	RecordID  string          `json:"record_id,omitempty"`
	Raw       json.RawMessage `json:"raw,omitempty"`
	RawBase64 string          `json:"raw_base64,omitempty"`
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", stderr)
	data := dataFlag(fs)
	from := fs.Uint64("from", 0, "first entry index")
	count := fs.Int64("count", -1, "number of entries (default: all)")
	setHelp(fs, stderr, helpText{synopsis: "export --data DIR [--from I] [--count N]",
		summary: "Writes journal entries as JSON lines; runs alongside a writer (checks frame checksums, not the Merkle tree: use verify)."})
	if err := parseNoArgs(fs, args, data); err != nil {
		return err
	}
	if _, err := os.Stat(*data); err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	w := bufio.NewWriterSize(stdout, 1<<20)
	left := *count
	var line []byte
	err := journal.Replay(ctx, *data, *from, func(i uint64, e *journal.Entry) error {
		if left == 0 {
			return errStopRead
		}
		left--
		r := exportRecord{Index: i, Source: e.Source, Origin: e.Origin, Received: e.Received, RecordID: e.RecordID}
		if isSingleLineJSON(e.Raw) {
			r.Raw = e.Raw
		} else {
			r.RawBase64 = base64.StdEncoding.EncodeToString(e.Raw)
		}
		var err error
		if line, err = appendJSONLine(line[:0], &r); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		_, err = w.Write(line)
		return err
	})
	if err != nil && !errors.Is(err, errStopRead) {
		return journalErr(err)
	}
	return w.Flush()
}

// appendJSONLine encodes r without re-indenting Raw: json.Marshal would
// compact it, so Raw is spliced in as is.
func appendJSONLine(dst []byte, r *exportRecord) ([]byte, error) {
	raw := r.Raw
	r.Raw = nil
	b, err := json.Marshal(r)
	if err != nil {
		return dst, err
	}
	dst = append(dst, b[:len(b)-1]...)
	if raw != nil {
		dst = append(dst, `,"raw":`...)
		dst = append(dst, raw...)
	}
	return append(dst, "}\n"...), nil
}

// isSingleLineJSON reports whether b can be spliced into a JSON line as
// it is: one line, valid JSON and valid UTF-8 (json.Valid does not check
// the encoding of strings, and strict parsers reject invalid UTF-8).
func isSingleLineJSON(b []byte) bool {
	for _, c := range b {
		if c == '\n' || c == '\r' {
			return false
		}
	}
	return utf8.Valid(b) && json.Valid(b)
}

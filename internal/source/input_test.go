package source

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vigil-audit/vigil/internal/event"
)

func zipped(t *testing.T, members map[string][]byte, order ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, name := range order {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(members[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func skippedReasons(sk []Skipped) map[string]string {
	m := map[string]string{}
	for _, s := range sk {
		m[filepath.Base(s.Path)] = s.Reason
	}
	return m
}

// A zip archive is read member by member (gzip inside too); members that
// are not logs are listed as skipped with their reason.
func TestZipArchiveMembers(t *testing.T) {
	members := map[string][]byte{
		"a.jsonl":           genericLines(3),
		"sub/b.json.gz":     gzipped(t, genericLines(2)),
		"notes.txt":         []byte("not a log"),
		"inner.zip":         zipped(t, map[string][]byte{"x.jsonl": genericLines(1)}, "x.jsonl"),
		"sub/.hidden.jsonl": genericLines(1),
	}
	p := writeFile(t, t.TempDir(), "export.zip", zipped(t, members, "a.jsonl", "notes.txt", "sub/b.json.gz", "inner.zip", "sub/.hidden.jsonl"))
	evs, st, rej := readAll(t, []string{p}, Options{})
	if len(evs) != 5 || len(rej) != 0 || st.Files != 2 || st.Records != 5 {
		t.Fatalf("%d events, %d files, %d records, rejects %v", len(evs), st.Files, st.Records, rej)
	}
	if evs[0].Origin.File != p+"/a.jsonl" || evs[4].Origin.File != p+"/sub/b.json.gz" || evs[4].Origin.Line != 2 {
		t.Errorf("origins %+v, %+v", evs[0].Origin, evs[4].Origin)
	}
	sk := skippedReasons(st.Skipped)
	if len(st.Skipped) != 3 || !strings.Contains(sk["notes.txt"], "not a log file name") ||
		!strings.Contains(sk["inner.zip"], "zip archive inside") || sk[".hidden.jsonl"] != "hidden file" {
		t.Errorf("skipped %+v", st.Skipped)
	}
}

// A zip bomb member is stopped at the ratio limit and named; the members
// after it are read.
func TestZipBombMemberIsBounded(t *testing.T) {
	zeros := make([]byte, 40<<20)
	members := map[string][]byte{"bomb.log": zeros, "good.jsonl": genericLines(4)}
	p := writeFile(t, t.TempDir(), "bomb.zip", zipped(t, members, "bomb.log", "good.jsonl"))
	var q bytes.Buffer
	var n int
	st, err := ReadPaths(context.Background(), []string{p}, Options{Quarantine: &q}, func(*event.Event) error { n++; return nil })
	var de *DamagedError
	if n != 4 || st.Quarantined != 1 || !errors.As(err, &de) || de.Inputs[0].File != p+"/bomb.log" || !strings.Contains(de.Inputs[0].Reason, "decompression ratio") {
		t.Fatalf("%d events, %d quarantined, err %v, quarantine %.300s", n, st.Quarantined, err, q.String())
	}
}

// A decompression bomb of zeros (which takes the CSV framing path) and one
// of '[' are quarantined in bounded memory; the next input is read.
func TestGzipBombs(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		fill   byte
		lim    Limits
		reason string
	}{
		{"zeros.csv.gz", 0, Limits{}, "decompression ratio"},
		{"zeros.csv.gz", 0, Limits{MaxRatio: 1 << 30}, "no header row within the maximum record size"},
		{"brackets.json.gz", '[', Limits{}, "decompression ratio"},
		{"brackets.json.gz", '[', Limits{MaxRatio: 1 << 30}, "nesting depth exceeds the limit of 64; the record is cut at the end of its line 1 (41943039 bytes)"},
	} {
		big := bytes.Repeat([]byte{tc.fill}, 40<<20)
		bomb := writeFile(t, dir, tc.name, gzipped(t, big))
		good := writeFile(t, dir, "good.jsonl", genericLines(3))
		var q bytes.Buffer
		var n int
		st, _ := ReadPaths(context.Background(), []string{bomb, good}, Options{Quarantine: &q, Limits: tc.lim}, func(*event.Event) error { n++; return nil })
		if n != 3 || st.Quarantined < 1 || !strings.Contains(q.String(), tc.reason) || q.Len() > 64<<10 {
			t.Errorf("%s: %d events, %d quarantined, quarantine of %d bytes: %.400s", tc.name, n, st.Quarantined, q.Len(), q.String())
		}
	}
}

// A directory walk lists every entry it does not read, with the reason;
// links to log files are read.
func TestWalkListsSkippedEntries(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.jsonl", genericLines(2))
	writeFile(t, dir, "README.md", []byte("# notes"))
	writeFile(t, dir, ".x.json", genericLines(1))
	writeFile(t, dir, "truth.json", []byte(`{}`))
	writeFile(t, dir, ".vigilignore", []byte("truth.json\n"))
	if err := os.Mkdir(filepath.Join(dir, ".git"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, ".git"), "HEAD.json", []byte(`{}`))
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.jsonl"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"dangling.jsonl": "nowhere.jsonl", "link.jsonl": "a.jsonl", "dirlink": "."} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	files, skipped, err := Walk([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || filepath.Base(files[0]) != "a.jsonl" || filepath.Base(files[1]) != "link.jsonl" {
		t.Errorf("files %v", files)
	}
	want := map[string]string{
		"README.md":      "not a log file name",
		".x.json":        "hidden file",
		"truth.json":     "listed in .vigilignore",
		".vigilignore":   "vigil's ignore list",
		".git":           "hidden directory",
		"pipe.jsonl":     "named pipe",
		"dangling.jsonl": "dangling symbolic link",
		"dirlink":        "symbolic link to a directory",
	}
	got := skippedReasons(skipped)
	for name, reason := range want {
		if !strings.Contains(got[name], reason) {
			t.Errorf("%s: skipped for %q, want %q", name, got[name], reason)
		}
	}
	if len(skipped) != len(want) {
		t.Errorf("skipped %+v", skipped)
	}
	// ReadPaths reports them too, and reads the link.
	_, st, _ := readAll(t, []string{dir}, Options{})
	if len(st.Skipped) != len(want) || st.Events != 4 {
		t.Errorf("ReadPaths: %d skipped, %d events", len(st.Skipped), st.Events)
	}
}

// An unreadable input among others is named as damaged; the others are
// read.
func TestUnreadableInputIsDamage(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "a.jsonl", genericLines(3))
	missing := filepath.Join(dir, "gone.jsonl")
	bad := writeFile(t, dir, "b.jsonl.gz", []byte("\x1f\x8b\x00not a gzip header"))
	var n int
	st, err := ReadPaths(context.Background(), []string{bad, good}, Options{}, func(*event.Event) error { n++; return nil })
	var de *DamagedError
	if !errors.As(err, &de) || n != 3 || len(st.Damaged) != 1 || st.Damaged[0].File != bad || st.Quarantined != 1 {
		t.Fatalf("err %v, %d events, damaged %+v", err, n, st.Damaged)
	}
	var pe *os.PathError
	if _, err := ReadPaths(context.Background(), []string{missing}, Options{}, func(*event.Event) error { return nil }); !errors.As(err, &pe) {
		t.Errorf("a named input that does not exist: %v, want a path error", err)
	}
}

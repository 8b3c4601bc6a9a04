package source

import (
	"archive/zip"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// Skipped is a directory entry a walk did not read, with the reason.
type Skipped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Damage names an input that could not be read to its end, and how much
// of it was read: the records before the damage are decoded, the rest is
// not.
type Damage struct {
	File string `json:"file"`
	// Read is how many (decompressed) bytes were framed before the damage:
	// the input's first ones, or its last ones when it was read back to
	// front (Backwards).
	Read      int64  `json:"read"`
	Reason    string `json:"reason"`
	Backwards bool   `json:"backwards,omitempty"`
}

// DamagedError is returned by ReadPaths, after every input was read, when
// some inputs could not be read to their end.
type DamagedError struct{ Inputs []Damage }

func (e *DamagedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d input(s) damaged:", len(e.Inputs))
	for _, d := range e.Inputs {
		fmt.Fprintf(&b, " %s (%s after %d bytes);", d.File, d.Reason, d.Read)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// logExts are the file name endings read when walking a directory (and
// inside zip archives); files named explicitly are always read.
var logExts = []string{".json", ".jsonl", ".ndjson", ".csv", ".log", ".gz", ".zip"}

func isLogName(name string) bool {
	lower := strings.ToLower(name)
	for _, ext := range logExts {
		if strings.HasSuffix(lower, ext) {
			return true
		}
	}
	return false
}

// Expand resolves paths (files, directories walked recursively, "-") into
// the list of inputs ReadPaths would read, in order.
func Expand(paths []string) ([]string, error) {
	files, _, err := Walk(paths)
	return files, err
}

// Walk is Expand that also returns the entries of the walked directories
// that are not read, each with its reason: names that are not logs,
// hidden entries, entries a .vigilignore lists, links that lead nowhere or
// to directories, pipes, sockets and devices, unreadable directories.
// Links to regular files are followed.
func Walk(paths []string) ([]string, []Skipped, error) {
	var out []string
	var skipped []Skipped
	for _, p := range paths {
		if p == "-" {
			out = append(out, p)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, fmt.Errorf("input %s: %w", p, err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		var found []string
		ignores := map[string][]string{} // directory -> its .vigilignore patterns
		skip := func(path, reason string) { skipped = append(skipped, Skipped{Path: path, Reason: reason}) }
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if path == p {
					return err
				}
				skip(path, "unreadable: "+errors.Unwrap(err).Error())
				if d != nil && d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			name := d.Name()
			if d.IsDir() {
				if path != p && strings.HasPrefix(name, ".") {
					skip(path, "hidden directory")
					return filepath.SkipDir
				}
				ignores[path] = readIgnore(filepath.Join(path, ignoreFile))
				return nil
			}
			switch {
			case name == ignoreFile:
				skip(path, "vigil's ignore list")
				return nil
			case strings.HasPrefix(name, "."):
				skip(path, "hidden file")
				return nil
			case ignored(ignores[filepath.Dir(path)], name):
				skip(path, "listed in "+ignoreFile)
				return nil
			}
			if reason := notRegular(path, d); reason != "" {
				skip(path, reason)
				return nil
			}
			if !isLogName(name) {
				skip(path, "not a log file name ("+strings.Join(logExts, " ")+")")
				return nil
			}
			found = append(found, path)
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("walking %s: %w", p, err)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	if len(out) == 0 {
		return nil, skipped, ErrNoInput
	}
	return out, skipped, nil
}

// notRegular says why a walked entry that is not a regular file is not
// read ("" when it is one, or a link to one).
func notRegular(path string, d fs.DirEntry) string {
	t := d.Type()
	if t.IsRegular() {
		return ""
	}
	if t&fs.ModeSymlink != 0 {
		fi, err := os.Stat(path)
		switch {
		case err != nil:
			return "dangling symbolic link"
		case fi.IsDir():
			return "symbolic link to a directory (not followed)"
		case fi.Mode().IsRegular():
			return ""
		}
		t = fi.Mode().Type()
	}
	switch {
	case t&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeDevice != 0:
		return "device"
	}
	return "not a regular file"
}

// ignoreFile lists, one glob per line, files of its directory that are
// not logs (a simulator's ground truth, lookup tables); '#' starts a
// comment. Only directory walks honour it.
const ignoreFile = ".vigilignore"

func readIgnore(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var pats []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			pats = append(pats, l)
		}
	}
	return pats
}

func ignored(pats []string, name string) bool {
	for _, p := range pats {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
	}
	return false
}

// guard counts the decompressed bytes of a compressed input and fails it
// past the limits on size and ratio: a decompression bomb then costs
// bounded time, and framing keeps memory bounded whatever the content.
type guard struct {
	r          io.Reader
	n          *int64       // decompressed bytes (the members of a zip archive share one count)
	compressed func() int64 // compressed bytes, for the ratio; nil: no ratio check
	lim        Limits
	err        error
}

func newGuard(r io.Reader, lim Limits, n *int64, compressed func() int64) *guard {
	if n == nil {
		n = new(int64)
	}
	return &guard{r: r, n: n, compressed: compressed, lim: lim}
}

// errLimit marks the limits of guard, so the damage names a limit rather
// than a broken file.
var errLimit = errors.New("input limit")

func (g *guard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	// Read at most one byte past the limit, and pass on none of it.
	if room := g.lim.MaxInputBytes - *g.n + 1; int64(len(p)) > room {
		p = p[:max(room, 1)]
	}
	n, err := g.r.Read(p)
	*g.n += int64(n)
	var c int64
	if g.compressed != nil {
		c = g.compressed()
	}
	switch d := *g.n; {
	case d > g.lim.MaxInputBytes:
		n -= int(d - g.lim.MaxInputBytes)
		g.err = fmt.Errorf("%w: more than %d bytes decompressed (the limit per input)", errLimit, g.lim.MaxInputBytes)
	case g.compressed == nil:
	case d > min(ratioFloor, g.lim.MaxInputBytes) && c > 0 && d/c > int64(g.lim.MaxRatio):
		g.err = fmt.Errorf("%w: decompression ratio over %d:1 (%d bytes from %d; the limit is %d:1)",
			errLimit, d/c, d, c, g.lim.MaxRatio)
	}
	if g.err != nil {
		return max(n, 0), g.err
	}
	return n, err
}

// openInput wraps r with gzip when it starts with the gzip magic (so
// gzip inside a zip archive is read too) and skips a UTF-8 BOM; skipped is
// how many bytes that was, so offsets can still count from the start of
// the (decompressed) input. compressed counts the input's bytes on disk,
// for the decompression ratio.
func openInput(r io.Reader, lim Limits, compressed func() int64) (br *bufio.Reader, closer func() error, skipped int64, err error) {
	br = bufio.NewReaderSize(r, 1<<20)
	closer = func() error { return nil }
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, 0, gzipErr(err)
		}
		closer = zr.Close
		br = bufio.NewReaderSize(newGuard(gzipReader{zr}, lim, nil, compressed), 1<<20)
	}
	if b, _ := br.Peek(3); bytes.Equal(b, bom) {
		_, _ = br.Discard(3)
		skipped = 3
	}
	return br, closer, skipped, nil
}

// gzipReader says "gzip" in its errors: a bare "unexpected EOF" does not
// tell a responder which layer broke.
type gzipReader struct{ r io.Reader }

func (g gzipReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	return n, gzipErr(err)
}

func gzipErr(err error) error {
	if err == nil || err == io.EOF || strings.HasPrefix(err.Error(), "gzip: ") {
		return err
	}
	return fmt.Errorf("gzip: %w", err)
}

// isZip reports whether the input starts like a zip archive.
func isZip(b []byte) bool {
	return len(b) >= 4 && b[0] == 'P' && b[1] == 'K' && (b[2] == 3 && b[3] == 4 || b[2] == 5 && b[3] == 6)
}

// zipMember is one member of a zip archive to read as an input.
type zipMember struct {
	name string // archive path + "/" + member name
	f    *zip.File
}

// zipMembers lists the members of a zip archive that are read, in
// archive order, and those skipped with their reason.
func zipMembers(path string, zr *zip.Reader) ([]zipMember, []Skipped) {
	var read []zipMember
	var skipped []Skipped
	for _, f := range zr.File {
		name := path + "/" + f.Name
		switch {
		case f.FileInfo().IsDir():
		case !f.Mode().IsRegular():
			skipped = append(skipped, Skipped{Path: name, Reason: "not a regular file"})
		case strings.HasSuffix(strings.ToLower(f.Name), ".zip"):
			skipped = append(skipped, Skipped{Path: name, Reason: "zip archive inside a zip archive (extract it to read it)"})
		case strings.HasPrefix(filepath.Base(f.Name), "."):
			skipped = append(skipped, Skipped{Path: name, Reason: "hidden file"})
		case !isLogName(f.Name):
			skipped = append(skipped, Skipped{Path: name, Reason: "not a log file name (" + strings.Join(logExts, " ") + ")"})
		default:
			read = append(read, zipMember{name: name, f: f})
		}
	}
	return read, skipped
}

package source

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Limits bound what one record and one input may cost, so hostile or
// damaged input (decompression bombs, absurd nesting, records of millions
// of keys) is quarantined with its reason instead of exhausting memory,
// stack or time. The zero value of a field means its default.
type Limits struct {
	// MaxRecordBytes is the largest framed record: a JSON line, a JSON
	// value of a pretty-printed file, a CSV row. Longer ones are
	// quarantined with their first bytes only; the rest of the input is
	// read on.
	MaxRecordBytes int
	// MaxDepth is the deepest nesting of objects and arrays in a record.
	MaxDepth int
	// MaxFields is the most fields a record may have: object members at
	// any depth, CSV columns, and the values of JSON held in strings.
	MaxFields int
	// MaxElements is the most array elements a record may hold, counted
	// over all its arrays (an API page's list counts too).
	MaxElements int
	// MaxInputBytes is the most bytes read from one compressed input
	// (gzip file, zip member) once decompressed.
	MaxInputBytes int64
	// MaxRatio is the largest decompressed-to-compressed ratio of an input;
	// checked once ratioFloor bytes were decompressed.
	MaxRatio int
	// MaxReasonBytes bounds the length of a quarantine reason.
	MaxReasonBytes int
}

// Default limits: generous for real exports (an API page of 1000 sign-ins
// has some 100 000 fields; audit logs compress 5-30:1), small enough that
// two decoding workers stay within a few hundred megabytes.
const (
	DefaultMaxRecordBytes = 16 << 20
	DefaultMaxDepth       = 64
	DefaultMaxFields      = 200_000
	DefaultMaxElements    = 200_000
	DefaultMaxInputBytes  = 64 << 30
	DefaultMaxRatio       = 200
	DefaultMaxReasonBytes = 1024
)

// ratioFloor is how much an input must have decompressed to before its
// ratio is judged: a small file of zeros harms nobody.
const ratioFloor = 16 << 20

// recordPrefix is how much of a record past MaxRecordBytes the quarantine
// keeps.
const recordPrefix = 4 << 10

// withDefaults fills zero fields with the defaults.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxRecordBytes, DefaultMaxRecordBytes)
	def(&l.MaxDepth, DefaultMaxDepth)
	def(&l.MaxFields, DefaultMaxFields)
	def(&l.MaxElements, DefaultMaxElements)
	def(&l.MaxRatio, DefaultMaxRatio)
	def(&l.MaxReasonBytes, DefaultMaxReasonBytes)
	if l.MaxInputBytes == 0 {
		l.MaxInputBytes = DefaultMaxInputBytes
	}
	return l
}

// Validate reports a limit that cannot work.
func (l Limits) Validate() error {
	l = l.withDefaults()
	switch {
	case l.MaxRecordBytes < 64:
		return errors.New("maximum record size must be at least 64 bytes")
	case l.MaxDepth < 2 || l.MaxDepth > 1000:
		// Validation past the scan recurses once per level.
		return errors.New("maximum nesting depth must be between 2 and 1000")
	case l.MaxFields < 1 || l.MaxElements < 1:
		return errors.New("fields and array elements per record must be at least 1")
	case l.MaxInputBytes < 1 || l.MaxRatio < 1:
		return errors.New("decompressed bytes and ratio must be at least 1")
	case l.MaxReasonBytes < 80:
		return errors.New("quarantine reason length must be at least 80 bytes")
	}
	return nil
}

// bound cuts a reason to n bytes (at a rune boundary), saying how much
// was cut.
func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 40
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + " … (" + strconv.Itoa(len(s)-cut) + " bytes cut)"
}

// tooLarge is the reason of a record past MaxRecordBytes.
func tooLarge(size int64, max int, complete bool) error {
	n := strconv.FormatInt(size, 10)
	if !complete {
		n = "more than " + n
	}
	return fmt.Errorf("record of %s bytes exceeds the maximum record size (%d bytes); the quarantine keeps its first %d bytes",
		n, max, min(int64(recordPrefix), size))
}

package collect

import (
	"errors"
	"fmt"
	"strconv"
)

// APIError is a response the API gave that is neither success nor a
// throttle or server error worth retrying. Body is a short, escaped
// excerpt; it never holds request headers.
type APIError struct {
	Method, URL string // URL without query secrets (these APIs carry none)
	Status      int
	Code        string // vendor error code when the body names one (AF20051, …)
	Message     string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%s %s: HTTP %d", e.Method, e.URL, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + strconv.Quote(e.Message)
	}
	return s
}

// PermanentError is an error that retrying cannot fix (bad credentials,
// a missing permission, an unknown tenant): the collector of that source
// stops and says what to do.
type PermanentError struct {
	Err error
	// Fix tells the operator what to change, e.g. the permission to grant.
	Fix string
}

func (e *PermanentError) Error() string {
	if e.Fix == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + " (" + e.Fix + ")"
}

func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError with fix.
func Permanent(err error, fix string) error { return &PermanentError{Err: err, Fix: fix} }

// IsPermanent reports whether err is, or wraps, a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// quoteExcerpt returns at most n bytes of b for an error message; %q or
// strconv.Quote escapes it where it is printed.
func excerpt(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

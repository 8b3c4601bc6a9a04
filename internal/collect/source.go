package collect

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Source is one stream of one API for one tenant (a Management API
// content type, Graph sign-ins, a Workspace application). Implementations
// read; the Collector decides windows, deduplicates, stores and commits.
type Source interface {
	// Name is the stream's name in config and summaries ("audit.exchange",
	// "signins", "gws.login").
	Name() string
	Policy() Policy
	// Prepare runs before each poll (O365: make sure the subscription is
	// on). Gaps it reports are recorded.
	Prepare(ctx context.Context, out Sink) error
	// Fetch reads every record of window w and hands them to out, page by
	// page; it returns only after the last page (no next link). A
	// returned error leaves the window to be read again.
	Fetch(ctx context.Context, w Window, out Sink) error
	// Key returns the record's dedup key: the source's own record id.
	Key(raw []byte) (string, error)
}

// Sink receives what a Source reads.
type Sink interface {
	// Records stores one page (or blob) durably and returns once it is in
	// the journal. unit, when not empty, names the page's content (an O365
	// blob id): once stored, Done(unit) reports true for the horizon.
	Records(ctx context.Context, raws [][]byte, unit string) error
	// Done reports whether a unit was stored completely before.
	Done(unit string) bool
	// Gap records a gap in the journal.
	Gap(ctx context.Context, g Gap) error
	// Now is the current time on the API's clock (skew corrected).
	Now() time.Time
	// Extra and SetExtra keep a source's own small state (O365
	// subscription checks), committed with the watermark.
	Extra(key string) string
	SetExtra(key, value string)
}

// Policy is a source's timing.
type Policy struct {
	Settle    time.Duration // records younger than this are not yet complete
	Overlap   time.Duration // re-read behind the watermark for late records
	MaxWindow time.Duration // largest window one query may cover
	MaxAge    time.Duration // oldest data the API keeps (minus a margin)
	Poll      time.Duration // interval between polls in Run
	// Journal is the journal source name of records that the decoders
	// cannot classify (they are stored anyway and counted).
	Journal string
}

func (p Policy) check() error {
	switch {
	case p.MaxWindow <= 0, p.MaxAge <= 0, p.Poll <= 0:
		return fmt.Errorf("policy needs MaxWindow, MaxAge and Poll")
	case p.Overlap < 0, p.Settle < 0:
		return fmt.Errorf("policy: negative overlap or settle")
	}
	return nil
}

// Window is a half-open time range [Start, End).
type Window struct{ Start, End time.Time }

func (w Window) String() string {
	return w.Start.UTC().Format(time.RFC3339) + "/" + w.End.UTC().Format(time.RFC3339)
}

// Gap reasons.
const (
	GapExpired      = "expired"               // content aged out before it was fetched (AF20051)
	GapClamped      = "clamped"               // window older than the API keeps
	GapTruncated    = "truncated"             // the API returned a partial result
	GapSubscription = "subscription_disabled" // O365 subscription was off
	GapSilent       = "silent"                // a busy source returned nothing for too long
)

// Gap is a stretch of a source that vigil could not read completely.
type Gap struct {
	Reason string
	Window Window
	Detail string
	// Key makes the gap idempotent across restarts (default: reason and
	// window start).
	Key string
}

// Emit hands a page of records, as the API's JSON decoded them, to out. An
// empty page without a unit stores nothing (an empty page with a next link
// is not the end of a window); one with a unit is still recorded, so the
// unit counts as done.
func Emit(ctx context.Context, out Sink, page []json.RawMessage, unit string) error {
	if len(page) == 0 && unit == "" {
		return nil
	}
	raws := make([][]byte, len(page))
	for i, r := range page {
		raws[i] = r
	}
	return out.Records(ctx, raws, unit)
}

package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
	"github.com/vigil-audit/vigil/internal/source/jsonl"
)

// IngestResult is the answer to one push.
type IngestResult struct {
	Accepted    int64 `json:"accepted"`
	Duplicates  int64 `json:"duplicates"`
	Quarantined int64 `json:"quarantined"`
}

// Ingester decodes pushed bodies with the same autodetection as files and
// appends every record to the journal; records that cannot be decoded go
// to the quarantine file with their reasons.
type Ingester struct {
	j journal.Log
	// Committed, when set, hears how long each batch took to become durable.
	Committed  func(time.Duration)
	quarantine string
	qmu        sync.Mutex
	// Notify is called after records were appended (wakes detection).
	Notify func()
	// Handoff, when set, receives every entry appended with the events it
	// decoded to, for detection in this process; Mapping and Hot must then
	// be detection's decoder configuration, so that the events are the
	// ones detection would decode from the journal.
	Handoff *Handoff
	Mapping *jsonl.Mapping
	Hot     []event.Sym
}

// NewIngester appends to j and quarantines into the file at quarantine.
func NewIngester(j journal.Log, quarantine string) *Ingester {
	return &Ingester{j: j, quarantine: quarantine}
}

// Ingest decodes body (JSON lines, a JSON array, an envelope, CSV; gzip or
// not) and returns once every decoded record is durable.
func (in *Ingester) Ingest(ctx context.Context, body io.Reader, origin string) (IngestResult, error) {
	return in.IngestFormat(ctx, body, origin, "")
}

// IngestFormat is Ingest with every record's format asserted (see
// source.Options.Format; "" autodetects): records of another format are
// quarantined with the reason.
func (in *Ingester) IngestFormat(ctx context.Context, body io.Reader, origin, format string) (IngestResult, error) {
	var res IngestResult
	var q bytes.Buffer
	var entries []journal.Entry
	var evs [][]*event.Event // per entry, with a handoff
	var prev *event.Event
	opts := source.Options{Stdin: body, Quarantine: &q, Workers: 1, Format: format}
	var received time.Time
	if in.Handoff != nil {
		// The entries' Received is fixed before decoding, so the events
		// get the observed time detection would give them from the journal.
		received = time.Now().UTC()
		opts.Observed, opts.Mapping, opts.Hot = received, in.Mapping, in.Hot
	}
	st, err := source.ReadPaths(ctx, []string{"-"}, opts, func(e *event.Event) error {
		if prev != nil && source.SameRecord(prev, e) {
			if in.Handoff != nil {
				evs[len(evs)-1] = append(evs[len(evs)-1], e)
			}
			return nil
		}
		prev = e
		en := source.Entry(e)
		en.Origin = origin
		en.Received = received
		entries = append(entries, en)
		if in.Handoff != nil {
			evs = append(evs, []*event.Event{e})
		}
		return nil
	})
	if x, ok := body.(interface{ Exceeded() bool }); ok && x.Exceeded() {
		return res, ErrTooLarge
	}
	if err != nil {
		return res, err
	}
	res.Quarantined = st.Quarantined
	if q.Len() > 0 {
		if err := in.keep(q.Bytes()); err != nil {
			return res, err
		}
	}
	for len(entries) > 0 {
		n := min(len(entries), 4096)
		t0 := time.Now()
		acks, err := in.j.AppendBatch(ctx, entries[:n])
		if err != nil {
			return res, fmt.Errorf("journal: %w", err)
		}
		if in.Committed != nil {
			in.Committed(time.Since(t0))
		}
		for i, a := range acks {
			if a.Duplicate {
				res.Duplicates++
				continue
			}
			res.Accepted++
			if in.Handoff != nil {
				in.handOff(a.Index, entries[i], evs[i])
			}
		}
		entries = entries[n:]
		if in.Handoff != nil {
			evs = evs[n:]
		}
	}
	if res.Accepted > 0 && in.Notify != nil {
		in.Notify()
	}
	return res, nil
}

// handOff offers an appended entry to detection, its events named as
// detection names the events of a journal entry.
func (in *Ingester) handOff(index uint64, en journal.Entry, evs []*event.Event) {
	o := event.Origin{File: journalOrigin(en.Origin), Index: int(index)}
	for _, e := range evs {
		e.Origin = o
	}
	in.Handoff.Offer(index, en, evs)
}

// keep appends quarantined records to the quarantine file, durably.
func (in *Ingester) keep(b []byte) error {
	in.qmu.Lock()
	defer in.qmu.Unlock()
	f, err := os.OpenFile(in.quarantine, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("quarantine: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("quarantine: %w", err)
	}
	return f.Close()
}

// ErrTooLarge: the body passed its size limit; nothing was stored.
var ErrTooLarge = errors.New("body too large")

// overLimit remembers whether the body hit its size limit, however the
// decoder reacted to the read error.
type overLimit struct {
	r   io.Reader
	hit bool
}

func (o *overLimit) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		o.hit = true
	}
	return n, err
}

func (o *overLimit) Exceeded() bool { return o.hit }

func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	if lag := s.lag(); lag > s.cfg.MaxLag {
		w.Header().Set("Retry-After", "5")
		s.metrics.ingestReqs.WithLabelValues("429").Inc()
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("detection is %d entries behind the journal; retry later", lag))
		return
	}
	if s.d.Delay != nil && s.cfg.MaxDelay > 0 {
		if d := s.d.Delay(); d > s.cfg.MaxDelay {
			w.Header().Set("Retry-After", "1")
			s.metrics.ingestReqs.WithLabelValues("429").Inc()
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("detection is %.0f s behind the journal (limit %.0f s); retry later", d.Seconds(), s.cfg.MaxDelay.Seconds()))
			return
		}
	}
	format := r.URL.Query().Get("format")
	if format != "" && !slices.Contains(source.Formats, format) {
		s.metrics.ingestReqs.WithLabelValues("400").Inc()
		writeError(w, http.StatusBadRequest, "format: "+strconv.Quote(format)+" is not one of "+strings.Join(source.Formats, ", ")+"; nothing was stored")
		return
	}
	body := &overLimit{r: http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)}
	origin := "push:" + r.RemoteAddr
	res, err := s.d.Ingest.IngestFormat(r.Context(), body, origin, format)
	if errors.Is(err, ErrTooLarge) {
		s.metrics.ingestReqs.WithLabelValues("413").Inc()
		writeError(w, http.StatusRequestEntityTooLarge, "body larger than "+strconv.FormatInt(s.cfg.MaxBodyBytes, 10)+" bytes; nothing was stored")
		return
	}
	if err != nil && r.Context().Err() != nil {
		// The client went away (or the server is stopping) before the
		// answer: nothing was acknowledged; it will push again.
		s.log.Info("ingest abandoned by the client before its acknowledgment", "remote", r.RemoteAddr, "err", err)
		s.metrics.ingestReqs.WithLabelValues("abandoned").Inc()
		return
	}
	if err != nil {
		s.log.Error("ingest failed", "remote", r.RemoteAddr, "err", err)
		s.metrics.ingestReqs.WithLabelValues("500").Inc()
		writeError(w, http.StatusInternalServerError, "ingest failed; nothing acknowledged")
		return
	}
	s.metrics.ingestRecords.WithLabelValues("accepted").Add(float64(res.Accepted))
	s.metrics.ingestRecords.WithLabelValues("duplicate").Add(float64(res.Duplicates))
	s.metrics.ingestRecords.WithLabelValues("quarantined").Add(float64(res.Quarantined))
	s.metrics.ingestReqs.WithLabelValues("200").Inc()
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) lag() uint64 {
	if s.d.Lag == nil {
		return 0
	}
	return s.d.Lag()
}

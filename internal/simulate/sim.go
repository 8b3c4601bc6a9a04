package simulate

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

const never = math.MaxInt64

// stream is a lazy, time-ordered source of records. next reports the time
// of its next record (never when done); step writes that record (or does
// the scheduled work) and advances. Streams may start new streams with
// sim.add, never earlier than the current time.
type stream interface {
	next() int64
	step(s *sim) error
}

type schedEntry struct {
	t   int64
	seq uint64
	st  stream
}

// sched is a min-heap of streams ordered by (time, creation order); the
// creation-order tie-break keeps output deterministic.
type sched []schedEntry

func (h sched) less(i, j int) bool {
	return h[i].t < h[j].t || (h[i].t == h[j].t && h[i].seq < h[j].seq)
}

func (h *sched) push(e schedEntry) {
	*h = append(*h, e)
	q := *h
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *sched) down(i int) {
	q := *h
	n := len(q)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			return
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
}

func (h *sched) pop() {
	q := *h
	n := len(q) - 1
	q[0] = q[n]
	q[n] = schedEntry{}
	*h = q[:n]
	if n > 0 {
		h.down(0)
	}
}

// Output files.
const (
	outUAL = iota
	outSignIn
	outGWS
	numOut
)

var outNames = [numOut]string{"ual", "signins", "gws"}

// sink writes one output file in the chosen format. Records are appended
// to a buffer that a writer goroutine flushes, so generation and the
// write system calls overlap.
type sink struct {
	path   string
	f      *os.File
	format Format
	csv    bool // Purview CSV export (UAL only)
	n      int64
	bytes  int64
	buf    []byte
	full   chan []byte
	free   chan []byte
	done   chan error
}

const sinkBuf = 1 << 20

func openSink(dir string, which int, format Format) (*sink, error) {
	ext := ".jsonl"
	csv := false
	switch {
	case format == FormatJSON:
		ext = ".json"
	case format == FormatCSV && which == outUAL:
		ext = ".csv"
		csv = true
	}
	p := filepath.Join(dir, outNames[which]+ext)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("simulate: create %s: %w", p, err)
	}
	k := &sink{path: p, f: f, format: format, csv: csv, buf: make([]byte, 0, sinkBuf+64<<10),
		full: make(chan []byte, 2), free: make(chan []byte, 3), done: make(chan error, 1)}
	for i := 0; i < 2; i++ {
		k.free <- make([]byte, 0, sinkBuf+64<<10)
	}
	go k.writer()
	switch {
	case csv:
		k.buf = append(k.buf, "CreationDate,UserIds,Operations,AuditData\r\n"...)
	case format == FormatJSON:
		k.buf = append(k.buf, '[')
	}
	return k, nil
}

func (k *sink) writer() {
	var err error
	for b := range k.full {
		if err == nil {
			_, err = k.f.Write(b)
		}
		k.free <- b[:0]
	}
	k.done <- err
}

func (k *sink) write(rec []byte, t int64, userID, op string) error {
	l := k.buf
	start := len(l)
	switch {
	case k.csv:
		l = time.Unix(0, t).UTC().AppendFormat(l, layoutPurview)
		l = append(l, ',')
		l = appendCSVField(l, userID)
		l = append(l, ',')
		l = appendCSVField(l, op)
		l = append(l, ',', '"')
		for _, c := range rec {
			if c == '"' {
				l = append(l, '"')
			}
			l = append(l, c)
		}
		l = append(l, '"', '\r', '\n')
	case k.format == FormatJSON:
		if k.n > 0 {
			l = append(l, ',')
		}
		l = append(l, '\n')
		l = append(l, rec...)
	default:
		l = append(l, rec...)
		l = append(l, '\n')
	}
	k.bytes += int64(len(l) - start)
	k.n++
	k.buf = l
	if len(l) >= sinkBuf {
		return k.flush()
	}
	return nil
}

// flush hands the buffer to the writer goroutine.
func (k *sink) flush() error {
	select {
	case err := <-k.done:
		// the writer stopped early: it only does so after an error
		k.done <- err
		return fmt.Errorf("simulate: write %s: %w", k.path, err)
	default:
	}
	k.full <- k.buf
	k.buf = <-k.free
	return nil
}

func appendCSVField(l []byte, s string) []byte {
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == ',' || c == '\n' || c == '\r' {
			need = true
			break
		}
	}
	if !need {
		return append(l, s...)
	}
	l = append(l, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			l = append(l, '"')
		}
		l = append(l, s[i])
	}
	return append(l, '"')
}

func (k *sink) close() error {
	if k.format == FormatJSON && !k.csv {
		k.buf = append(k.buf, "\n]\n"...)
	}
	k.full <- k.buf
	close(k.full)
	err := <-k.done
	if cerr := k.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("simulate: finish %s: %w", k.path, err)
	}
	return nil
}

// throttleState is Exchange's per-mailbox MailItemsAccessed throttle:
// the times of the records written in the last 24 h (a ring, so memory
// is bounded by a day's records, not the run's).
type throttleState struct {
	times       []int64
	head        int
	silentUntil int64
}

func (st *throttleState) trim(cutoff int64) {
	for st.head < len(st.times) && st.times[st.head] <= cutoff {
		st.head++
	}
	if st.head > 64 && st.head*2 > len(st.times) {
		n := copy(st.times, st.times[st.head:])
		st.times = st.times[:n]
		st.head = 0
	}
}

// sim is one generation run.
type sim struct {
	attackerIPs map[netip.Addr]*campaignState // which campaign drew each attacker address
	cfg         *Config
	t           *Tenant
	start       int64
	end         int64
	now         int64
	h           sched
	seq         uint64
	out         [numOut]*sink
	w           jw
	thr         []throttleState
	camps       []*campaignState
	confs       []*Confounder
	events      int64
	pending     []stream
	fileInfo    [numOut]FileInfo
	// world state the confounders change
	vpnSwitch       int64 // time the corporate egress moves; never if unchanged
	rolloutStart    int64 // new Outlook roll-out window; never if none
	rolloutEnd      int64
	travel          map[*User]travelPlan
	targeted        map[*User]bool     // mailboxes a forged-token campaign reads
	sanctionedAdmin *User              // the admin who consents to the sanctioned backup app
	cloudPC         map[*User]*cloudPC // users who move to cloud PCs (cloud-pc)
	cloudPCConf     *Confounder
	unl             *unlinkedState // nil unless unlinked-tokens is on
	benignReads     int            // MailItemsAccessed records no campaign wrote
	ctx             context.Context
	lastProgress    int64
	progressEvery   int64
}

// add schedules a new stream. Streams added during a step join the heap
// after that step, so the running stream's slot stays at the top.
func (s *sim) add(st stream) {
	if st.next() < s.now {
		panic("simulate: stream scheduled in the past")
	}
	s.pending = append(s.pending, st)
}

func (s *sim) push(st stream) {
	t := st.next()
	if t == never {
		return
	}
	s.seq++
	s.h.push(schedEntry{t: t, seq: s.seq, st: st})
}

// run drains the schedule until every stream is done or past the end.
func (s *sim) run() error {
	for len(s.h) > 0 {
		e := &s.h[0]
		if e.t >= s.end {
			break
		}
		s.now = e.t
		st := e.st
		if err := st.step(s); err != nil {
			return err
		}
		if nt := st.next(); nt == never {
			s.h.pop()
		} else {
			s.h[0].t = nt
			s.h.down(0)
		}
		for _, p := range s.pending {
			s.push(p)
		}
		s.pending = s.pending[:0]
		if s.events >= s.lastProgress+s.progressEvery {
			s.lastProgress = s.events
			if err := s.ctx.Err(); err != nil {
				return fmt.Errorf("simulate: %w", err)
			}
			if s.cfg.Progress != nil {
				s.cfg.Progress(Progress{Events: s.events, SimTime: time.Unix(0, s.now).UTC(), Fraction: float64(s.now-s.start) / float64(s.end-s.start)})
			}
		}
	}
	return nil
}

// emit writes the record in s.w to output which.
func (s *sim) emit(which int, t int64, userID, op string) error {
	s.events++
	return s.out[which].write(s.w.b, t, userID, op)
}

func (s *sim) reset() { s.w.b = s.w.b[:0]; s.w.comma = false }

// ---- record emission used by streams ----

// emitSignIn writes an Entra sign-in and, for interactive user sign-ins,
// the UAL UserLoggedIn/UserLoginFailed record that mirrors it.
func (s *sim) emitSignIn(si *signIn, camp *campaignState) error {
	s.reset()
	s.entraSignIn(&s.w, si)
	upn := ""
	if si.user != nil {
		upn = si.user.UPN
	}
	if err := s.emit(outSignIn, si.t, upn, "signIn"); err != nil {
		return err
	}
	if camp != nil {
		camp.record("entra.signin", guid(si.id), si.t, "signIn")
	}
	if si.user != nil && si.interactive {
		s.reset()
		s.userLoggedIn(&s.w, si)
		op := "UserLoggedIn"
		if si.errorCode != 0 {
			op = "UserLoginFailed"
		}
		if err := s.emit(outUAL, si.t, si.user.UPN, op); err != nil {
			return err
		}
		if camp != nil {
			camp.record("m365.ual", guid(si.id), si.t, op)
		}
	}
	return nil
}

// emitUAL writes the UAL record in s.w.
func (s *sim) emitUAL(t int64, id id16, userID, op string, camp *campaignState) error {
	if err := s.emit(outUAL, t, userID, op); err != nil {
		return err
	}
	if camp != nil {
		camp.record("m365.ual", guid(id), t, op)
	}
	return nil
}

// mailAccess applies Exchange's throttling to one MailItemsAccessed
// record and writes it unless the mailbox is in its silent window. The
// campaign (if any) learns what was read and what the log shows.
func (s *sim) mailAccess(t int64, id id16, who actor, mb *Mailbox, logonType int, a *access, sync bool, reads []folderRead, camp *campaignState) error {
	st := &s.thr[mb.index]
	day := int64(24 * time.Hour)
	if t < st.silentUntil {
		if camp != nil {
			camp.unlogged(s, mb, t, sync, reads, "throttled")
		}
		return nil
	}
	st.trim(t - day)
	st.times = append(st.times, t)
	throttled := false
	if len(st.times)-st.head > s.cfg.ThrottleLimit {
		// one record says so, then nothing for 24 h
		throttled = true
		st.silentUntil = t + day
		st.times, st.head = st.times[:0], 0
	}
	s.reset()
	s.mailItemsAccessed(&s.w, t, id, who, mb, logonType, a, sync, throttled, reads)
	if err := s.emit(outUAL, t, who.userID, "MailItemsAccessed"); err != nil {
		return err
	}
	if camp != nil {
		camp.record("m365.ual", guid(id), t, "MailItemsAccessed")
		camp.logged(s, mb, t, sync, throttled, reads)
		return nil
	}
	s.benignReads++
	if a.unlinked && s.unl != nil {
		s.unl.reads++
	}
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }

func (k *sink) kind() string {
	switch {
	case k.csv:
		return "csv"
	case k.format == FormatJSON:
		return "json"
	}
	return "jsonl"
}

package cluster

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigil-audit/vigil/internal/journal"
)

// Journal marks. The gap check at a sequencer's start compares the
// journal's position (the stream sequence of the tenant's last message it
// holds) with the stream's first sequence. With several tenants on one
// stream, a tenant quiet for longer than the stream's max_age has a
// position before everything the stream still holds, though nothing of
// it was discarded: the messages past its position were other tenants'.
// The stream cannot say whose messages it discarded (it keeps per-subject
// counts of what it holds, nothing of what it dropped). So a sequencer
// that is caught up records how far it is complete: "the journal of this
// size and Merkle root holds every message of the tenant up to stream
// sequence Through". The check then starts from Through, trusted only for
// a journal that holds that one (the same root at that size): a journal
// restored from an older backup, or rebuilt on an empty disk, is checked
// from its own position.

// JournalMarkBucket holds a mark per journal (keyed as its lease).
const JournalMarkBucket = "vigil_journal_marks"

// defaultMarkEvery is the least time between two marks of a sequencer.
const defaultMarkEvery = 30 * time.Second

type journalMark struct {
	Stream  string    `json:"stream"`
	Size    uint64    `json:"size"`
	Root    string    `json:"root"`
	Through uint64    `json:"through"`
	At      time.Time `json:"at"`
}

// rootedJournal is a journal that tells its Merkle roots (journal.Journal).
type rootedJournal interface {
	Root() (uint64, journal.Hash)
	RootAt(size uint64) (journal.Hash, error)
}

// openMarks opens (creating) the mark bucket.
func (c *Conn) openMarks(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      JournalMarkBucket,
		Description: "vigil: how far each journal holds its tenant's stream messages",
		History:     1,
		Replicas:    c.opts.Replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: journal mark bucket: %w", err)
	}
	return kv, nil
}

// loadMark returns the stream sequence up to which the journal holds every
// tenant message according to its mark, or 0 when there is none that
// this journal holds.
func (s *Sequencer) loadMark(ctx context.Context) (uint64, error) {
	rj, ok := s.o.Journal.(rootedJournal)
	if !ok || s.marks == nil {
		return 0, nil
	}
	val, found, err := s.c.leaderLast(ctx, "KV_"+JournalMarkBucket, "$KV."+JournalMarkBucket+"."+leaseKey(s.name))
	if err != nil {
		return 0, fmt.Errorf("cluster: journal mark: %w", err)
	}
	if !found {
		return 0, nil
	}
	var m journalMark
	if err := json.Unmarshal(val, &m); err != nil {
		return 0, fmt.Errorf("cluster: journal mark %q does not decode: %w", val, err)
	}
	size, _ := rj.Root()
	if m.Stream != s.c.opts.Stream || m.Size > size {
		return 0, nil
	}
	root, err := rj.RootAt(m.Size)
	if err != nil {
		return 0, fmt.Errorf("cluster: journal root at the mark's size %d: %w", m.Size, err)
	}
	if hex.EncodeToString(root[:]) != m.Root {
		s.log.Info("cluster: the journal mark is another journal's (its root differs at the mark's size); the gap check starts at the journal's position", "mark_size", m.Size, "mark_through", m.Through)
		return 0, nil
	}
	return m.Through, nil
}

// mark records that the journal holds every tenant message up to stream
// sequence through (the sequencer is caught up).
func (s *Sequencer) mark(ctx context.Context, through uint64) {
	s.markedAt = time.Now()
	if through <= s.through.Load() {
		return
	}
	s.through.Store(through)
	rj, ok := s.o.Journal.(rootedJournal)
	if !ok || s.marks == nil {
		return
	}
	size, root := rj.Root()
	b, err := json.Marshal(journalMark{Stream: s.c.opts.Stream, Size: size, Root: hex.EncodeToString(root[:]), Through: through, At: time.Now().UTC()})
	if err != nil {
		return
	}
	// A stop right after does not lose what was found.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := s.marks.Put(mctx, leaseKey(s.name), b); err != nil {
		s.log.Warn("cluster: journal mark not recorded", "through", through, "err", err)
	}
}

// leaderLast reads the last message on subject from the stream's leader.
// A KV bucket's Get is a direct get, which any replica answers, and one
// that has not caught up gives an older mark.
func (c *Conn) leaderLast(ctx context.Context, stream, subject string) ([]byte, bool, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": subject})
	if err != nil {
		return nil, false, err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.nc.RequestWithContext(rctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, false, err
	}
	var r struct {
		Message *struct {
			Data []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, false, fmt.Errorf("answer %q: %w", resp.Data, err)
	}
	switch {
	case r.Error != nil && r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, false, nil
	case r.Error != nil:
		return nil, false, r.Error
	case r.Message == nil:
		return nil, false, fmt.Errorf("answer %q holds no message", resp.Data)
	}
	return r.Message.Data, true, nil
}

package index

import (
	"context"
	"runtime"
	"sync"

	"github.com/vigil-audit/vigil/internal/journal"
	"github.com/vigil-audit/vigil/internal/source"
)

const batchEntries = 1024

// batch is a run of consecutive journal entries, decoded by any worker and
// written in journal order.
type batch struct {
	first uint64
	recv  []journal.Entry
	pre   []*Rows // rows offered for an entry (its recv is then empty), or nil
	out   []decoded
	err   error // set when the batch was abandoned undecoded
	done  chan struct{}
}

// pipeline decodes journal entries on every core and hands the rows to
// one writer in journal order, recording the position every commitEvery
// entries.
type pipeline struct {
	ctx     context.Context
	cache   *rowCache // rows detection made; nil: decode every entry
	enrich  enricher  // the index's network tables (nil: none)
	shared  uint64    // entries whose rows came from the cache
	cur     *batch
	work    chan *batch
	ordered chan *batch
	wg      sync.WaitGroup
	wdone   chan struct{}
	werr    error
	failed  chan struct{}
	once    sync.Once
	next    uint64
}

func newPipeline(ctx context.Context, w *writer, cache *rowCache, every uint64, commit func(to uint64) error) *pipeline {
	n := runtime.GOMAXPROCS(0)
	p := &pipeline{
		ctx: ctx, cache: cache, enrich: w.x.enrich, work: make(chan *batch, n*2), ordered: make(chan *batch, n*4),
		wdone: make(chan struct{}), failed: make(chan struct{}),
	}
	for range n {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			dec := source.NewDecoder(nil, nil)
			for b := range p.work {
				b.out = make([]decoded, len(b.recv))
				for i := range b.recv {
					if b.pre[i] != nil {
						b.out[i] = b.pre[i].d
						continue
					}
					b.out[i] = decodeEntry(dec, b.first+uint64(i), &b.recv[i], p.enrich)
				}
				close(b.done)
			}
		}()
	}
	go func() {
		defer close(p.wdone)
		var since uint64
		for b := range p.ordered {
			<-b.done
			if p.werr != nil {
				continue
			}
			err := b.err
			if err == nil {
				err = writeBatch(w, b)
			}
			if err != nil {
				p.fail(err)
				continue
			}
			since += uint64(len(b.recv))
			if since >= every {
				since = 0
				if err := commit(b.first + uint64(len(b.recv))); err != nil {
					p.fail(err)
				}
			}
		}
	}()
	return p
}

func (p *pipeline) fail(err error) {
	p.once.Do(func() {
		p.werr = err
		close(p.failed)
	})
}

func writeBatch(w *writer, b *batch) error {
	for i := range b.out {
		d := &b.out[i]
		idx := b.first + uint64(i)
		if d.reason != "" {
			if err := w.appendUnindexed(idx, d.source, d.reason); err != nil {
				return err
			}
			continue
		}
		for k := range d.events {
			if err := w.appendEvent(&d.events[k]); err != nil {
				return err
			}
		}
		for k := range d.mail {
			if err := w.appendMail(&d.mail[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// add is journal.Replay's callback: e and its Raw are only valid during
// the call, so they are copied.
func (p *pipeline) add(i uint64, e *journal.Entry) error {
	if r, ok := p.cache.take(i); ok {
		return p.addRows(i, r)
	}
	c := *e
	c.Raw = append([]byte(nil), e.Raw...)
	return p.push(i, c, nil)
}

// addRows adds entry i by the rows offered for it: it is not decoded here.
func (p *pipeline) addRows(i uint64, r *Rows) error {
	p.shared++
	return p.push(i, journal.Entry{}, r)
}

func (p *pipeline) push(i uint64, c journal.Entry, r *Rows) error {
	if p.cur == nil {
		p.cur = &batch{first: i, done: make(chan struct{})}
	}
	p.cur.recv = append(p.cur.recv, c)
	p.cur.pre = append(p.cur.pre, r)
	p.next = i + 1
	if len(p.cur.recv) == batchEntries {
		return p.send()
	}
	return nil
}

func (p *pipeline) send() error {
	b := p.cur
	p.cur = nil
	select {
	case p.ordered <- b:
	case <-p.failed:
		return p.werr
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
	select {
	case p.work <- b:
	case <-p.ctx.Done():
		// The writer waits on b.done; release it with an error, so the
		// position is not recorded past entries that were never decoded.
		b.err = p.ctx.Err()
		close(b.done)
		return p.ctx.Err()
	}
	return nil
}

// finish drains the pipeline and returns the first error of the writer.
func (p *pipeline) finish() error {
	var err error
	if p.cur != nil && len(p.cur.recv) > 0 {
		err = p.send()
	}
	close(p.work)
	p.wg.Wait()
	close(p.ordered)
	<-p.wdone
	if err != nil {
		return err
	}
	return p.werr
}

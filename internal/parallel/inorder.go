package parallel

import (
	"context"
	"sync"
)

// batchLen is how many items travel between the stages of InOrder at
// once: enough to make the channel operations cheap per item, few
// enough to keep every worker busy.
const batchLen = 256

type batch[T, U any] struct {
	in   []T
	out  []U
	err  error
	done chan struct{}
}

// InOrder runs work over what produce emits on workers goroutines and
// hands the results to consume in the order produce emitted them. newWork
// makes each worker's function (a worker may keep state, a decoder, that
// is not safe to share). Memory is bounded: a few batches per worker are
// in flight. The first error stops every stage; consume's is returned
// first, then work's, then produce's.
func InOrder[T, U any](ctx context.Context, workers int, produce func(emit func(T) error) error, newWork func() func(T) (U, error), consume func(U) error) error {
	workers = max(workers, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *batch[T, U], workers*2)
	order := make(chan *batch[T, U], workers*4)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work := newWork()
			for b := range jobs {
				b.out = make([]U, len(b.in))
				for i, x := range b.in {
					u, err := work(x)
					if err != nil {
						b.err = err
						break
					}
					b.out[i] = u
				}
				b.in = nil
				close(b.done)
			}
		}()
	}
	prodErr := make(chan error, 1)
	go func() {
		defer close(order)
		defer close(jobs)
		cur := &batch[T, U]{in: make([]T, 0, batchLen), done: make(chan struct{})}
		send := func() error {
			// Into jobs first: every batch in order is one a worker will
			// finish, so the consumer never waits for a batch no one has.
			select {
			case jobs <- cur:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case order <- cur:
			case <-ctx.Done():
				return ctx.Err()
			}
			cur = &batch[T, U]{in: make([]T, 0, batchLen), done: make(chan struct{})}
			return nil
		}
		err := produce(func(x T) error {
			cur.in = append(cur.in, x)
			if len(cur.in) == batchLen {
				return send()
			}
			return nil
		})
		if err == nil && len(cur.in) > 0 {
			err = send()
		}
		prodErr <- err
	}()
	var err error
	for b := range order {
		if err != nil {
			continue // draining after an error
		}
		<-b.done
		if b.err != nil {
			err = b.err
		} else {
			for _, u := range b.out {
				if err = consume(u); err != nil {
					break
				}
			}
		}
		if err != nil {
			cancel()
		}
	}
	wg.Wait()
	if perr := <-prodErr; err == nil {
		err = perr
	}
	return err
}

package parallel

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

func TestInOrderKeepsOrder(t *testing.T) {
	for _, tc := range []struct{ n, workers int }{{0, 3}, {1, 1}, {batchLen, 2}, {batchLen*7 + 13, 4}, {5000, 1}} {
		var got []int
		err := InOrder(context.Background(), tc.workers, func(emit func(int) error) error {
			for i := range tc.n {
				if err := emit(i); err != nil {
					return err
				}
			}
			return nil
		}, func() func(int) (int, error) {
			r := rand.New(rand.NewPCG(uint64(tc.n), 1))
			return func(i int) (int, error) {
				if r.IntN(200) == 0 {
					time.Sleep(time.Millisecond) // workers finish out of order
				}
				return i * 2, nil
			}
		}, func(v int) error {
			got = append(got, v)
			return nil
		})
		if err != nil {
			t.Fatalf("n=%d: %v", tc.n, err)
		}
		if len(got) != tc.n {
			t.Fatalf("n=%d: got %d results", tc.n, len(got))
		}
		for i, v := range got {
			if v != i*2 {
				t.Fatalf("n=%d: result %d is %d, want %d (out of order)", tc.n, i, v, i*2)
			}
		}
	}
}

func TestInOrderErrors(t *testing.T) {
	errProduce, errWork, errConsume := errors.New("produce"), errors.New("work"), errors.New("consume")
	const n = 10000
	before := runtime.NumGoroutine()
	for _, tc := range []struct {
		name            string
		failProduceAt   int
		failWorkAt      int
		failConsumeAt   int
		want            error
		wantConsumedMax int
	}{
		{"produce", 3000, -1, -1, errProduce, 3000},
		{"work", -1, 4000, -1, errWork, 4000},
		{"consume", -1, -1, 5000, errConsume, 5001},
		{"work before consume", -1, 100, 5000, errWork, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			consumed := 0
			err := InOrder(context.Background(), 3, func(emit func(int) error) error {
				for i := range n {
					if i == tc.failProduceAt {
						return errProduce
					}
					if err := emit(i); err != nil {
						return err
					}
				}
				return nil
			}, func() func(int) (int, error) {
				return func(i int) (int, error) {
					if i == tc.failWorkAt {
						return 0, errWork
					}
					return i, nil
				}
			}, func(v int) error {
				consumed++
				if v == tc.failConsumeAt {
					return errConsume
				}
				return nil
			})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if consumed > tc.wantConsumedMax {
				t.Errorf("consumed %d results, want at most %d (nothing after the failure)", consumed, tc.wantConsumedMax)
			}
		})
	}
	// Every stage's goroutine ended.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines left running (%d before)", g-before, before)
	}
}

func TestInOrderCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	seen := 0
	err := InOrder(ctx, 2, func(emit func(int) error) error {
		for i := 0; ; i++ {
			if err := emit(i); err != nil {
				return err
			}
		}
	}, func() func(int) (int, error) { return func(i int) (int, error) { return i, nil } },
		func(int) error {
			if seen++; seen == 1000 {
				cancel()
			}
			return nil
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

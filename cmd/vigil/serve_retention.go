package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/vigil-audit/vigil/internal/journal"
)

// expireEvery is how often vigil serve applies the journal's retention.
// Expiry drops whole sealed segments (a day each by default), so an hour
// keeps the journal within an hour of its retention at the cost of one
// directory listing.
const expireEvery = time.Hour

// expire applies the journal's retention once: the raw bytes of sealed
// segments older than retention go, their hashes stay (see
// journal.Expire). Failures are logged and retried at the next round: the
// journal is untouched by a failed expiry.
func expire(ctx context.Context, j *journal.Journal, logger *slog.Logger) {
	n, err := j.Expire(ctx, time.Now())
	switch {
	case err != nil && ctx.Err() == nil:
		logger.Error("journal retention: expiry failed; retried within the hour", "err", err)
	case n > 0:
		logger.Info("journal retention: expired the raw bytes of old entries (their hashes are kept)", "entries", n, "first_readable", j.Expired())
	}
}

// expireLoop applies retention every expireEvery until ctx ends.
func expireLoop(ctx context.Context, j *journal.Journal, logger *slog.Logger) {
	t := time.NewTicker(expireEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			expire(ctx, j, logger)
		}
	}
}

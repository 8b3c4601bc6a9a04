package journal

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Expire deletes the raw bytes of whole sealed segments whose newest entry
// was received more than Options.Retention before now, oldest first. Their
// leaf hashes stay, so the tree, checkpoints and proofs for the remaining
// entries are unaffected. A signed note records the new lower bound before
// any file is deleted, so Verify can tell expiry from deletion. It returns
// the number of entries whose raw bytes were expired.
func (j *Journal) Expire(ctx context.Context, now time.Time) (uint64, error) {
	j.expireMu.Lock()
	defer j.expireMu.Unlock()
	segs, err := listSegments(j.dir)
	if err != nil {
		return 0, err
	}
	j.mu.RLock()
	below := j.expire
	j.mu.RUnlock()
	cutoff := now.Add(-j.opts.Retention).UnixNano()
	var drop []segFile
	// The last segment is the active one (or about to be): never expired.
	for i := 0; i+1 < len(segs); i++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		si, end, err := readSealFrame(segs[i].path)
		if err != nil {
			return 0, fmt.Errorf("read seal of %s: %w", segs[i].name, err)
		}
		if si.maxRecv >= cutoff {
			break
		}
		drop = append(drop, segs[i])
		below = end
	}
	if len(drop) == 0 {
		return 0, nil
	}
	// The hashes of what is about to go must be on disk first.
	j.mu.RLock()
	err = j.syncDerivedLocked()
	j.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	j.mu.RLock()
	sum, err := idsDigest(j.ids, below)
	j.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	note, err := j.keys.signExpiry(expiry{below: below, idsSum: sum})
	if err != nil {
		return 0, err
	}
	if err := writeFileSync(filepath.Join(j.dir, expiredFile), note, 0o644); err != nil {
		return 0, err
	}
	j.mu.Lock()
	old := j.expire
	j.expire = below
	j.mu.Unlock()
	for _, s := range drop {
		if err := os.Remove(s.path); err != nil {
			return 0, fmt.Errorf("remove expired segment: %w", err)
		}
		j.log.Info("journal: expired segment", "segment", s.name)
	}
	if err := syncDir(filepath.Join(j.dir, segDir)); err != nil {
		return 0, err
	}
	return below - old, nil
}

// syncDerivedLocked syncs the derived files; the caller holds j.mu so
// the files are not closed underneath.
func (j *Journal) syncDerivedLocked() error { return j.syncDerived() }

#!/bin/sh
# Journal performance: durable append (1, 8, 64 concurrent appenders, one
# entry per call and 256 per call, ~1.5 KB records, fsync per group commit),
# verify throughput, and verify speed relative to plain SHA-256 over the
# same entry bytes. Runs the Go benchmarks of internal/journal and prints a
# table. Usage: bench/journal.sh [benchtime]   (default 1s)
#
# The journal under test lives in $TMPDIR: point it at the disk you care
# about (fsync latency decides the one-entry-per-call numbers).
set -eu
cd "$(dirname "$0")/.."
benchtime="${1:-1s}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

echo "go $(go env GOVERSION), GOMAXPROCS=$(nproc), TMPDIR=${TMPDIR:-/tmp}, load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
go test -run '^$' -bench '^(BenchmarkAppend|BenchmarkVerify|BenchmarkSHA256|BenchmarkDedupHit)$' \
	-benchtime "$benchtime" -count 1 ./internal/journal >"$out"

awk '
function metric(name,   i) { for (i = 3; i < NF; i++) if ($(i+1) == name) return $i; return "" }
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	if (name ~ /^Append/) {
		sub(/^Append\//, "", name)
		app[++na] = name; evs[na] = metric("events/s"); mbs[na] = metric("MB/s"); epc[na] = metric("events/commit")
	} else if (name ~ /^Verify/) {
		sub(/^Verify\//, "", name); vn[++nv] = name; vmb[nv] = metric("MB/s"); ven[nv] = metric("entries/s")
	} else if (name == "SHA256") {
		sha = metric("MB/s")
	} else if (name == "DedupHit") {
		dedup = $3
	}
}
END {
	printf "\n%-34s %14s %10s %14s\n", "durable append", "events/s", "MB/s", "events/commit"
	for (i = 1; i <= na; i++) printf "%-34s %14.0f %10.1f %14.1f\n", app[i], evs[i], mbs[i], epc[i]
	printf "\n%-34s %14s %10s %14s\n", "verify", "entries/s", "MB/s", "vs SHA-256"
	for (i = 1; i <= nv; i++) printf "%-34s %14.0f %10.1f %13.2fx\n", vn[i], ven[i], vmb[i], (sha > 0 ? vmb[i] / sha : 0)
	printf "%-34s %14s %10.1f %14s\n", "raw SHA-256, one core", "", sha, "1.00x"
	if (dedup != "") printf "\nduplicate acknowledged: %s ns per entry\n", dedup
}' "$out"

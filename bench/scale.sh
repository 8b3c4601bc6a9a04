#!/usr/bin/env bash
# Cluster scale-out on this machine: a 3-node NATS JetStream cluster
# in-process (internal/cluster/natstest), push ingest publishing to the R3
# stream, one sequencer and journal per tenant, and 1, 2 and 4 detection
# workers sharing simulated tenants. Prints the throughput and lag curve,
# the CPU cost per stage, and checks the result: every acknowledged record
# journaled once, every journal verifies, every alert on VIGIL_ALERTS once
# and equal to a single pipeline's. See bench/README.md.
#
# Environment (defaults in brackets; a few minutes on 2 cores):
#   WORKERS  detection worker counts, one round each        ["1 2 4"]
#   TENANTS  simulated tenants per set (two sets a round)   [8]
#   USERS    users per tenant                               [20]
#   DAYS     days per tenant                                [7]
#   BATCH    records per push                               [500]
#   REPEAT   rounds per worker count, interleaved           [1]
#   FETCH    a detection worker's fetch size   [vigil serve's default, 256]
#   PROFILE  1: CPU profile per phase, split by stage       [1]
#   WORK     results, profiles                              [bench/work/scale]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${WORK:-bench/work/scale}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
profiles=""
if [ "${PROFILE:-1}" = 1 ]; then
	profiles="$WORK/profiles"
	mkdir -p "$profiles"
fi

go test -c -o "$WORK/scale.test" ./bench/scale
echo "go $(go env GOVERSION), $(nproc) CPUs; uptime before: $(uptime)"
start=$(date +%s)
status=0
# The test binary runs BenchmarkScale once (-benchtime 1x); its own
# deadline stops a run that hangs.
SCALE_WORKERS="${WORKERS:-1 2 4}" SCALE_TENANTS="${TENANTS:-8}" SCALE_USERS="${USERS:-20}" \
	SCALE_DAYS="${DAYS:-7}" SCALE_BATCH="${BATCH:-500}" \
	SCALE_REPEAT="${REPEAT:-1}" SCALE_DETECT_BATCH="${FETCH:-}" SCALE_PROFILE_DIR="$profiles" \
	SCALE_OUT="$WORK/result.json" \
	"$WORK/scale.test" -test.run '^$' -test.bench '^BenchmarkScale$' -test.benchtime 1x \
	-test.timeout 60m 2>"$WORK/stderr.log" | tee "$WORK/result.txt" || status=$?
echo "uptime after: $(uptime); $(($(date +%s) - start)) s; log of warnings: $WORK/stderr.log"
exit $status

#!/usr/bin/env bash
# bench/load.sh: sustained push into `vigil serve` with detection on, then
# kill -9 under load and a restart. See bench/README.md.
#
#   bench/load.sh                   5 minutes of push (DURATION=300)
#   DURATION=60 bench/load.sh       a shorter run
#
# Phase 1 pushes simulated Microsoft 365 records (MailItemsAccessed, and a
# Set-Mailbox forwarding record every second that fires a rule) from
# CONNS concurrent connections of BATCH records each, as fast as the
# server acknowledges them, and reports events/s, ack latency p50/p99,
# detection lag, alert latency and the server's RSS every 10 s. Beside
# that load it replays a `vigil simulate` tenant with a forged-token
# intrusion (its history first, then the last SCENARIO_LEAD hours before
# the intrusion and after, an hour of event time per SCENARIO_HOUR, the
# load stamped with the same clock) and measures incident latency: from
# sending the record that raised each high or critical incident to its
# message in the file sink.
# Phase 2 pushes again, kills the server with SIGKILL after KILL_AFTER
# seconds, restarts it, waits for detection to catch up, stops it with
# SIGTERM, and checks: every acknowledged record is in the journal exactly
# once, `vigil verify` passes, no alert message was delivered twice and
# every incident's opening was delivered (file sink).
#
# Environment: DURATION (s, default 300), CONNS (4), BATCH (5000), PORT
# (18080), KILL_AFTER (s, 10), WORK (bench/work/load), SCENARIO_USERS (50),
# SCENARIO_DAYS (8), SCENARIO_HOUR (1s), SCENARIO_LEAD (6h), SERVE_FLAGS (extra
# flags for vigil serve; {run} in them becomes the start's number, e.g.
# "--cpuprofile /tmp/cpu-{run}.pprof"), PHASE2 (1; 0 stops the server with
# SIGTERM after phase 1 instead, so a profile covers the push).
set -euo pipefail

die() { echo "load.sh: $*" >&2; exit 1; }
say() { echo "load.sh: $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-300}
CONNS=${CONNS:-4}
BATCH=${BATCH:-5000}
PORT=${PORT:-18080}
KILL_AFTER=${KILL_AFTER:-10}
WORK=${WORK:-bench/work/load}
SCENARIO_USERS=${SCENARIO_USERS:-50}
SCENARIO_DAYS=${SCENARIO_DAYS:-8}
SCENARIO_HOUR=${SCENARIO_HOUR:-1s}
SCENARIO_LEAD=${SCENARIO_LEAD:-6h}
for v in DURATION CONNS BATCH PORT KILL_AFTER SCENARIO_USERS SCENARIO_DAYS; do
	case ${!v} in '' | *[!0-9]*) die "$v=${!v}: want a number" ;; esac
done
command -v go >/dev/null || die "go is not installed (need Go 1.26+)"
command -v curl >/dev/null || die "curl is not installed"

rm -rf "$WORK"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
say "building vigil and loadgen"
go build -o "$WORK/vigil" ./cmd/vigil
go build -o "$WORK/loadgen" ./bench/loadgen
# The scenario ends at 00:00 UTC today: before the wall clock that phase 2
# stamps its records with.
say "simulating the scenario tenant ($SCENARIO_USERS users, $SCENARIO_DAYS days, a forged-token intrusion on the last day)"
"$WORK/vigil" simulate --out "$WORK/scenario" --users "$SCENARIO_USERS" --days "$SCENARIO_DAYS" \
	--start "$(date -u -d "$SCENARIO_DAYS days ago" +%F)" --campaign forged-token \
	--param forged-token.start-day=$((SCENARIO_DAYS - 1)) --param forged-token.days=1 --quiet >/dev/null
cat >"$WORK/vigil.yaml" <<EOF
data: data
server:
  listen: 127.0.0.1:$PORT
  networks: [scenario/networks.csv]
  sinks:
    - type: file
      path: alerts.jsonl
EOF

PID=""
cleanup() { if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

STARTS=0
start_server() {
	STARTS=$((STARTS + 1))
	local flags=${SERVE_FLAGS:-}
	flags=${flags//\{run\}/$STARTS}
	# shellcheck disable=SC2086 # a list of flags
	"$WORK/vigil" serve --config "$WORK/vigil.yaml" --log-format json $flags >>"$WORK/serve.out" 2>>"$WORK/serve.log" &
	PID=$!
	for _ in $(seq 1 300); do
		if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then return 0; fi
		kill -0 "$PID" 2>/dev/null || die "vigil serve exited; see $WORK/serve.log"
		sleep 0.2
	done
	die "vigil serve did not start; see $WORK/serve.log"
}

api() { curl -fsS -H "Authorization: Bearer $(cat "$WORK/key")" "http://127.0.0.1:$PORT$1"; }

start_server
# The admin key is printed once, at the first start; keep it in a file
# (never on a command line).
umask 077
grep -oE 'vgl_[A-Za-z0-9_-]+' "$WORK/serve.log" | head -1 >"$WORK/key"
[ -s "$WORK/key" ] || die "no admin key in $WORK/serve.log"

echo "go $(go env GOVERSION), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a), DURATION=${DURATION}s CONNS=$CONNS BATCH=$BATCH"
say "phase 1: pushing for ${DURATION}s"
"$WORK/loadgen" push --url "http://127.0.0.1:$PORT" --key-file "$WORK/key" --duration "${DURATION}s" \
	--conns "$CONNS" --batch "$BATCH" --pid "$PID" --acked "$WORK/acked.txt" --summary "$WORK/phase1.json" \
	--scenario "$WORK/scenario" --sink-file "$WORK/alerts.jsonl" --scenario-hour "$SCENARIO_HOUR" --scenario-lead "$SCENARIO_LEAD" >/dev/null

phase1_report() {
echo
echo "== phase 1 (${DURATION}s, detection on) =="
awk -v f="$WORK/phase1.json" 'BEGIN {
	while ((getline l < f) > 0) {
		if (l ~ /"intervals"/) break
		gsub(/[",]/, "", l); split(l, kv, ": "); if (kv[2] != "") v[kv[1]] = kv[2]
	}
	for (k in v) { kk = k; gsub(/^ +/, "", kk); w[kk] = v[k] }
	printf "events/s           %10.0f  (%d records acknowledged)\n", w["events_per_s"], w["records_acked"]
	printf "ack latency        p50 %.1f ms, p99 %.1f ms (per request of the batch size)\n", w["ack_p50_ms"], w["ack_p99_ms"]
	printf "alert latency      p50 %.1f ms, p99 %.1f ms (%d measured, %d not seen)\n", w["alert_p50_ms"], w["alert_p99_ms"], w["alerts_measured"], w["alerts_not_seen"]
	printf "incident latency   p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d high/critical incidents of the replay; %d raised by its history; replay finished: %s)\n", w["incident_p50_ms"], w["incident_p99_ms"], w["incident_max_ms"], w["incidents_measured"], w["incidents_raised_by_history"], (w["scenario_replayed"] == "true" ? "yes" : "no")
	printf "detection lag      max %d entries\n", w["max_detection_lag_entries"]
	printf "RSS                max %.0f MiB\n", w["max_rss_mib"]
	printf "server CPU         %.0f s during the push: %.0f events per CPU second (ingest, journal and the detection done so far)\n", w["server_cpu_seconds"], w["events_per_server_cpu_second"]
	printf "429 retries        %d\n", w["retries_429"]
}'
echo "RSS and lag over time: $WORK/phase1.json (intervals)"
}

api /metrics >"$WORK/metrics-phase1.txt" || true
if [ "${PHASE2:-1}" = 0 ]; then
	kill -TERM "$PID"
	wait "$PID" || die "vigil serve did not stop cleanly after SIGTERM"
	PID=""
	phase1_report
	exit 0
fi

say "phase 2: pushing, kill -9 after ${KILL_AFTER}s"
"$WORK/loadgen" push --url "http://127.0.0.1:$PORT" --key-file "$WORK/key" --duration 120s --every 5s \
	--conns "$CONNS" --batch "$BATCH" --acked "$WORK/acked.txt" --stop-on-error --summary "$WORK/phase2.json" >/dev/null &
LG=$!
sleep "$KILL_AFTER"
kill -KILL "$PID"
wait "$PID" 2>/dev/null || true
PID=""
wait "$LG" || die "the load generator failed after the kill"
grep -q '"stopped_by_connection_error": true' "$WORK/phase2.json" || die "the load generator did not see the kill"

say "restarting after the kill"
t0=$(date +%s.%N)
start_server
ready=""
for _ in $(seq 1 1800); do
	if out=$(api /readyz 2>/dev/null) && echo "$out" | grep -q '"detection_lag": 0'; then ready=1; break; fi
	sleep 0.2
done
[ -n "$ready" ] || die "detection did not catch up after the restart"
t1=$(date +%s.%N)
sleep 3 # one refresh period: incident updates of the replay are queued by now
api /api/v1/incidents >"$WORK/incidents.json"
api /metrics >"$WORK/metrics-after-restart.txt"
kill -TERM "$PID"
wait "$PID" || die "vigil serve did not stop cleanly after SIGTERM"
PID=""

say "checking"
"$WORK/loadgen" check --data "$WORK/data" --acked "$WORK/acked.txt" --alerts "$WORK/alerts.jsonl" --incidents "$WORK/incidents.json" | tee "$WORK/check.txt"
"$WORK/vigil" verify --data "$WORK/data" | tee "$WORK/verify.txt"

phase1_report
echo "== kill -9 under load =="
echo "restart to detection caught up: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
cat "$WORK/check.txt"
tail -1 "$WORK/verify.txt"

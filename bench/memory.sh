#!/usr/bin/env bash
# bench/memory.sh: peak RSS and throughput of `vigil hunt --report` (the
# whole pipeline: decode, event-time sort with spills, Sigma rules,
# behaviours, incidents, impact, report) over `vigil simulate` tenants of
# growing length. See bench/README.md.
#
#   bench/memory.sh                    500 users for 21, 25, 75 and 250 days
#   DAYS="21 75" bench/memory.sh       fewer sizes
#   USERS=2000 DAYS=63 bench/memory.sh more entities instead of more days
#
# Environment: USERS (default 500), DAYS (space-separated, default
# "21 25 75 250": about 0.84, 1, 3 and 10 million events), SEED (default 1),
# WORK (inputs, reports and spills; default /tmp/vigil-memory, outside the
# repository: 10 M events are about 18 GB, and the sort spills as much
# again), REPEAT (runs per size, default 1: the lowest CPU time and the
# largest peak RSS are reported), VIGIL (a vigil binary to measure instead
# of building this checkout's). Inputs are kept in WORK and reused by
# later runs; delete WORK to free the space.
#
# The machine's load average is printed beside every run: on a shared
# machine wall time is noise, CPU time (user + sys) is the steadier measure,
# and events per CPU-second times the cores is what an idle machine reaches
# at best.
set -euo pipefail

die() { echo "memory.sh: $*" >&2; exit 1; }
say() { echo "memory.sh: $*" >&2; }
calc() { awk "BEGIN { printf \"$1\", ($2) }"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
USERS=${USERS:-500}
DAYS=${DAYS:-21 25 75 250}
SEED=${SEED:-1}
WORK=${WORK:-/tmp/vigil-memory}
REPEAT=${REPEAT:-1}
case $REPEAT in '' | *[!0-9]* | 0) die "REPEAT=$REPEAT: want a positive integer" ;; esac
mkdir -p "$WORK"

command -v go >/dev/null || die "go is not installed (need Go 1.26+)"
[ -x /usr/bin/time ] || die "GNU time is missing (apt-get install time)"
/usr/bin/time -f %M true 2>/dev/null || die "/usr/bin/time does not accept -f (need GNU time)"

BIN=$(mktemp -d "$WORK/bin.XXXXXX")
trap 'rm -rf "$BIN" "$WORK"/report-*."$$" "$WORK"/time."$$" "$WORK"/hunt."$$" "$WORK"/quarantine."$$"' EXIT
if [ -n "${VIGIL:-}" ]; then
	[ -x "$VIGIL" ] || die "VIGIL=$VIGIL is not an executable"
else
	say "building vigil"
	go build -o "$BIN/vigil" ./cmd/vigil || die "building vigil failed"
	VIGIL=$BIN/vigil
fi
CORES=$(nproc)

rows=()
for d in $DAYS; do
	in="$WORK/sim-u$USERS-d$d-s$SEED"
	if [ ! -f "$in/truth.json" ]; then
		say "simulating $USERS users x $d days into $in"
		rm -rf "$in"
		"$VIGIL" simulate --out "$in" --users "$USERS" --days "$d" --seed "$SEED" --quiet >/dev/null ||
			die "vigil simulate failed"
	fi
	bytes=$(du -cb "$in"/*.jsonl | tail -1 | cut -f1)
	best_cpu="" best_wall="" peak=0 events="" loads=""
	for r in $(seq "$REPEAT"); do
		out="$WORK/report-u$USERS-d$d.$$"
		rm -rf "$out"
		load=$(cut -d' ' -f1 /proc/loadavg)
		say "hunt --report over $in (run $r/$REPEAT, load $load)"
		TMPDIR=$WORK /usr/bin/time -o "$WORK/time.$$" -f '%e %U %S %M' \
			"$VIGIL" hunt --report "$out" --networks "$in/networks.csv" --quarantine "$WORK/quarantine.$$" \
			"$in" >/dev/null 2>"$WORK/hunt.$$" || { cat "$WORK/hunt.$$" >&2; die "vigil hunt failed on $in"; }
		load="$load-$(cut -d' ' -f1 /proc/loadavg)"
		read -r wall user sys rss <"$WORK/time.$$"
		cpu=$(calc %.2f "$user + $sys")
		events=$(sed -n 's/^  decoded: *\([0-9]*\) events.*/\1/p' "$WORK/hunt.$$")
		[ -n "$events" ] || { cat "$WORK/hunt.$$" >&2; die "no event count in the hunt summary"; }
		say "  $events events, wall ${wall}s, CPU ${cpu}s, peak RSS $((rss / 1024)) MiB"
		if [ -z "$best_cpu" ] || awk "BEGIN { exit !($cpu < $best_cpu) }"; then best_cpu=$cpu best_wall=$wall; fi
		[ "$rss" -gt "$peak" ] && peak=$rss
		loads="${loads:+$loads, }$load"
	done
	rows+=("$d|$events|$bytes|$best_wall|$best_cpu|$peak|$loads")
done

echo
echo "vigil hunt --report, $USERS users, seed $SEED, $CORES CPUs ($(go env GOVERSION)), $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| days | events | input (MB) | wall (s) | CPU user+sys (s) | events/s (wall) | events per CPU-s | peak RSS (MiB) | RSS per M events (MiB) | load (1 min, before-after) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
	IFS='|' read -r d events bytes wall cpu rss loads <<<"$row"
	echo "| $d | $events | $(calc %.0f "$bytes / 1e6") | $wall | $cpu | $(calc %.0f "$events / $wall") | $(calc %.0f "$events / $cpu") | $(calc %.0f "$rss / 1024") | $(calc %.1f "$rss / 1024 / ($events / 1e6)") | $loads |"
done
echo
echo "Targets: peak RSS < 500 MiB at ~830 k events; RSS growing at most logarithmically"
echo "with events (10x the events, at most a constant more); >= 200 k events/s on 2 CPUs"
echo "(>= 100 k events per CPU-second when both CPUs are busy)."

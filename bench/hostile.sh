#!/usr/bin/env bash
# bench/hostile.sh: run `vigil hunt` over hostile inputs (decompression
# bombs, deep nesting, a huge array, a record of 1.2 M keys, a 500 MB line),
# each between good records, and report per input the exit status, peak
# RSS, wall time, decoded and quarantined records, then all of them in one
# run. Target: peak RSS under 512 MB, every good record decoded, every bad
# one quarantined with its reason. See bench/README.md.
#
#   bench/hostile.sh               generate (or reuse) bench/work/hostile/
#   BOMB=1GiB bench/hostile.sh     smaller bombs (default 10 GiB decompressed)
set -euo pipefail

die() { echo "hostile.sh: $*" >&2; exit 1; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=bench/work
DIR=$WORK/hostile
BOMB=${BOMB:-10GiB}
case $BOMB in
*GiB) bomb=$(( ${BOMB%GiB} << 30 )) ;;
*MiB) bomb=$(( ${BOMB%MiB} << 20 )) ;;
*) die "BOMB=$BOMB: want NGiB or NMiB" ;;
esac
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is missing: apt-get install time"
command -v go >/dev/null || die "go is not installed (need Go 1.26+)"

mkdir -p "$WORK"
go build -o "$WORK/vigil" ./cmd/vigil
if [ ! -f "$DIR/.bomb-$BOMB" ]; then
	rm -rf "$DIR"
	go run ./bench/genhostile -dir "$DIR" -bomb "$bomb"
	touch "$DIR/.bomb-$BOMB"
fi
GOOD=1000 # good records before and after each hostile one (genhostile -good)

run() { # name, hunt flags and inputs...
	local name=$1; shift
	local q=$WORK/hostile-q.jsonl sum=$WORK/hostile-summary.txt tm=$WORK/hostile-time.txt code=0
	/usr/bin/time -f "%M %e" -o "$tm" "$WORK/vigil" hunt --quarantine "$q" --out /dev/null "$@" 2>"$sum" || code=$?
	local rss secs records
	read -r rss secs < <(tail -n 1 "$tm")
	records=$(grep -o 'records: .*' "$sum" | head -n 1)
	printf '%-36s exit %d  peak RSS %4d MB  %6.2f s  %s\n' "$name" "$code" $((rss / 1024)) "$secs" "${records:-no summary}"
	if [ -s "$q" ]; then
		grep -o '"reason":"[^"]*' "$q" | cut -c11-130 | sort | uniq -c | sed 's/^/        /'
	fi
}

echo "each hostile input holds $GOOD good records before and after it (good.jsonl: $GOOD records)"
for f in "$DIR"/*; do
	run "$(basename "$f")" "$f"
done
# With records up to 64 MiB, the field and element limits judge the huge
# array and the many keys (after a scan of their bytes, before parsing).
for f in huge-array.jsonl many-keys.jsonl; do
	run "$f (64 MiB records)" --max-record-size $((64 << 20)) "$DIR/$f"
done
run "all together" "$DIR"

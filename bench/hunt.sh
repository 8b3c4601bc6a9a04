#!/usr/bin/env bash
# bench/hunt.sh: time `vigil hunt` against a sigma-go harness and jq on the
# same ≥ 1 GB Microsoft 365 UAL JSON-lines file. See bench/README.md.
#
#   bench/hunt.sh                  generate (or reuse) bench/work/ual-1GiB-seed1.jsonl
#   bench/hunt.sh FILE.jsonl       use FILE instead
#   SIZE=200MiB bench/hunt.sh      smaller input, for a quick check
#
# Environment: SIZE (default 1GiB), SEED (default 1), FOLDER_ITEMS (MIN-MAX
# FolderItems per generated MailItemsAccessed Bind, e.g. 10-50; default the
# generator's 1-4 per folder), RULES (Sigma rules
# directory; default ../shared/data/sigmahq-sigma/rules/cloud/m365 beside
# the repository), WORKERS (vigil decoding goroutines; default: CPUs),
# REPEAT (runs per tool, default 1; the fastest wall time and the largest
# peak RSS are reported, which damps noise on a shared machine).
set -euo pipefail

calc() { awk "BEGIN { printf \"$1\", ($2) }"; }
die() { echo "hunt.sh: $*" >&2; exit 1; }
say() { echo "hunt.sh: $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=bench/work
mkdir -p "$WORK"
SIZE=${SIZE:-1GiB}
SEED=${SEED:-1}
FOLDER_ITEMS=${FOLDER_ITEMS:-}
REPEAT=${REPEAT:-1}
case $REPEAT in '' | *[!0-9]* | 0) die "REPEAT=$REPEAT: want a positive integer" ;; esac

if [ $# -ge 1 ] && [ ! -f "$1" ]; then die "input $1 does not exist"; fi

# --- tools ----------------------------------------------------------------
command -v go >/dev/null || die "go is not installed (need Go 1.26+)"
apt_install() {
	local pkg=$1
	command -v apt-get >/dev/null || die "$pkg is missing and apt-get is not available; install $pkg and rerun"
	local sudo=""
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null || die "$pkg is missing; install it (apt-get install $pkg) as root"
		sudo=sudo
	fi
	say "installing $pkg with apt-get"
	$sudo apt-get update -qq >/dev/null || die "apt-get update failed"
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null || die "apt-get install $pkg failed"
}
command -v jq >/dev/null || apt_install jq
[ -x /usr/bin/time ] || apt_install time
/usr/bin/time -f %M true 2>/dev/null || die "/usr/bin/time does not accept -f (need GNU time)"

say "building vigil, genual and the sigma-go harness"
go build -o "$WORK/vigil" ./cmd/vigil || die "building vigil (go build ./cmd/vigil) failed"
go build -o "$WORK/genual" ./bench/genual || die "building bench/genual failed"
(cd bench/sigmago && go build -o ../work/sigmago .) || die "building bench/sigmago failed"

# --- input ----------------------------------------------------------------
if [ $# -ge 1 ]; then
	FILE=$1
	[ -f "$FILE" ] || die "input $FILE does not exist"
else
	GENFLAGS=(--size "$SIZE" --seed "$SEED")
	FILE=$WORK/ual-$SIZE-seed$SEED.jsonl
	if [ -n "$FOLDER_ITEMS" ]; then
		GENFLAGS+=(--folder-items "$FOLDER_ITEMS")
		FILE=$WORK/ual-$SIZE-seed$SEED-items$FOLDER_ITEMS.jsonl
	fi
	if [ -s "$FILE" ]; then
		say "reusing $FILE"
	else
		say "generating $FILE (${GENFLAGS[*]})"
		"$WORK/genual" "${GENFLAGS[@]}" --out "$FILE"
	fi
fi
BYTES=$(stat -c %s "$FILE")
[ "$BYTES" -gt 0 ] || die "$FILE is empty"
say "counting records"
EVENTS=$(wc -l <"$FILE")
[ "$EVENTS" -gt 0 ] || die "$FILE has no lines"

# --- rules ----------------------------------------------------------------
DEFAULT_RULES=$ROOT/../shared/data/sigmahq-sigma/rules/cloud/m365
RULES=${RULES:-$DEFAULT_RULES}
VIGIL_RULES=()
if [ -d "$RULES" ]; then
	RULES=$(cd "$RULES" && pwd)
	VIGIL_RULES=(--rules "$RULES")
	# The harness gets the same directory plus vigil's built-in rules
	# (rules/ in the repository), which vigil loads from its binary.
	SIGMA_DIRS=("$RULES" rules)
	RULES_DESC="$RULES + built-in"
else
	say "no rules directory at $RULES: using the built-in rules only"
	SIGMA_DIRS=(rules)
	RULES_DESC="built-in only"
fi

# Warm the page cache so every tool reads the input from memory: the
# comparison is of CPU cost, not of disk speed.
say "warming the page cache"
cat "$FILE" >/dev/null

# timed LABEL CMD... runs CMD under GNU time REPEAT times; sets WALL (s,
# fastest run) and RSS (KiB, largest peak).
timed() {
	local tf=$WORK/time.$1 i w r
	shift
	WALL="" RSS=0
	for ((i = 0; i < REPEAT; i++)); do
		if ! /usr/bin/time -f '%e %M' -o "$tf" "$@"; then
			die "command failed: $*"
		fi
		read -r w r <"$tf"
		if [ -z "$WALL" ] || [ "$(calc %d "$w < $WALL")" = 1 ]; then WALL=$w; fi
		if [ "$r" -gt "$RSS" ]; then RSS=$r; fi
	done
}

OUT=$WORK/vigil-detections.jsonl
QUAR=$WORK/vigil-quarantine.jsonl
rm -f "$QUAR"
VFLAGS=(hunt --format jsonl --quiet --quarantine "$QUAR" "${VIGIL_RULES[@]}")
if [ -n "${WORKERS:-}" ]; then VFLAGS+=(--workers "$WORKERS"); fi

say "1/4 vigil hunt"
timed vigil "$WORK/vigil" "${VFLAGS[@]}" --out "$OUT" "$FILE"
V_WALL=$WALL V_RSS=$RSS
V_DET=$(wc -l <"$OUT")
V_QUAR=0
[ -f "$QUAR" ] && V_QUAR=$(wc -l <"$QUAR")

say "2/4 sigma-go harness"
SG_OUT=$WORK/sigmago.out
timed sigmago "$WORK/sigmago" "$FILE" "${SIGMA_DIRS[@]}" >"$SG_OUT"
S_WALL=$WALL S_RSS=$RSS
S_DET=$(sed -n 's/^matches=//p' "$SG_OUT" | tail -n 1)
S_EVENTS=$(sed -n 's/^events=//p' "$SG_OUT" | tail -n 1)
S_RULES=$(sed -n 's/^rules=//p' "$SG_OUT" | tail -n 1)

say "3/4 jq"
# jq's matches go to wc -l (not timed beyond the pipe) so they can be counted.
JQ_CNT=$WORK/jq.count
timed jq bash -c 'jq -c '\''select(.Operation=="MailItemsAccessed")'\'' "$1" | wc -l >"$2"' _ "$FILE" "$JQ_CNT"
J_WALL=$WALL J_RSS=$RSS
J_DET=$(tr -d ' ' <"$JQ_CNT")

say "4/4 vigil on a quarter-size prefix (RSS flatness)"
PREFIX=$WORK/prefix-quarter.jsonl
head -n $((EVENTS / 4)) "$FILE" >"$PREFIX"
PBYTES=$(stat -c %s "$PREFIX")
timed vigil-quarter "$WORK/vigil" "${VFLAGS[@]}" --out "$WORK/vigil-detections-quarter.jsonl" "$PREFIX"
Q_WALL=$WALL Q_RSS=$RSS
rm -f "$PREFIX"

# --- report ---------------------------------------------------------------
row() { # name wall rss detections
	local w=$2
	[ "$(calc %d "$w * 100")" -lt 1 ] && w=0.01
	printf '%-22s %9.2f %14s %10s %11s %16s\n' "$1" "$2" \
		"$(calc %.0f "$EVENTS / $w")" "$(calc %.1f "$BYTES / 1e6 / $w")" \
		"$(calc %.0f "$3 / 1024")" "$4"
}
ratio() { calc %.1f "$1 / ($2 < 0.01 ? 0.01 : $2)"; }

echo
echo "== vigil hunt benchmark =="
echo "input:    $FILE"
echo "          $(calc %.2f "$BYTES / 1e9") GB, $EVENTS records ($(calc %.0f "$BYTES / $EVENTS") B/record)"
echo "rules:    $RULES_DESC (sigma-go evaluates $S_RULES m365 rules)"
echo "runs:     best wall time of $REPEAT run(s) per tool; page cache warm"
echo "machine:  $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(go version | awk '{print $3}')"
echo
printf '%-22s %9s %14s %10s %11s %16s\n' tool "wall (s)" "events/s" "MB/s" "RSS (MiB)" "detections"
printf '%-22s %9s %14s %10s %11s %16s\n' ---- -------- -------- ---- --------- ----------
row "vigil hunt" "$V_WALL" "$V_RSS" "$V_DET"
row "sigma-go v0.6.6" "$S_WALL" "$S_RSS" "$S_DET"
row "jq select" "$J_WALL" "$J_RSS" "$J_DET"
echo
V_VS_S=$(ratio "$S_WALL" "$V_WALL")
V_VS_J=$(ratio "$J_WALL" "$V_WALL")
V_EPS=$(calc %.0f "$EVENTS / ($V_WALL < 0.01 ? 0.01 : $V_WALL)")
RSS_GROWTH=$(calc %.2f "$V_RSS / $Q_RSS")
verdict() { if [ "$(calc %d "$1")" = 1 ]; then echo met; else echo NOT MET; fi; }
echo "vigil vs sigma-go:  ${V_VS_S}x faster   (target >= 5x: $(verdict "$V_VS_S >= 5"))"
echo "vigil vs jq:        ${V_VS_J}x faster   (target > 1x: $(verdict "$V_VS_J > 1"))"
echo "vigil events/s:     $V_EPS on $(nproc) CPUs   (target >= 1000000: $(verdict "$V_EPS >= 1000000"))"
echo "vigil peak RSS:     $(calc %.0f "$Q_RSS / 1024") MiB on $(calc %.2f "$PBYTES / 1e9") GB (1/4), $(calc %.0f "$V_RSS / 1024") MiB on $(calc %.2f "$BYTES / 1e9") GB (full): x$RSS_GROWTH for 4x input   (target flat, <= 1.5x: $(verdict "$RSS_GROWTH <= 1.5"))"
echo
if [ "$S_EVENTS" != "$EVENTS" ]; then
	echo "note: sigma-go decoded $S_EVENTS of $EVENTS lines (see $SG_OUT)"
fi
if [ "$V_QUAR" != 0 ]; then
	echo "note: vigil quarantined $V_QUAR records ($QUAR)"
fi
echo "detections differ by design: sigma-go sees only top-level fields of the decoded map, so rules on"
echo "name/value lists (Parameters.*, OperationProperties.*), the raw record (Payload) or the outcome"
echo "(status) cannot match there; jq counts MailItemsAccessed records, not detections."

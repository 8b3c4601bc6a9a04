#!/usr/bin/env bash
# Investigation search at scale: simulates a tenant, ingests it, builds the
# index from scratch (vigil reindex), then times the investigation queries of
# docs/search.md and checks each answer against a brute-force scan of the
# simulated files with jq.
#
# Usage: bench/search.sh [USERS DAYS]...   (default: 600 21, about 1 M events)
#   e.g. bench/search.sh 600 21 6000 21    (about 1 M, then about 10 M events)
# Work files go to ${WORK:-$TMPDIR/vigil-search-bench} (1.7 GB of JSON and
# 1.8 GB of journal per million events); they are removed at the end unless
# KEEP=1; with REUSE=1 a kept tenant of the same size is indexed and queried
# again without simulating and ingesting it anew. Reports wall and CPU
# seconds: on a shared machine the CPU time is the steadier number.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v jq >/dev/null || { echo "bench/search.sh needs jq" >&2; exit 2; }
work="${WORK:-${TMPDIR:-/tmp}/vigil-search-bench}"
mkdir -p "$work"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
bin="$work/vigil"
go build -o "$bin" ./cmd/vigil
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(600 21)

echo "go $(go env GOVERSION), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"

# best3 CMD...: the best wall time of three runs of vigil search, in ms,
# then the best time inside the engine (--timing: without process start and
# index open); the output of the last run is left in $work/out.
best3() {
	local best=999999999 eng=999999999 t0 t1 ms e
	for _ in 1 2 3; do
		t0=$(date +%s%N)
		"$@" --timing >"$work/out" 2>"$work/err"
		t1=$(date +%s%N)
		ms=$(((t1 - t0) / 1000000))
		[ "$ms" -lt "$best" ] && best=$ms
		e=$(sed -n 's/.*query took \([0-9.]*\) ms/\1/p' "$work/err")
		[ "$(echo "$e < $eng" | bc -l)" = 1 ] && eng=$e
	done
	echo "$best $eng"
}

# check NAME: compares $work/out (vigil) with $work/want (jq), both sorted.
fails=0
check() {
	if diff <(sort "$work/out") <(sort "$work/want") >/dev/null; then
		echo "same"
	else
		echo "DIFFERENT"
		fails=$((fails + 1))
	fi
}

i=0
while [ $i -lt ${#sizes[@]} ]; do
	users=${sizes[$i]} days=${sizes[$((i + 1))]}
	i=$((i + 2))
	sim="$work/sim" data="$work/journal"
	if [ "${REUSE:-0}" = 1 ] && [ -f "$work/sim.$users.$days" ]; then
		echo "(reusing the simulated tenant, journal and brute-force projections in $work)"
	else
		rm -rf "$sim" "$data" "$work"/sim.* "$work/mail.tsv" "$work/ip.tsv"
		"$bin" simulate --quiet --out "$sim" --users "$users" --days "$days" --campaign forged-token >/dev/null
		/usr/bin/time -f '%e %U %S' -o "$work/t.ingest" "$bin" ingest --quiet --no-index --data "$data" "$sim" >"$work/ingest.txt"
	fi
	/usr/bin/time -f '%e %U %S' -o "$work/t.index" "$bin" reindex --data "$data" >"$work/reindex.txt"
	events=$(sed -n 's/.*: \([0-9]*\) events, .*/\1/p' "$work/reindex.txt")
	bytes=$(du -sb "$data/index" | cut -f1)
	read -r iw iu is <"$work/t.index"
	echo
	echo "== $users users x $days days: $events events"
	printf "index build, detection included: %.1f s wall (%.0f events/s), %.1f s CPU (%.0f events per CPU-second); %d bytes on disk, %.1f per event\n" \
		"$iw" "$(echo "$events / $iw" | bc -l)" "$(echo "$iu + $is" | bc -l)" "$(echo "$events / ($iu + $is)" | bc -l)" "$bytes" "$(echo "$bytes / $events" | bc -l)"
	# vigil reindex's own lines: the index's load (and its size before
	# detection's alerts), then detection.
	sed 's/^/  /' "$work/reindex.txt"

	# One projection of the raw records for every brute-force answer: a row per
	# message read (one per folder for a Sync, one for a read naming none), and
	# the IP of every event. A record delivered twice is counted once (the
	# journal keeps one copy): rows are kept from the first line of each Id.
	[ -s "$work/mail.tsv" ] && [ -s "$work/ip.tsv" ] || {
	jq -r 'select(.Operation == "MailItemsAccessed") |
		[.Id, input_line_number, .CreationTime, ((.MailboxOwnerUPN // .UserId) | ascii_downcase), (.UserId | ascii_downcase),
		 ((.AppId // "") | ascii_downcase), (.AppAccessContext.UniqueTokenId // "")] as $h |
		(if (.Folders // []) == [] then [""] else [.Folders[] | if (.FolderItems // []) == [] then "" else .FolderItems[].InternetMessageId end] end)[] |
		($h + [.]) | @tsv' "$sim/ual.jsonl" |
		awk -F'\t' '!($1 in first) { first[$1] = $2 } first[$1] == $2' >"$work/mail.tsv"
	{
		jq -r '[.Id, (.ClientIPAddress // .ClientIP // "")] | @tsv' "$sim/ual.jsonl" | awk -F'\t' '!seen[$1]++'
		jq -r '[.id, .ipAddress] | @tsv' "$sim/signins.jsonl" | awk -F'\t' '!seen[$1]++'
		jq -r '.ipAddress as $ip | .id.uniqueQualifier as $id | .events[] | [$id, $ip] | @tsv' "$sim/gws.jsonl"
	} >"$work/ip.tsv"
	}
	touch "$work/sim.$users.$days"

	app=$(jq -r '.campaigns[0].actor.app_ids[0]' "$sim/truth.json" | tr 'A-Z' 'a-z')
	ip=$(jq -r '.campaigns[0].actor.ips[0]' "$sim/truth.json")
	token=$(jq -r '.campaigns[0].actor.token_ids[0]' "$sim/truth.json")
	msg=$(jq -r '.campaigns[0].impact[0].message_ids[0]' "$sim/truth.json")
	day=$(jq -r '.campaigns[0].start[0:10]' "$sim/truth.json")
	start=$(jq -r '.start[0:10]' "$sim/truth.json")
	next=$(date -u -d "$day + 1 day" +%F)
	until90=$(date -u -d "$start + 90 days" +%F)
	s=(search --data "$data" --format csv --limit 10000000)

	printf "%-44s %10s %10s %8s  %s\n" "query (best of 3)" "CLI ms" "engine ms" "rows" "vs jq"
	read -r ms eng < <(best3 "$bin" search --data "$data" --format csv --sql 'SELECT 1')
	printf "%-44s %10s %10s\n" "floor: process start, open, SELECT 1" "$ms" "$eng"
	read -r ms eng < <(best3 "$bin" "${s[@]}" --table mail_access --since "$start" --until "$until90" "app:$app")
	tail -n +2 "$work/out" >"$work/o" && mv "$work/o" "$work/out"
	awk -F'\t' -v a="$app" '$6 == a' "$work/mail.tsv" | wc -l | tr -d ' ' >"$work/want"
	n=$(wc -l <"$work/out" | tr -d ' ')
	echo "$n" >"$work/out"
	printf "%-44s %10s %10s %8s  %s\n" "mail read by one app, 90 days" "$ms" "$eng" "$n" "$(check)"

	read -r ms eng < <(best3 "$bin" "${s[@]}" --count "ip:$ip")
	tail -n +2 "$work/out" >"$work/o" && mv "$work/o" "$work/out"
	awk -F'\t' -v a="$ip" '$2 == a' "$work/ip.tsv" | wc -l | tr -d ' ' >"$work/want"
	printf "%-44s %10s %10s %8s  %s\n" "everything one IP did (count)" "$ms" "$eng" "$(cat "$work/out")" "$(check)"

	read -r ms eng < <(best3 "$bin" "${s[@]}" --table mail_access --group-by mailbox "token:$token")
	tail -n +2 "$work/out" | cut -d, -f1 >"$work/o" && mv "$work/o" "$work/out"
	awk -F'\t' -v a="$token" '$7 == a { print $4 }' "$work/mail.tsv" | sort -u >"$work/want"
	printf "%-44s %10s %10s %8s  %s\n" "every mailbox one token touched" "$ms" "$eng" "$(wc -l <"$work/out" | tr -d ' ')" "$(check)"

	read -r ms eng < <(best3 "$bin" "${s[@]}" --table mail_access --group-by user "message:$msg")
	tail -n +2 "$work/out" | cut -d, -f1 >"$work/o" && mv "$work/o" "$work/out"
	awk -F'\t' -v a="$msg" '$8 == a { print $5 }' "$work/mail.tsv" | sort -u >"$work/want"
	printf "%-44s %10s %10s %8s  %s\n" "who read one InternetMessageId" "$ms" "$eng" "$(wc -l <"$work/out" | tr -d ' ')" "$(check)"

	read -r ms eng < <(best3 "$bin" "${s[@]}" --table mail_access --group-by mailbox --since "$day" --until "$next")
	tail -n +2 "$work/out" >"$work/o" && mv "$work/o" "$work/out"
	awk -F'\t' -v d="$day" 'substr($3, 1, 10) == d { n[$4]++ } END { for (m in n) print m "," n[m] }' "$work/mail.tsv" >"$work/want"
	printf "%-44s %10s %10s %8s  %s\n" "per-mailbox read counts, one day" "$ms" "$eng" "$(wc -l <"$work/out" | tr -d ' ')" "$(check)"
done
[ "$fails" -eq 0 ] || { echo "$fails answers differ from the brute-force scan" >&2; exit 1; }

#!/usr/bin/env bash
# Investigation search at scale: simulates a tenant, ingests it, builds the
# index from scratch (vigil reindex), then times the investigation queries of
# docs/search.md and checks each whole answer (its rows, not only their
# number) against a brute-force scan of the simulated files: grep -F, then jq.
#
# Usage: bench/search.sh [USERS DAYS]...   (default: 600 21, about 1 M events)
#   e.g. bench/search.sh 600 21 6000 21    (about 1 M, then about 10 M events)
# Work files go to ${WORK:-$TMPDIR/vigil-search-bench} (1.7 GB of JSON and
# 1.8 GB of journal per million events); they are removed at the end unless
# KEEP=1; with REUSE=1 a kept tenant of the same size is indexed and queried
# again without simulating and ingesting it anew; REINDEX_FLAGS adds flags to
# vigil reindex (e.g. --no-detect). Reports wall and CPU
# seconds: on a shared machine the CPU time is the steadier number.
set -euo pipefail
cd "$(dirname "$0")/.."
for c in jq bc split xargs; do command -v $c >/dev/null || { echo "bench/search.sh needs $c" >&2; exit 2; }; done
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

# check: compares $work/out (vigil's rows) with $work/want (the brute
# force's), both sorted; two empty answers count as a failure (the query
# found nothing to compare).
fails=0
check() {
	if [ ! -s "$work/want" ] && [ ! -s "$work/out" ]; then
		echo "EMPTY"
		fails=$((fails + 1))
	elif diff <(sort "$work/out") <(sort "$work/want") >/dev/null; then
		echo "same"
	else
		echo "DIFFERENT"
		fails=$((fails + 1))
	fi
}

# The brute force's row of a message read: one per message (one per folder
# for a Sync naming no message, one for a read naming no folder), fields
# record id, line number, then those compared with vigil's rows (mailcols):
# time, mailbox, folder, message id, actor, app, token, IP.
mailrows='select(.Operation == "MailItemsAccessed") |
	[.Id, $ln, .CreationTime + "Z", ((.MailboxOwnerUPN // .UserId) | ascii_downcase)] as $h |
	[(.UserId | ascii_downcase), ((.AppId // .ApplicationId // "") | ascii_downcase),
	 (.AppAccessContext.UniqueTokenId // ""), (.ClientIPAddress // .ClientIP // "")] as $t |
	(if (.Folders // []) == [] then [["", ""]] else [.Folders[] | .Path as $p |
		if (.FolderItems // []) == [] then [$p, ""] else (.FolderItems[] | [$p, .InternetMessageId]) end] end)[] |
	$h + . + $t'
mailcols='[.time, .mailbox, .folder, .internet_message_id, .actor, .app, .token, .ip] | @tsv'

# brute FILE PATTERN [JQ ARGS...] FILTER: runs the jq FILTER over the lines
# of $sim/FILE.jsonl that hold PATTERN (from the candidates grep kept), on
# both cores; the filter sees the line's number as $ln and prints TSV rows
# that start with the record's id and $ln. A record delivered twice keeps
# the rows of its first line only (the journal keeps one copy); the id and
# line number are cut from the result.
brute() {
	local file=$1 pat=$2
	shift 2
	local args=("${@:1:$#-1}") filter="${*: -1}"
	LC_ALL=C grep -F -i -- "$pat" "$work/cand.$file" >"$work/half" || [ $? = 1 ]
	rm -f "$work"/half.*
	split -n r/2 "$work/half" "$work/half."
	printf '(index(":")) as $i | .[:$i] as $ln | .[$i + 1:] | fromjson | %s\n' "$filter" >"$work/half.jq"
	printf '%s\n' "$work"/half.a? | xargs -P2 -I{} sh -c 'f=$1 p=$2; shift 2; jq -R -r "$@" -f "$p" "$f" >"$f.out"' _ {} "$work/half.jq" "${args[@]}"
	cat "$work"/half.a?.out | sort -t"$(printf '\t')" -k1,1 -k2,2n |
		awk -F'\t' '$1 != id { id = $1; first = $2 } $2 == first' | cut -f3-
}

# counts: "value<TAB>count" for each distinct input line.
counts() { sort | uniq -c | awk '{ print $2 "\t" $1 }'; }

i=0
while [ $i -lt ${#sizes[@]} ]; do
	users=${sizes[$i]} days=${sizes[$((i + 1))]}
	i=$((i + 2))
	sim="$work/sim" data="$work/journal"
	if [ "${REUSE:-0}" = 1 ] && [ -f "$work/sim.$users.$days" ]; then
		echo "(reusing the simulated tenant and journal in $work)"
	else
		rm -rf "$sim" "$data" "$work"/sim.*
		"$bin" simulate --quiet --out "$sim" --users "$users" --days "$days" --campaign forged-token >/dev/null
		/usr/bin/time -f '%e %U %S' -o "$work/t.ingest" "$bin" ingest --quiet --no-index --data "$data" "$sim" >"$work/ingest.txt"
	fi
	# Detection uses the simulator's network table, as vigil serve would use
	# the tenant's (without it the simulated VPN, travel and cloud egress
	# confounders raise alerts by the hundred thousand).
	# REINDEX_FLAGS adds flags, such as --no-detect or --cpuprofile FILE.
	# shellcheck disable=SC2086
	/usr/bin/time -f '%e %U %S' -o "$work/t.index" "$bin" reindex --data "$data" --networks "$sim/networks.csv" ${REINDEX_FLAGS:-} >"$work/reindex.txt"
	events=$(sed -n 's/.*: \([0-9]*\) events, .*/\1/p' "$work/reindex.txt")
	bytes=$(du -sb "$data/index" | cut -f1)
	read -r iw iu is <"$work/t.index"
	echo
	echo "== $users users x $days days: $events events"
	what="detection included"
	case " ${REINDEX_FLAGS:-} " in *" --no-detect "*) what="no detection" ;; esac
	printf "index build, $what: %.1f s wall (%.0f events/s), %.1f s CPU (%.0f events per CPU-second); %d bytes on disk, %.1f per event\n" \
		"$iw" "$(echo "$events / $iw" | bc -l)" "$(echo "$iu + $is" | bc -l)" "$(echo "$events / ($iu + $is)" | bc -l)" "$bytes" "$(echo "$bytes / $events" | bc -l)"
	# vigil reindex's own lines: the index's load (and its size before
	# detection's alerts), then detection.
	sed 's/^/  /' "$work/reindex.txt"

	touch "$work/sim.$users.$days"

	app=$(jq -r '.campaigns[0].actor.app_ids[0]' "$sim/truth.json" | tr 'A-Z' 'a-z')
	ip=$(jq -r '.campaigns[0].actor.ips[0]' "$sim/truth.json")
	token=$(jq -r '.campaigns[0].actor.token_ids[0]' "$sim/truth.json")
	msg=$(jq -r '.campaigns[0].impact[0].message_ids[0]' "$sim/truth.json")
	day=$(jq -r '.campaigns[0].start[0:10]' "$sim/truth.json")
	start=$(jq -r '.start[0:10]' "$sim/truth.json")
	next=$(date -u -d "$day + 1 day" +%F)
	until90=$(date -u -d "$start + 90 days" +%F)
	s=(search --data "$data" --format jsonl --limit 10000000)

	# The brute force reads the simulated files, not vigil's index or journal.
	# One pass of grep -F per file (both cores: the files in parallel) keeps
	# the lines that can match a query: those holding the app id, the IP, the
	# token, the message id or the day's date. jq then applies each query's
	# exact condition to its candidates; a pattern that missed lines would
	# show as a difference, never as a false "same".
	t0=$(date +%s)
	printf '%s\n%s\n%s\n%s\n%s\n' "$app" "$ip" "$token" "$msg" "$day" >"$work/pat.ual"
	printf '%s\n' "$ip" >"$work/pat.signins"
	printf '%s\n' "$ip" >"$work/pat.gws"
	printf '%s\n' ual signins gws | xargs -P2 -I{} sh -c \
		'LC_ALL=C grep -F -i -n -f "$1/pat.$2" "$3/$2.jsonl" >"$1/cand.$2" || [ $? = 1 ]' _ "$work" {} "$sim"

	printf "%-44s %10s %10s %8s  %s\n" "query (best of 3)" "CLI ms" "engine ms" "rows" "vs brute force"
	read -r ms eng < <(best3 "$bin" search --data "$data" --format csv --sql 'SELECT 1')
	printf "%-44s %10s %10s\n" "floor: process start, open, SELECT 1" "$ms" "$eng"

	read -r ms eng < <(best3 "$bin" "${s[@]}" --table mail_access --since "$start" --until "$until90" "app:$app")
	jq -r "$mailcols" "$work/out" >"$work/o" && mv "$work/o" "$work/out"
	brute ual "$app" --arg a "$app" "$mailrows"' | select(.[7] == $a) | @tsv' >"$work/want"
	printf "%-44s %10s %10s %8s  %s\n" "mail read by one app, 90 days" "$ms" "$eng" "$(wc -l <"$work/out" | tr -d ' ')" "$(check)"

	# Timed as a count (the investigator's first question); the rows it
	# counts are listed once more, untimed, and compared whole.
	read -r ms eng < <(best3 "$bin" "${s[@]}" --count "ip:$ip")
	n=$(jq -r .count "$work/out")
	"$bin" "${s[@]}" "ip:$ip" 2>"$work/err" | jq -r '[.source, .record_id, .time] | @tsv' >"$work/out"
	{
		brute ual "$ip" --arg a "$ip" '[.Id, $ln, "m365.ual", .Id, .CreationTime + "Z"] as $r | select((.ClientIPAddress // .ClientIP // "") == $a) | $r | @tsv'
		brute signins "$ip" --arg a "$ip" 'select(.ipAddress == $a) | [.id, $ln, "entra.signin", .id, .createdDateTime] | @tsv'
		# A Workspace activity is one row per event, all under its id.
		brute gws "$ip" --arg a "$ip" 'select(.ipAddress == $a) | [.id.uniqueQualifier, $ln] as $k | .id.time as $t | .events[] | $k + ["gws", $k[0], ($t | sub("\\.[0-9]+Z$"; "Z"))] | @tsv'
	} >"$work/want"
	[ "$n" = "$(wc -l <"$work/out" | tr -d ' ')" ] || n="$n (listing: $(wc -l <"$work/out" | tr -d ' '))"
	printf "%-44s %10s %10s %8s  %s\n" "everything one IP did (count)" "$ms" "$eng" "$n" "$(check)"

	read -r ms eng < <(best3 "$bin" "${s[@]}" --table mail_access --group-by mailbox "token:$token")
	jq -r '[.mailbox, .count] | @tsv' "$work/out" >"$work/o" && mv "$work/o" "$work/out"
	brute ual "$token" --arg a "$token" "$mailrows"' | select(.[8] == $a) | [.[0], .[1], .[3]] | @tsv' | counts >"$work/want"
	printf "%-44s %10s %10s %8s  %s\n" "every mailbox one token touched" "$ms" "$eng" "$(wc -l <"$work/out" | tr -d ' ')" "$(check)"

	read -r ms eng < <(best3 "$bin" "${s[@]}" --table mail_access --group-by user "message:$msg")
	jq -r '[.user, .count] | @tsv' "$work/out" >"$work/o" && mv "$work/o" "$work/out"
	brute ual "$msg" --arg a "$msg" "$mailrows"' | select(.[5] == $a) | [.[0], .[1], .[6]] | @tsv' | counts >"$work/want"
	printf "%-44s %10s %10s %8s  %s\n" "who read one InternetMessageId" "$ms" "$eng" "$(wc -l <"$work/out" | tr -d ' ')" "$(check)"

	read -r ms eng < <(best3 "$bin" "${s[@]}" --table mail_access --group-by mailbox --since "$day" --until "$next")
	jq -r '[.mailbox, .count] | @tsv' "$work/out" >"$work/o" && mv "$work/o" "$work/out"
	brute ual "$day" --arg a "$day" "$mailrows"' | select(.[2][0:10] == $a) | [.[0], .[1], .[3]] | @tsv' | counts >"$work/want"
	printf "%-44s %10s %10s %8s  %s\n" "per-mailbox read counts, one day" "$ms" "$eng" "$(wc -l <"$work/out" | tr -d ' ')" "$(check)"
	echo "brute-force checks and the timed queries: $(($(date +%s) - t0)) s wall"
	rm -f "$work"/cand.* "$work"/pat.* "$work"/half.*
done
[ "$fails" -eq 0 ] || { echo "$fails answers differ from the brute-force scan" >&2; exit 1; }

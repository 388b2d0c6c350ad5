#!/bin/sh
# make bench-scale (issue 14): the tools at production scale, each beside its baseline given the
# same resources, one run of each command, on data served by bulk-testserver on loopback or made
# by scripts/bench/benchtool gen. Rewrites the "Scale" blocks of docs/benchmarks.md, one block per
# part, so a rerun of one part (SCALE_PARTS=load) leaves the others' results in place. Nothing
# is asserted: the issue's targets are printed beside the numbers as met or not met.
#
#   fetch  a manifest of SCALE_FILES one-line files: bulk-fetch under ulimit -n SCALE_NOFILE vs
#          xargs -P 5 curl on the same URLs (scripts/bench/fetch-scale.sh); descriptors and RSS
#   load   for each of SCALE_SIZES GB: an export fetched into a folder (not timed), then
#          sqlload -memory-limit SCALE_MEM and etl-load --memory-limit SCALE_MEM into new
#          databases; then a new export of the smallest size onto the largest size's databases
#   merge  for each of SCALE_MERGE_SIZES GB: LC_ALL=C sort -u -S MEM vs ndjson-merge --mem MEM
#   lake   etl-load --lake --memory-limit SCALE_MEM: an export of SCALE_LAKE_BASE_GB into a new
#          lake (the base), then one export of SCALE_LAKE_GB appended to a new lake and onto the
#          base, in turn, SCALE_LAKE_ROUNDS times: wall time, bytes written (rusage), lake growth
#          and peak RSS of each
#
# Environment:
#   SCALE_PARTS        parts to run, default "fetch load merge lake"
#   SCALE_FILES        files in the fetch manifest, default 50000
#   SCALE_NOFILE       bulk-fetch's (and curl's) ulimit -n, default 256
#   SCALE_SIZES        load sizes in GB (1e9 bytes, fractions allowed), default "1 3 10"
#   SCALE_MEM          etl-load --memory-limit and sqlload -memory-limit, default 2GiB
#   SCALE_MERGE_SIZES  merge input sizes in GB, default "1 10"
#   SCALE_MERGE_MEM    ndjson-merge --mem and sort -S (the same bytes), default 256MiB
#   SCALE_LAKE_BASE_GB the lake's first load in GB, default 10
#   SCALE_LAKE_GB      the folder appended to an empty lake and onto that one, in GB, default 1
#   SCALE_LAKE_ROUNDS  appends of that folder to each lake, in turn (the fastest counts), default 2
#   SCALE_DOC          the report to rewrite (default docs/benchmarks.md; "-" for none)
#   TMPDIR             where the temporary folder goes (removed at the end unless KEEP=1)
# Needs go, curl, sort, GNU time (/usr/bin/time), pgrep and /proc. Disk: about 2.5 times the
# largest size (an export folder and two databases), 3 times the largest merge size, about 1.5
# times the lake's base (its export folder, then its staging database beside the lake).
set -eu

parts=${SCALE_PARTS:-fetch load merge lake}
files=${SCALE_FILES:-50000}
nofile=${SCALE_NOFILE:-256}
sizes=${SCALE_SIZES:-1 3 10}
mem=${SCALE_MEM:-2GiB}
merge_sizes=${SCALE_MERGE_SIZES:-1 10}
merge_mem=${SCALE_MERGE_MEM:-256MiB}
lake_base=${SCALE_LAKE_BASE_GB:-10}
lake_gb=${SCALE_LAKE_GB:-1}
lake_rounds=${SCALE_LAKE_ROUNDS:-2}
parallel=5 # bulk-fetch's default --parallel; curl gets the same
root=$(cd "$(dirname "$0")/../.." && pwd)
doc=${SCALE_DOC:-$root/docs/benchmarks.md}

for tool in go curl sort pgrep /usr/bin/time; do
	command -v "$tool" >/dev/null || {
		echo "scale.sh: needs $tool" >&2
		exit 1
	}
done
case $lake_rounds in
'' | *[!0-9]* | 0)
	echo "scale.sh: SCALE_LAKE_ROUNDS must be a whole number of at least 1, got '$lake_rounds'" >&2
	exit 2
	;;
esac
for p in $parts; do
	case $p in
	fetch | load | merge | lake) ;;
	*)
		echo "scale.sh: SCALE_PARTS: unknown part $p (want fetch, load, merge or lake)" >&2
		exit 2
		;;
	esac
done
work=$(mktemp -d "${TMPDIR:-/tmp}/bulkpipe-scale.XXXXXX")
server=
stop_server() {
	if [ -n "$server" ]; then
		kill "$server" 2>/dev/null || true
		wait "$server" 2>/dev/null || true
		server=
	fi
}
cleanup() {
	stop_server
	if [ "${KEEP:-0}" = 1 ]; then
		echo "scale.sh: kept $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/bin" "$work/tmp"
say() { echo "bench-scale: $(date -u +%H:%M:%S) $*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
ascending() { printf '%s\n' "$1" | tr -s ' \t' '\n' | sed '/^$/d' | sort -g; }
bytes_of() { find "$@" -type f -name '[A-Z]*.ndjson' -exec cat {} + | wc -c | tr -d ' '; }

say "building bin/ and the bench helpers..."
(cd "$root" && go build -o bin/ ./cmd/... &&
	go build -o "$work/bin/" ./scripts/bench/report ./scripts/bench/report/sqlload ./scripts/bench/benchtool)
bin=$root/bin
report=$work/bin/report

# begin PART / finish PART: each part has its own results and meta, rendered into its own block.
begin() {
	results=$work/$1.jsonl
	meta=$work/$1.meta
	: >"$results"
	{
		echo "date_$1=$(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "go=$(go version | cut -d' ' -f3)"
		echo "root=$root"
		echo "work=$work"
		echo "load_before_$1=$(loadavg)"
	} >"$meta"
}
setmeta() { printf '%s=%s\n' "$1" "$2" >>"$meta"; }
finish() {
	setmeta "load_after_$1" "$(loadavg)"
	echo
	if [ "$doc" = - ]; then
		"$report" scale -part "$1" -results "$results" -meta "$meta"
	else
		"$report" scale -part "$1" -results "$results" -meta "$meta" -md "$doc"
	fi
	echo
}

# measure STEP NAME ROLE BYTES [report flags...] -- CMD [ARG...]: one timed run, appended to
# $results (wall, CPU and peak RSS from wait4(2), the 1-minute load at start and end).
measure() {
	m_step=$1 m_name=$2 m_role=$3 m_bytes=$4
	shift 4
	"$report" run -o "$results" -step "$m_step" -name "$m_name" -role "$m_role" -bytes "$m_bytes" "$@"
}

# --- fetch: bulk-fetch under ulimit -n vs xargs curl on the same URLs (fetch-scale.sh) --------
part_fetch() {
	begin fetch
	say "fetch: $files one-line files, ulimit -n $nofile..."
	setmeta parallel "$parallel"
	setmeta nofile "$nofile"
	setmeta patients $((files / 113 + 1)) # fetch-scale.sh's number
	status=0
	CURL=1 RESULTS=$results NOFILE=$nofile PARALLEL=$parallel \
		sh "$root/scripts/bench/fetch-scale.sh" "$files" "$work/fetch" >&2 2>"$work/fetch.log" || status=$?
	cat "$work/fetch.log" >&2
	if [ "$status" -ne 0 ] && [ ! -s "$results" ]; then
		echo "scale.sh: fetch-scale.sh failed (exit $status) before measuring" >&2
		exit 1
	fi
	setmeta export_files "$(sed -n 's/^\([0-9]*\) files in the manifest.*/\1/p' "$work/fetch.log")"
	finish fetch
}

# start_server PATIENTS FILE_LINES: a bulk-testserver in the background; its base URL in $base.
start_server() {
	rm -f "$work/url"
	"$bin/bulk-testserver" --patients "$1" --polls 0 --retry-after 0 --file-lines "$2" \
		>"$work/url" 2>"$work/server.log" &
	server=$!
	i=0
	while [ ! -s "$work/url" ]; do
		i=$((i + 1))
		if [ "$i" -gt 6000 ] || ! kill -0 "$server" 2>/dev/null; then
			echo "scale.sh: bulk-testserver did not start" >&2
			cat "$work/server.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	base=$(head -n 1 "$work/url")
}

# export_gb GB DIR: a new export of about GB gigabytes, downloaded into DIR (not timed).
export_gb() {
	patients=$(awk -v gb="$1" 'BEGIN { p = int(gb * 7000 + 0.5); print (p < 1) ? 1 : p }')
	say "fetching a $1 GB export (bulk-testserver --patients $patients) into $2..."
	t0=$(date +%s)
	start_server "$patients" 100000
	"$bin/bulk-kickoff" --quiet "$base" | "$bin/bulk-poll" --quiet --timeout 2h |
		"$bin/bulk-fetch" --quiet --dir "$2" >/dev/null
	stop_server
	prep="${prep:+$prep; }$1 GB: $patients patients, $(bytes_of "$2") bytes fetched in $(($(date +%s) - t0)) s"
	cat "$2"/*.ndjson >/dev/null # every contestant reads from the page cache
}

# load_pair STEP DIR BYTES: sqlload, then etl-load, of DIR onto $work/sql.duckdb and
# $work/etl.duckdb (new ones unless they exist), both with the same memory limit.
load_pair() {
	say "load: $1, sqlload then etl-load, memory limit $mem..."
	# A failure (such as DuckDB's out of memory) is a result: its first line goes in the table.
	# shellcheck disable=SC2094 # report reads the error file only after the command has ended
	measure "$1" sqlload limit "$3" -limit "$mem" -error-file "$work/load.err" \
		-show "\$WORK/bin/sqlload -memory-limit $mem -db \$WORK/sql.duckdb \$WORK/${2##*/}" -- \
		"$work/bin/sqlload" -memory-limit "$mem" -db "$work/sql.duckdb" "$2" 2>"$work/load.err" || true
	cat "$work/load.err" >&2
	# shellcheck disable=SC2094
	measure "$1" etl-load tool "$3" -limit "$mem" -error-file "$work/load.err" \
		-show "bin/etl-load --quiet --memory-limit $mem --db \$WORK/etl.duckdb \$WORK/${2##*/}" -- \
		"$bin/etl-load" --quiet --memory-limit "$mem" --db "$work/etl.duckdb" "$2" 2>"$work/load.err" || true
	cat "$work/load.err" >&2
	du -k "$work/sql.duckdb" "$work/etl.duckdb" >&2 || true
}

part_load() {
	begin load
	setmeta sizes "$sizes"
	setmeta mem "$mem"
	prep=
	smallest=$(ascending "$sizes" | head -n 1)
	largest=$(ascending "$sizes" | tail -n 1)
	for gb in $(ascending "$sizes"); do
		rm -rf "$work/export" "$work"/*.duckdb "$work"/*.duckdb.wal "$work"/*.duckdb.tmp
		export_gb "$gb" "$work/export"
		load_pair "load $gb GB" "$work/export" "$(bytes_of "$work/export")"
	done
	rm -rf "$work/export"
	if [ "$smallest" != "$largest" ]; then
		# The next export: the same patients, a later transactionTime; its rows replace theirs.
		export_gb "$smallest" "$work/increment"
		load_pair "load $smallest GB onto $largest GB" "$work/increment" "$(bytes_of "$work/increment")"
		rm -rf "$work/increment"
	fi
	rm -rf "$work"/*.duckdb "$work"/*.duckdb.wal "$work"/*.duckdb.tmp
	setmeta prep_load "$prep"
	finish load
}

# --- merge: sort -u vs ndjson-merge of the same bytes at the same memory ----------------------
part_merge() {
	begin merge
	setmeta merge_sizes "$merge_sizes"
	setmeta merge_mem "$merge_mem"
	sortmem=$(printf '%s' "$merge_mem" | sed 's/[iI][bB]$//') # sort -S: K/M/G are powers of 1024
	case $merge_mem in
	*[0-9][mMgGkK][bB])
		echo "scale.sh: SCALE_MERGE_MEM=$merge_mem: give it in MiB or GiB (sort -S has no powers of 1000)" >&2
		exit 2
		;;
	esac
	setmeta sort_mem "$sortmem"
	prep=
	for gb in $(ascending "$merge_sizes"); do
		mbs=$(awk -v gb="$gb" 'BEGIN { print int(gb * 1000 + 0.5) }')
		say "merge: generating $gb GB in 10 slices..."
		t0=$(date +%s)
		rm -rf "$work/slices"
		"$work/bin/benchtool" gen -mb "$mbs" -slices 10 -dup 0.2 -out "$work/slices" >/dev/null
		set -- "$work"/slices/*/Observation.*.ndjson
		bytes=$(cat "$@" | wc -c | tr -d ' ') # also warms the page cache
		prep="${prep:+$prep; }$gb GB: generated in $(($(date +%s) - t0)) s"
		say "merge: $gb GB, sort -u then ndjson-merge, $merge_mem..."
		# shellcheck disable=SC2094 # report reads the error file only after the command has ended
		measure "merge $gb GB" 'sort -u' limit "$bytes" -limit "$merge_mem" -error-file "$work/merge.err" \
			-show "LC_ALL=C sort -u -S $sortmem -T \$WORK/tmp -o \$WORK/sorted.ndjson \$WORK/slices/*/Observation.*.ndjson" -- \
			env LC_ALL=C sort -u -S "$sortmem" -T "$work/tmp" -o "$work/sorted.ndjson" "$@" 2>"$work/merge.err" || true
		cat "$work/merge.err" >&2
		rm -f "$work/sorted.ndjson"
		rm -rf "$work/tmp" && mkdir -p "$work/tmp"
		# shellcheck disable=SC2094
		measure "merge $gb GB" ndjson-merge tool "$bytes" -limit "$merge_mem" -error-file "$work/merge.err" \
			-show "bin/ndjson-merge \$WORK/slices/* --dir \$WORK/merged --mem $merge_mem --quiet" -- \
			"$bin/ndjson-merge" "$work"/slices/* --dir "$work/merged" --mem "$merge_mem" --quiet 2>"$work/merge.err" || true
		cat "$work/merge.err" >&2
		rm -rf "$work/merged" "$work/slices"
	done
	setmeta prep_merge "$prep"
	finish merge
}

# --- lake: the same folder appended to an empty lake and onto a large one ----------------------
# lake_append STEP ROLE LAKE DIR BYTES: etl-load --lake of DIR onto LAKE, measured with the
# bytes it wrote and the lake's growth.
lake_append() {
	say "lake: $1, etl-load --lake, memory limit $mem..."
	# shellcheck disable=SC2094 # report reads the error file only after the command has ended
	measure "$1" 'etl-load --lake' "$2" "$5" -limit "$mem" -grow "$3" -error-file "$work/lake.err" \
		-show "bin/etl-load --quiet --memory-limit $mem --lake \$WORK/${3##*/} \$WORK/${4##*/}" -- \
		"$bin/etl-load" --quiet --memory-limit "$mem" --lake "$3" "$4" 2>"$work/lake.err" || true
	cat "$work/lake.err" >&2
}

part_lake() {
	begin lake
	setmeta lake_base_gb "$lake_base"
	setmeta lake_gb "$lake_gb"
	setmeta lake_rounds "$lake_rounds"
	setmeta mem "$mem"
	prep=
	rm -rf "$work/export" "$work/increment" "$work/lake.base" "$work/lake.new"
	export_gb "$lake_base" "$work/export"
	lake_append "lake $lake_base GB (base)" base "$work/lake.base" "$work/export" "$(bytes_of "$work/export")"
	rm -rf "$work/export"
	# The next export: the same patients, a later transactionTime, as the load part's increment.
	export_gb "$lake_gb" "$work/increment"
	bytes=$(bytes_of "$work/increment")
	# In turn, so that a change in the machine's load falls on both; each round onto a new empty
	# lake, and onto the base as it grows by the rounds before (still mostly the base).
	round=1
	while [ "$round" -le "$lake_rounds" ]; do
		rm -rf "$work/lake.new"
		lake_append "lake $lake_gb GB, round $round" new "$work/lake.new" "$work/increment" "$bytes"
		lake_append "lake $lake_gb GB onto $lake_base GB, round $round" onto "$work/lake.base" "$work/increment" "$bytes"
		round=$((round + 1))
	done
	files=$(find "$work/lake.base" -name '*.parquet' | wc -l | tr -d ' ')
	commits=$(find "$work/lake.base/etl__commits" -name '*.json' 2>/dev/null | wc -l | tr -d ' ')
	prep="$prep; the base lake at the end: $files Parquet files, $commits commits"
	rm -rf "$work/increment" "$work/lake.base" "$work/lake.new"
	setmeta prep_lake "$prep"
	finish lake
}

for p in $parts; do
	"part_$p"
done

#!/bin/sh
# Export one resource type (Observations by default) of a Group in slices, one per category, run
# concurrently, plus a remainder slice for resources with no category; fetch each slice; merge
# the slices into one complete export folder with ndjson-merge; load it with etl-load.
# (Cumulus's "No Partial Group Exports": a folder must hold the whole Group for each type, so
# slices are recombined before loading; see docs/completion.md.)
#
#   scripts/export-sliced.sh GROUP_URL [WORKDIR] [--db FILE]
#
#   GROUP_URL  e.g. "$BULK_FHIR_URL/Group/abc" (server and auth settings come from the usual
#              BULK_* environment variables or flags' defaults, see bulk-kickoff(1))
#   WORKDIR    default ./sliced-export: WORKDIR/slices/NAME/ per slice, WORKDIR/merged/ the result
#   --db FILE  the DuckDB database etl-load writes (default: etl-load's, $BULK_DB or
#              bulkpipe.duckdb), as in export-and-load.sh
#
# Environment:
#   TYPE             resource type to slice (default Observation)
#   CATEGORIES       space-separated category codes (default: the FHIR observation-category value set)
#   MISSING=0        no remainder slice (TYPE?category:missing=true), for servers that reject :missing;
#                    resources without a category are then NOT exported: see the note below
#   PARALLEL=0       run the slices one after another (Epic allows one export per client and Group
#                    at a time: bulk-kickoff stops at its refusal, and bulk-fetch deletes each
#                    slice's export once downloaded, so the next slice may start; a request window
#                    configured on the server refuses even that: see docs/servers.md);
#                    each slice is then checked against its filter before the next one starts
#   ASSUME_COMPLETE=1  tell etl-load that the slices hold the whole Group (--assume-complete TYPE):
#                    only when CATEGORIES lists every category code the server uses
#   LOAD=0           stop after the merge
#   MERGE_MEM        ndjson-merge --mem (default 512MB)
#
# Rerunning the same command resumes: a slice with a status URL is never kicked off again (a
# kickoff is not idempotent), a finished poll is not repeated, and bulk-fetch resumes its folder.
#
# A server that rejects "category:missing=true" answers the remainder's kickoff with a 400 and
# this script stops there. Without :missing there is no filter for "no category": either rerun
# with MISSING=0 and accept that Observations without a category are left out (and do not set
# ASSUME_COMPLETE), or export the type once unsliced instead.
#
# Some servers silently ignore _typeFilter: each slice then holds every resource of TYPE, and
# slicing only multiplies the work. bulk-kickoff warns when the server does not declare
# _typeFilter; ndjson-merge reports each slice holding resources its filter excludes (the merge is
# still complete: copies collapse); with PARALLEL=0 this script checks each slice as it finishes
# (ndjson-merge --check-filters) and stops before exporting the next: export TYPE unsliced then.
#
# The tools are taken from PATH, else from bin/ of this checkout (make build).
set -eu

usage() {
	echo "usage: $0 GROUP_URL [WORKDIR] [--db FILE]" >&2
	exit 2
}
# --db may come anywhere; the other arguments are GROUP_URL and WORKDIR, in that order.
db=
n=$#
while [ "$n" -gt 0 ]; do
	arg=$1
	shift
	n=$((n - 1))
	case $arg in
	--db)
		[ "$n" -gt 0 ] || usage
		db=$1
		shift
		n=$((n - 1))
		;;
	--db=*) db=${arg#*=} ;;
	-*) usage ;;
	*) set -- "$@" "$arg" ;;
	esac
done
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	usage
fi
group_url=$1
work=${2:-sliced-export}
type=${TYPE:-Observation}
categories=${CATEGORIES:-"laboratory vital-signs social-history imaging procedure survey exam therapy activity"}
missing=${MISSING:-1}
parallel=${PARALLEL:-1}

# The tools: PATH first, then bin/ of this checkout, where `make build` puts them.
root=$(cd "$(dirname "$0")/.." && pwd)
PATH="$PATH:$root/bin"
export PATH
for tool in bulk-kickoff bulk-poll bulk-fetch ndjson-merge etl-load; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "$0: $tool not found on PATH or in $root/bin; build the tools with 'make build' in $root" \
			"(or: go build -o bin/ ./cmd/...), then run the same command again" >&2
		exit 1
	}
done
mkdir -p "$work/slices" "$work/state"

# run CMD [ARG...]: runs CMD and returns its status. CMD runs in the background and is waited for,
# so that a TERM sent to this slice's subshell is passed on to CMD, which then stops cleanly (the
# tools resume where they stopped).
run() {
	"$@" &
	child=$!
	trap 'kill -TERM "$child" 2>/dev/null' TERM
	while :; do
		wait "$child" && return 0
		status=$?
		kill -0 "$child" 2>/dev/null || return "$status"
	done
}

# slice NAME FILTER: kickoff, poll and fetch for one slice. Each step writes its result with -o
# (atomically), so its exit status is checked and a rerun skips what is done.
slice() {
	name=$1
	filter=$2
	st=$work/state/$name
	if [ ! -s "$st.status" ]; then
		run bulk-kickoff "$group_url" --type "$type" --type-filter "$filter" \
			--log "$st.log.ndjson" -o "$st.status" || return 1
	fi
	if [ ! -s "$st.manifest" ]; then
		run bulk-poll "$(cat "$st.status")" --log "$st.log.ndjson" -o "$st.manifest" || return 1
	fi
	run bulk-fetch --dir "$work/slices/$name" --log "$st.log.ndjson" "$st.manifest" >/dev/null || return 1
}

# start NAME FILTER: runs a slice in the background, its stderr in state/NAME.err.
pids=
start() {
	slice "$1" "$2" 2>"$work/state/$1.err" &
	pids="$pids $!:$1"
}

# finish: waits for the started slices and reports each; fails if one did.
finish() {
	failed=0
	for p in $pids; do
		if wait "${p%%:*}"; then
			echo "$0: slice ${p#*:} done" >&2
		else
			failed=1
			echo "$0: slice ${p#*:} failed:" >&2
			cat "$work/state/${p#*:}.err" >&2
		fi
	done
	pids=
	return "$failed"
}

# An interrupt stops the running slices cleanly (each tool resumes on the next run).
on_signal() {
	for p in $pids; do
		kill -TERM "${p%%:*}" 2>/dev/null || :
	done
	wait
	echo "$0: interrupted; rerun the same command to resume" >&2
	exit 130
}
trap on_signal INT TERM

# The slices: one per category, then the remainder.
names=
for c in $categories; do
	names="$names $c"
done
if [ "$missing" = 1 ]; then
	names="$names missing"
fi
filters=
for name in $names; do
	if [ "$name" = missing ]; then
		filter="$type?category:missing=true"
	else
		filter="$type?category=$name"
	fi
	filters="$filters $filter"
	echo "$0: exporting slice $name ($filter)" >&2
	start "$name" "$filter"
	if [ "$parallel" != 1 ]; then
		if ! finish; then
			echo "$0: finished slices are kept; once the cause above is dealt with (a refusal says what to do), rerun the same command to resume" >&2
			exit 1
		fi
		if ! ndjson-merge --check-filters --quiet "$work/slices/$name"; then
			echo "$0: stopped after slice $name (see above): a server that ignores _typeFilter puts every $type" \
				"in every slice; export $type once unsliced instead: bulk-kickoff '$group_url' --type $type | bulk-poll | bulk-fetch --dir DIR" >&2
			exit 1
		fi
	fi
done
if ! finish; then
	echo "$0: finished slices are kept; once each failed slice's cause above is dealt with (a refusal says what to do), rerun the same command to resume" >&2
	exit 1
fi

# Merge: nothing appears at WORKDIR/merged unless the merge completes. --force replaces an earlier
# merge, so a rerun after adding slices merges them all again.
set --
for name in $names; do
	set -- "$@" "$work/slices/$name"
done
ndjson-merge "$@" --dir "$work/merged" --force --mem "${MERGE_MEM:-512MB}"
echo "$0: merged $# slices into $work/merged (filters:$filters)" >&2

if [ "${LOAD:-1}" = 1 ]; then
	set --
	if [ -n "$db" ]; then
		set -- --db "$db"
	fi
	if [ "${ASSUME_COMPLETE:-0}" = 1 ]; then
		etl-load "$@" --assume-complete "$type" "$work/merged"
	else
		etl-load "$@" "$work/merged"
		echo "$0: etl-load kept no completion row for $type (its log records category filters);" \
			"if CATEGORIES covers every category code of the server, rerun with ASSUME_COMPLETE=1" >&2
	fi
fi

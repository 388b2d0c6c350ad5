#!/bin/sh
# nightly.sh: an incremental export and load, for cron. It exports what changed on the server
# since the last export loaded into DB (bulk-kickoff --since auto --since-from DB), into a new
# folder WORKDIR/export-TIME, and loads that into DB with etl-load (updates, new resources and
# the deletions the server reports).
#
#   scripts/nightly.sh FHIR_URL DB WORKDIR --type TYPES [--full] [bulk-kickoff options...]
#
# FHIR_URL is BASE/Group/ID, BASE/Patient or a base URL (as for bulk-kickoff); --type names the
# exported types (a database records tables, not every type a server has). The first run, while
# DB does not exist, is a full export; so is a run with --full (after adding a type, say).
# bulk-kickoff refuses an incremental export that DB cannot vouch for (another Group, a type
# never exported in full) and says what to do.
#
# A run that fails (or is interrupted) is resumed by running the same command again: the export
# in progress is named in WORKDIR/current, and a finished download that did not load is loaded
# by the rerun. Two runs at once are refused (WORKDIR/lock holds the first one's PID). Server and
# auth settings come from the environment (BULK_FHIR_URL, BULK_SMART_CLIENT_ID, BULK_SMART_KEY...);
# options for bulk-fetch go in BULK_FETCH_FLAGS, for etl-load in ETL_LOAD_FLAGS. The export
# folders are kept (they are the archive of what the server sent); remove old ones at will.
#
# Example crontab line (the environment file sets BULK_FHIR_URL and the SMART settings):
#   15 2 * * * . /etc/bulkpipe.env && /opt/bulkpipe/scripts/nightly.sh "$BULK_FHIR_URL/Group/cohort" /data/bulkpipe.duckdb /data/exports --type Patient,Encounter,Condition
#
# The tools are taken from PATH, else from bin/ of this checkout (make build).
set -eu

prog=nightly.sh
usage() {
	echo "usage: $prog FHIR_URL DB WORKDIR --type TYPES [--full] [bulk-kickoff options...]" >&2
	exit 2
}
[ $# -ge 3 ] || usage
url=$1
db=$2
work=${3%/}
shift 3
full=no
have_type=no
n=$#
while [ "$n" -gt 0 ]; do
	arg=$1
	shift
	n=$((n - 1))
	case $arg in
	--full) full=yes; continue ;;
	--since | --since=* | --since-from | --since-from=*)
		echo "$prog: $arg is this script's to choose (--full for a full export)" >&2
		usage ;;
	--type | -t | --type=* | -t=*) have_type=yes ;;
	esac
	set -- "$@" "$arg"
done
[ "$have_type" = yes ] || { echo "$prog: name the exported types with --type" >&2; usage; }

root=$(cd "$(dirname "$0")/.." && pwd)
PATH="$PATH:$root/bin"
export PATH
for tool in bulk-kickoff bulk-poll bulk-fetch etl-load; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$prog: $tool not found on PATH or in $root/bin; build the tools with 'make build' in $root" >&2
		exit 1
	fi
done

mkdir -p "$work"
# One run at a time: two would export the same changes twice, and etl-load holds DB's lock.
lock=$work/lock
if ! mkdir "$lock" 2>/dev/null; then
	pid=$(cat "$lock/pid" 2>/dev/null || :)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		echo "$prog: another run (PID $pid) is working in $work; not starting a second" >&2
		exit 1
	fi
	echo "$prog: taking over the lock of a run that ended without releasing it (PID ${pid:-unknown})" >&2
	rm -rf "$lock"
	mkdir "$lock"
fi
echo $$ >"$lock/pid"
trap 'rm -rf "$lock"' EXIT
trap 'exit 130' INT TERM

# Incremental when DB has data; bulk-kickoff checks that DB vouches for this Group and these types.
if [ "$full" = yes ]; then
	echo "$prog: full export (--full)" >&2
elif [ ! -e "$db" ]; then
	echo "$prog: full export (no database $db yet)" >&2
else
	set -- --since auto --since-from "$db" "$@"
fi

# The export in progress, if a run failed: resume it rather than start another. A rerun passes
# the same options, for the case where the kickoff itself is what failed.
current=$work/current
if [ -s "$current" ]; then
	dir=$(cat "$current")
	echo "$prog: resuming $dir" >&2
else
	# Two runs within one second (a retry after a quick refusal, a test) get distinct folders.
	base=$work/export-$(date -u +%Y%m%dT%H%M%SZ)
	dir=$base
	i=1
	while [ -e "$dir" ] || [ -e "$dir.log.ndjson" ] || [ -e "$dir.status" ]; do
		i=$((i + 1))
		dir=$base-$i
	done
	printf '%s\n' "$dir" >"$current.tmp"
	mv "$current.tmp" "$current"
fi
rc=0
sh "$root/scripts/bulk-export.sh" "$url" "$dir" "$@" || rc=$?
if [ "$rc" -ne 0 ] && [ ! -e "$dir.status" ] && [ ! -e "$dir/.bulkpipe/state.json" ]; then
	# Nothing was started (bulk-kickoff refused, or the server did): nothing to resume.
	rm -f "$current"
	rm -rf "$dir" "$dir.log.ndjson"
	echo "$prog: no export was started (exit $rc); the message above says why" >&2
	exit "$rc"
fi
if [ "$rc" -ne 0 ]; then
	echo "$prog: the export failed (exit $rc); run the same command again to resume it" >&2
	exit "$rc"
fi

rc=0
# Word splitting of ETL_LOAD_FLAGS is intended: it holds options.
# shellcheck disable=SC2086
etl-load "$dir" --db "$db" ${ETL_LOAD_FLAGS:-} || rc=$?
if [ "$rc" -ne 0 ]; then
	echo "$prog: etl-load failed (exit $rc); the export in $dir is complete: run the same command again to load it" >&2
	exit "$rc"
fi
rm -f "$current"
echo "$prog: $dir loaded into $db" >&2

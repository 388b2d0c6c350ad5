#!/bin/sh
# bulk-export.sh: export a FHIR server's data into a folder, bulk-kickoff | bulk-poll | bulk-fetch,
# with every step's exit status checked (POSIX sh has no pipefail: the steps are joined by a file
# and a FIFO instead of a pipe) and resumable by running the same command again.
#
#   scripts/bulk-export.sh FHIR_URL DIR [bulk-kickoff options...]
#
# FHIR_URL is a base URL, BASE/Patient, BASE/Group/ID or a full $export URL. Server and auth
# settings come from the environment every tool reads (BULK_FHIR_URL, BULK_SMART_CLIENT_ID,
# BULK_SMART_KEY, BULK_BEARER_TOKEN_FILE, ...). Beside DIR the script keeps DIR.status (the status
# URL: while it exists, a rerun resumes that export instead of starting another) and
# DIR.log.ndjson (the kickoff and status events, copied into DIR/log.ndjson by bulk-fetch).
# Extra options for bulk-fetch go in BULK_FETCH_FLAGS (for example "--parallel 10 --gzip").
set -eu

prog=$(basename "$0")
if [ $# -lt 2 ]; then
	echo "usage: $prog FHIR_URL DIR [bulk-kickoff options...]" >&2
	exit 2
fi
url=$1
dir=${2%/}
shift 2
status_file=$dir.status
log=$dir.log.ndjson

resume_hint() {
	echo "$prog: to resume, run the same command again ($prog '$url' '$dir' ...);" \
		"bulk-fetch alone: bulk-poll '$(head -n 1 "$status_file")' | bulk-fetch --dir '$dir'" >&2
}

if [ -s "$status_file" ]; then
	echo "$prog: resuming the export of $status_file" >&2
else
	rc=0
	bulk-kickoff "$url" --log "$log" -o "$status_file" "$@" || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "$prog: bulk-kickoff failed (exit $rc)" >&2
		exit "$rc"
	fi
fi
status_url=$(head -n 1 "$status_file")

# bulk-poll prints each manifest page as it arrives and bulk-fetch starts on it at once; the FIFO
# keeps that streaming while both exit statuses stay visible.
work=$(mktemp -d "${TMPDIR:-/tmp}/bulk-export.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'resume_hint; exit 130' INT TERM
mkfifo "$work/manifest"

bulk-poll "$status_url" --log "$log" >"$work/manifest" &
poll=$!
fetch_rc=0
# Word splitting of BULK_FETCH_FLAGS is intended: it holds options.
# shellcheck disable=SC2086
bulk-fetch --dir "$dir" --log "$log" ${BULK_FETCH_FLAGS:-} <"$work/manifest" || fetch_rc=$?
poll_rc=0
wait "$poll" || poll_rc=$?

if [ "$poll_rc" -ne 0 ]; then
	echo "$prog: bulk-poll failed (exit $poll_rc); the files downloaded so far are kept in $dir" >&2
	resume_hint
	exit "$poll_rc"
fi
if [ "$fetch_rc" -ne 0 ]; then
	echo "$prog: bulk-fetch failed (exit $fetch_rc); verified files are kept in $dir" >&2
	resume_hint
	exit "$fetch_rc"
fi
# Done: bulk-fetch deleted the export on the server, so there is nothing left to resume.
rm -f "$status_file"
echo "$prog: export complete in $dir" >&2

#!/bin/sh
# bulk-export.sh: export a FHIR server's data into a folder, bulk-kickoff | bulk-poll | bulk-fetch,
# with every step's exit status checked (POSIX sh has no pipefail: the steps are joined by a file
# and a FIFO instead of a pipe) and resumable by running the same command again.
#
#   scripts/bulk-export.sh FHIR_URL DIR [--new-export] [bulk-kickoff options...]
#
# FHIR_URL is a base URL, BASE/Patient, BASE/Group/ID or a full $export URL. Server and auth
# settings come from the environment every tool reads (BULK_FHIR_URL, BULK_SMART_CLIENT_ID,
# BULK_SMART_KEY, BULK_BEARER_TOKEN_FILE, ...). Beside DIR the script keeps DIR.status (the status
# URL: while it exists, a rerun resumes that export instead of starting another) and
# DIR.log.ndjson (the kickoff and status events, copied into DIR/log.ndjson by bulk-fetch).
# Extra options for bulk-fetch go in BULK_FETCH_FLAGS (for example "--parallel 10 --gzip").
#
# A rerun after a failure or an interrupt resumes the same export. A rerun after success says the
# export in DIR is complete and changes nothing; --new-export starts a new export into DIR (an
# unfinished one is cancelled on the server first, and bulk-fetch replaces the old files).
#
# The tools are taken from PATH, else from bin/ of this checkout (make build).
set -eu

prog=$(basename "$0")
if [ $# -lt 2 ]; then
	echo "usage: $prog FHIR_URL DIR [--new-export] [bulk-kickoff options...]" >&2
	exit 2
fi
url=$1
dir=${2%/}
shift 2
# --new-export is this script's; every other argument goes to bulk-kickoff, in order.
new_export=no
n=$#
while [ "$n" -gt 0 ]; do
	arg=$1
	shift
	n=$((n - 1))
	if [ "$arg" = --new-export ]; then
		new_export=yes
	else
		set -- "$@" "$arg"
	fi
done
status_file=$dir.status
new_file=$dir.new-export
log=$dir.log.ndjson

# The tools: PATH first, then bin/ of this checkout, where `make build` puts them.
root=$(cd "$(dirname "$0")/.." && pwd)
PATH="$PATH:$root/bin"
export PATH
for tool in bulk-kickoff bulk-poll bulk-fetch; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$prog: $tool not found on PATH or in $root/bin; build the tools with 'make build' in $root" \
			"(or: go build -o bin/ ./cmd/...), then run the same command again" >&2
		exit 1
	fi
done

resume_hint() {
	echo "$prog: to resume, run the same command again ($prog '$url' '$dir' ...);" \
		"bulk-fetch alone: bulk-poll '$(head -n 1 "$status_file")' | bulk-fetch --dir '$dir'" >&2
}

# export_complete: DIR holds an export bulk-fetch finished (its log has the export_complete event).
export_complete() {
	[ -f "$dir/log.ndjson" ] && grep -q '"eventId":"export_complete"' "$dir/log.ndjson"
}

if [ "$new_export" = yes ]; then
	if [ -s "$status_file" ]; then
		# Servers such as Epic allow one export per client and Group: give the unfinished one up.
		old=$(head -n 1 "$status_file")
		echo "$prog: --new-export: cancelling the unfinished export $old" >&2
		bulk-poll --cancel "$old" || echo "$prog: could not cancel $old; starting the new export anyway" >&2
		rm -f "$status_file"
	fi
	# Until the new export is downloaded, a resumed run must still let bulk-fetch replace the old.
	: >"$new_file"
elif [ ! -s "$status_file" ] && [ -f "$dir/.bulkpipe/state.json" ]; then
	# Kicking off now would start an export on the server that bulk-fetch then refuses to mix
	# with the files already in DIR.
	if export_complete; then
		echo "$prog: the export in $dir is complete; nothing to do" >&2
		echo "$prog: to start a new export into $dir: $prog '$url' '$dir' --new-export ..." >&2
		exit 0
	fi
	echo "$prog: $dir holds the files of an export this script did not start (no $status_file);" \
		"to replace them with a new export: $prog '$url' '$dir' --new-export ..." >&2
	exit 1
fi

if [ -s "$status_file" ]; then
	echo "$prog: resuming the export of $status_file" >&2
else
	rc=0
	bulk-kickoff "$url" --log "$log" -o "$status_file" "$@" || rc=$?
	if [ "$rc" -eq 130 ]; then
		echo "$prog: interrupted; nothing was started, or bulk-kickoff said what may have been" >&2
		exit 130
	fi
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
# bulk-poll runs in the background, where sh makes it ignore SIGINT: an interrupt stops it here.
poll=
on_signal() {
	trap - INT TERM
	[ -z "$poll" ] || kill -TERM "$poll" 2>/dev/null || :
	echo "$prog: interrupted" >&2
	resume_hint
	exit 130
}
trap on_signal INT TERM
mkfifo "$work/manifest"

fetch_flags=
[ ! -e "$new_file" ] || fetch_flags=--new-export
bulk-poll "$status_url" --log "$log" >"$work/manifest" &
poll=$!
fetch_rc=0
# Word splitting of BULK_FETCH_FLAGS is intended: it holds options.
# shellcheck disable=SC2086
bulk-fetch --dir "$dir" --log "$log" ${fetch_flags:+"$fetch_flags"} ${BULK_FETCH_FLAGS:-} <"$work/manifest" || fetch_rc=$?
poll_rc=0
wait "$poll" || poll_rc=$?

if [ "$poll_rc" -eq 130 ] || [ "$fetch_rc" -eq 130 ]; then
	echo "$prog: interrupted" >&2
	resume_hint
	exit 130
fi
# bulk-poll first: when it fails, bulk-fetch fails too, for want of a manifest.
if [ "$poll_rc" -ne 0 ]; then
	echo "$prog: bulk-poll failed (exit $poll_rc); the files downloaded so far are kept in $dir" >&2
	resume_hint
	echo "$prog: if the server no longer knows the export (404, 410), start a new one:" \
		"$prog '$url' '$dir' --new-export ..." >&2
	exit "$poll_rc"
fi
if [ "$fetch_rc" -ne 0 ]; then
	echo "$prog: bulk-fetch failed (exit $fetch_rc); verified files are kept in $dir" >&2
	resume_hint
	exit "$fetch_rc"
fi
# Done: bulk-fetch deleted the export on the server, so there is nothing left to resume.
rm -f "$status_file" "$new_file"
echo "$prog: export complete in $dir" >&2

#!/bin/sh
# check-prereqs.sh - check that what `make test` needs is installed, before any test runs, so
# that no test is skipped for a missing tool without anyone noticing:
#   - Go itself, with cgo on (DuckDB is linked through cgo);
#   - a C compiler for that cgo build (gcc);
#   - jose, uuidgen (package uuid-runtime) and openssl, which the key tests run as
#     scripts/gen-keys.sh does.
# When something is missing it prints the one apt-get command that installs it, and exits 1.
#
# Usage: scripts/check-prereqs.sh        (GO=/path/to/go to use another go command)
set -eu

GO=${GO:-go}
me=check-prereqs

if ! command -v "$GO" >/dev/null 2>&1; then
  echo "$me: $GO not found: install Go 1.26 or later (https://go.dev/dl/) and put it on PATH" >&2
  exit 1
fi

missing=
# need COMMAND PACKAGE: PACKAGE provides COMMAND on Debian and Ubuntu.
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    case " $missing " in
    *" $2 "*) ;;
    *) missing="$missing $2" ;;
    esac
  fi
}

# go env CC is the compiler cgo runs ("gcc" unless CC says otherwise); its first word is the
# program, as in CC="ccache gcc".
cc=$("$GO" env CC)
cc=${cc%% *}
need "${cc:-gcc}" gcc
need jose jose
need uuidgen uuid-runtime
need openssl openssl

if [ -n "$missing" ]; then
  sudo=
  if [ "$(id -u)" != 0 ]; then
    sudo="sudo "
  fi
  echo "$me: make test needs programs that are not installed; install them with:" >&2
  echo "  ${sudo}apt-get install -y$missing" >&2
  exit 1
fi

# With a compiler present, CGO_ENABLED=0 can only come from the environment: the DuckDB
# package would not build, and its tests would fail with a less helpful message.
if [ "$("$GO" env CGO_ENABLED)" != 1 ]; then
  echo "$me: cgo is off (CGO_ENABLED=$("$GO" env CGO_ENABLED)); DuckDB needs it: unset CGO_ENABLED or set it to 1" >&2
  exit 1
fi

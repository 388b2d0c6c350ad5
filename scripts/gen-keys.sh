#!/bin/sh
# gen-keys.sh - make SMART Backend Services keys for bulkpipe and bulk-testserver.
#
# Usage: scripts/gen-keys.sh [DIR]        (DIR, created if missing, defaults to the current directory)
#
# Writes, in DIR:
#   private.jwks  an RS384 and an ES384 private key, each with a random kid (jose, uuidgen)
#   public.jwks   their public halves: register these with the server
#   private.pem   an RSA private key (PKCS#8; bulkpipe signs with it as RS384)
#   public.pem    its public key (PKIX)
# Private files are readable by their owner only. Existing files are never overwritten: the
# keys are made in a temporary folder and moved into place only when all four exist.
# Prints the paths written, one a line.
#
# Then, for example:
#   bulk-testserver --auth smart --client-id demo --public-key DIR/public.jwks
#   bulk-kickoff --smart-client-id demo --smart-key DIR/private.jwks URL
set -eu

prog=gen-keys.sh
dir=${1:-.}

need() {
	if ! command -v "$1" >/dev/null 2>&1; then
		echo "$prog: $1 is not installed (Debian: apt-get install $2)" >&2
		exit 1
	fi
}
need jose jose
need uuidgen uuid-runtime
need openssl openssl

mkdir -p "$dir"
for f in private.jwks public.jwks private.pem public.pem; do
	if [ -e "$dir/$f" ]; then
		echo "$prog: $dir/$f already exists; remove it first (keys are never overwritten)" >&2
		exit 1
	fi
done

umask 077
tmp=$(mktemp -d "$dir/.gen-keys.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

rsa_kid=$(uuidgen)
ec_kid=$(uuidgen)
jose jwk gen -s -i "{\"alg\":\"RS384\",\"kid\":\"$rsa_kid\"}" -i "{\"alg\":\"ES384\",\"kid\":\"$ec_kid\"}" \
	-o "$tmp/private.jwks"
jose jwk pub -s -i "$tmp/private.jwks" -o "$tmp/public.jwks"
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$tmp/private.pem"
openssl pkey -in "$tmp/private.pem" -pubout -out "$tmp/public.pem"
chmod 644 "$tmp/public.jwks" "$tmp/public.pem"

for f in private.jwks public.jwks private.pem public.pem; do
	mv "$tmp/$f" "$dir/$f"
	echo "$dir/$f"
done
echo "$prog: kids $rsa_kid (RS384) and $ec_kid (ES384); register public.jwks or public.pem with the server" >&2

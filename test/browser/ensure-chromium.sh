#!/usr/bin/env bash
# Makes sure Debian's chromium is at /usr/bin/chromium for test/browser/docs.test.ts: does nothing
# when it is there, else installs it with apt-get (as root, or through sudo without a password
# prompt; no TTY needed). A failed install is one line on stderr and exit status 1.
set -uo pipefail

CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0

die () { echo "ensure-chromium: $*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  die "$CHROMIUM is missing and installing it needs root: run 'apt-get install -y chromium' as root"
fi
command -v apt-get >/dev/null 2>&1 || die "$CHROMIUM is missing and there is no apt-get to install it (install Chromium yourself)"

echo "ensure-chromium: $CHROMIUM is missing, installing Debian's chromium package" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1; then
  die "apt-get update failed: $(grep -E '^(E|W):' "$log" | head -n 1 || tail -n 1 "$log")"
fi
if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium </dev/null >"$log" 2>&1; then
  die "apt-get install chromium failed: $(grep -E '^E:' "$log" | head -n 1 || tail -n 1 "$log")"
fi
[ -x "$CHROMIUM" ] || die "apt-get installed chromium but $CHROMIUM is still missing"
echo "ensure-chromium: installed $("$CHROMIUM" --version 2>/dev/null | head -n 1)" >&2

#!/usr/bin/env bash
# Rebuilds tasks/data/kjv_genesis.txt (the quickstart corpus) from Debian's
# public-domain King James Version text: one verse per line, references removed.
set -euo pipefail
command -v bible >/dev/null || { echo "install Debian's bible-kjv first: apt-get install bible-kjv" >&2; exit 1; }
out="$(dirname "$0")/../tasks/data/kjv_genesis.txt"
bible -f "gen1:1-50:26" | sed -E 's/^Ge[0-9]+:[0-9]+ //' > "$out.tmp"
mv "$out.tmp" "$out"
wc -l "$out"

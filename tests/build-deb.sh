#!/bin/bash
# Builds the Debian package as the README says, from a clean copy of the
# tree (what git tracks and what it would track), into OUTDIR: the .deb,
# the .changes and the build log. Shared by tests/package.sh and
# tests/systemd.sh so that CI builds the package once.
# Usage: tests/build-deb.sh OUTDIR (as root).
set -euo pipefail
out=${1:?usage: tests/build-deb.sh OUTDIR}
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/fqdnd"
mkdir "$out/fqdnd"
git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$out/fqdnd"
apt-get install -y --no-install-recommends dpkg-dev >/dev/null
(cd "$out/fqdnd" && apt-get build-dep -y ./ >/dev/null && dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1) \
    || { tail -50 "$out/build.log"; exit 1; }
rm -rf "$out/fqdnd"
ls "$out"/fqdnd_*_*.deb >/dev/null

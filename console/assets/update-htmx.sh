#!/usr/bin/env bash
# Takes htmx, which the console embeds, from the npm package htmx.org at a pinned version:
# dist/htmx.min.js and the package's LICENSE, with the version and the SHA-256 of the script
# recorded beside them (console's TestEmbeddedHTMX checks the three agree). npm verifies the
# tarball against the registry's integrity hash when it downloads it.
#
#   console/assets/update-htmx.sh            # the version in htmx.version again
#   console/assets/update-htmx.sh 2.0.12     # move to another version
#
# Only maintainers run this; building and testing need no Node.js (the files are committed).
set -euo pipefail
cd "$(dirname "$0")"
version=${1:-$(cat htmx.version)}
case $version in
  [0-9]*.[0-9]*.[0-9]*) ;;
  *) echo "update-htmx: give an exact version such as 2.0.11, not '$version'" >&2; exit 2 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "htmx.org@$version" >/dev/null)
tar -xzf "$tmp/htmx.org-$version.tgz" -C "$tmp"
[ "$(sed -n 's/^ *"version": "\(.*\)",$/\1/p' "$tmp/package/package.json")" = "$version" ] ||
  { echo "update-htmx: the package is not version $version" >&2; exit 1; }
cp "$tmp/package/dist/htmx.min.js" htmx.min.js
cp "$tmp/package/LICENSE" htmx.LICENSE
echo "$version" >htmx.version
sha256sum htmx.min.js | cut -d' ' -f1 >htmx.min.js.sha256
echo "update-htmx: htmx $version ($(wc -c <htmx.min.js) bytes, sha256 $(cat htmx.min.js.sha256))"

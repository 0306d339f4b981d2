#!/bin/sh
# The main job on the bundled example crate: hunt a flaky test under the recorder until
# it fails, pack the failing run into one archive, then replay that exact run from the
# archive alone (the example's build is deleted first: the archive carries the test
# binary, libc and ld.so).
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet -p cargo-chaos
bin="$PWD/target/debug"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== cargo record-test --until-fail (hunting tests::hashmap_order in tests/example-crate)"
status=0
"$bin/cargo-record-test" record-test --manifest-path tests/example-crate/Cargo.toml \
    --target-dir "$work/target" --until-fail --max-runs 100 --per-test hashmap_order || status=$?
if [ "$status" != 1 ]; then
    echo "expected a captured failure (exit 1), got exit $status" >&2
    exit 1
fi
archive=$(ls "$work"/target/chaos/archives/*.chaos.tar.zst)
mv "$archive" "$work/"
rm -rf "$work/target"
echo "== cargo replay-artifact (the build is gone; everything comes from the archive)"
cd "$work"
XDG_CACHE_HOME="$work/cache" "$bin/cargo-replay-artifact" replay-artifact "$work/$(basename "$archive")" || true

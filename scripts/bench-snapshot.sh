#!/usr/bin/env bash
# Snapshot save of a large store, oxcd next to etcd 3.5.1 on this machine, and
# what puts do while the snapshot streams (issue 10's figures).
#
# 1. Build oxcd and oxcdctl (release); install etcd 3.5.1 (scripts/etcd35.sh).
# 2. For each target, one member on fresh loopback ports and a temp data dir:
#    fill the store with SNAP_KEYS puts of SNAP_VAL bytes (distinct keys,
#    100 clients), read its db size from `endpoint status`.
# 3. Puts alone: `oxcdctl bench put` (100 clients, 256 B) for PUTS requests.
# 4. `etcdctl snapshot save` alone: wall time and file size.
# 5. Both at once: the same put run while a snapshot streams; the put rate
#    then is what clients see during a backup.
# 6. Print one markdown row per target; kill only the servers started here.
#
# SNAP_KEYS (default 1000000) x SNAP_VAL (default 1000) gives a store of
# about 1 GB. Targets (TARGETS, default "etcd oxcd") run one after the
# other, never together; LOG_DIR keeps each server's log.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SNAP_KEYS=${SNAP_KEYS:-1000000}
SNAP_VAL=${SNAP_VAL:-1000}
PUTS=${PUTS:-30000}
TARGETS=${TARGETS:-etcd oxcd}
# When set, each server's log is copied there at the end of its run.
LOG_DIR=${LOG_DIR:-}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
log() { printf '[bench-snapshot] %s\n' "$*" >&2; }

log "building oxcd and oxcdctl (release)"
(cd "$ROOT" && cargo build --release --quiet -p node --bins)
OXCD_BIN=$TARGET_DIR/release/oxcd
OXCDCTL_BIN=$TARGET_DIR/release/oxcdctl
ETCD35=$("$ROOT/scripts/etcd35.sh")
ETCDCTL=$ETCD35/etcdctl
TMP=$(mktemp -d "${TMPDIR:-/tmp}/oxcd-bench-snapshot.XXXXXX")
PID=""
cleanup() {
    if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# free_ports N: N distinct free loopback ports (scripts/lib.sh).
source "$ROOT/scripts/lib.sh"

# start TARGET: one member; sets PID and EP.
start() {
    local target=$1 bin
    read -r client peer < <(free_ports 2)
    EP=127.0.0.1:$client
    case $target in
        etcd) bin=$ETCD35/etcd ;;
        oxcd) bin=$OXCD_BIN ;;
    esac
    "$bin" --name b --data-dir "$TMP/$target" \
        --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "b=http://127.0.0.1:$peer" \
        --quota-backend-bytes 8589934592 >"$TMP/$target.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 200); do
        if ETCDCTL_API=3 "$ETCDCTL" --endpoints "$EP" endpoint health >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    log "$target did not become healthy"; cat "$TMP/$target.log" >&2; exit 1
}

rps() { python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["rps"]))' "$1"; }

printf '| target | keys x value | db size | puts alone (op/s) | snapshot save alone | file | puts during snapshot (op/s) | snapshot save during puts |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|\n'
for target in $TARGETS; do
    start "$target"
    log "$target: filling $SNAP_KEYS keys of $SNAP_VAL bytes"
    "$OXCDCTL_BIN" bench put --endpoints "$EP" --total "$SNAP_KEYS" --conns 10 --clients 100 \
        --val-size "$SNAP_VAL" --key-space-size "$SNAP_KEYS" --sequential-keys >/dev/null
    db=$(ETCDCTL_API=3 "$ETCDCTL" --endpoints "$EP" endpoint status -w json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])')
    "$OXCDCTL_BIN" bench put --endpoints "$EP" --total "$PUTS" --conns 10 --clients 100 \
        --val-size 256 --key-space-size 100000 --json "$TMP/alone.json" >/dev/null
    start_s=$(date +%s.%N)
    ETCDCTL_API=3 "$ETCDCTL" --endpoints "$EP" snapshot save "$TMP/$target.db" >/dev/null 2>&1
    alone_s=$(python3 -c "import time; print(f'{time.time() - $start_s:.2f}')")
    size=$(stat -c %s "$TMP/$target.db")
    rm -f "$TMP/$target.db"
    start_s=$(date +%s.%N)
    ( ETCDCTL_API=3 "$ETCDCTL" --endpoints "$EP" snapshot save "$TMP/$target.db" >/dev/null 2>&1
      python3 -c "import time; print(f'{time.time() - $start_s:.2f}')" >"$TMP/during.s" ) &
    snap=$!
    "$OXCDCTL_BIN" bench put --endpoints "$EP" --total "$PUTS" --conns 10 --clients 100 \
        --val-size 256 --key-space-size 100000 --json "$TMP/during.json" >/dev/null
    wait "$snap"
    rm -f "$TMP/$target.db"
    printf '| %s | %s x %s B | %s MB | %s | %s s | %s MB | %s | %s s |\n' "$target" "$SNAP_KEYS" "$SNAP_VAL" \
        "$((db / 1000000))" "$(rps "$TMP/alone.json")" "$alone_s" "$((size / 1000000))" \
        "$(rps "$TMP/during.json")" "$(cat "$TMP/during.s")"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    if [[ -n "$LOG_DIR" ]]; then mkdir -p "$LOG_DIR"; cp "$TMP/$target.log" "$LOG_DIR/"; fi
    rm -rf "${TMP:?}/$target"
done

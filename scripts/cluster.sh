#!/usr/bin/env bash
# A three-member oxcd cluster on 127.0.0.1, in the background, as etcd's
# Procfile lays it out: client ports 2379/22379/32379, peer ports
# 2380/12380/22380. Data and logs live under cluster/ (CLUSTER_DIR).
#
#   scripts/cluster.sh start    start the members not already running
#   scripts/cluster.sh stop     stop exactly the PIDs this script started
#   scripts/cluster.sh status   etcdctl endpoint status table for the three
#
# OXCD_FLAGS adds flags to every member (split on spaces), e.g.
# OXCD_FLAGS=--enable-chaos for oxcdctl chaos.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
DIR=${CLUSTER_DIR:-$here/cluster}
OXCD=${OXCD_BIN:-$here/target/debug/oxcd}
ETCDCTL=${ETCDCTL_BIN:-etcdctl}
read -r -a EXTRA <<<"${OXCD_FLAGS:-}"
NAMES=(infra1 infra2 infra3)
CLIENT=(2379 22379 32379)
PEER=(2380 12380 22380)
ENDPOINTS="127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"
INITIAL="infra1=http://127.0.0.1:2380,infra2=http://127.0.0.1:12380,infra3=http://127.0.0.1:22380"

# A member runs when its recorded PID is alive, not a zombie, and still an
# oxcd process (PIDs get reused).
running() {
  [ -f "$1" ] || return 1
  local pid state
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "${state#Z}" = "$state" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q oxcd
}

start() {
  [ -x "$OXCD" ] || { echo "no oxcd binary at $OXCD (run: cargo build -p node --bins)" >&2; exit 1; }
  mkdir -p "$DIR"
  for i in 0 1 2; do
    name=${NAMES[$i]} pidfile="$DIR/${NAMES[$i]}.pid"
    if running "$pidfile"; then echo "$name already running (pid $(cat "$pidfile"))"; continue; fi
    state=new
    [ -d "$DIR/$name.oxcd/member" ] && state=existing
    "$OXCD" --name "$name" --data-dir "$DIR/$name.oxcd" \
      --listen-client-urls "http://127.0.0.1:${CLIENT[$i]}" \
      --advertise-client-urls "http://127.0.0.1:${CLIENT[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${PEER[$i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${PEER[$i]}" \
      --initial-cluster-token etcd-cluster-1 --initial-cluster "$INITIAL" \
      --initial-cluster-state "$state" "${EXTRA[@]}" >>"$DIR/$name.log" 2>&1 &
    echo $! >"$pidfile"
    echo "$name started (pid $!, client 127.0.0.1:${CLIENT[$i]}, log $DIR/$name.log)"
  done
  # Wait (bounded) until the cluster has a leader and serves a linearizable read.
  for _ in $(seq 1 100); do
    if ETCDCTL_API=3 "$ETCDCTL" --endpoints "$ENDPOINTS" --command-timeout=1s get health >/dev/null 2>&1; then
      echo "cluster is serving on $ENDPOINTS"; return 0
    fi
    sleep 0.1
  done
  echo "cluster did not start serving within 10 s; see $DIR/*.log" >&2
  exit 1
}

stop() {
  for name in "${NAMES[@]}"; do
    pidfile="$DIR/$name.pid"
    if running "$pidfile"; then
      pid=$(cat "$pidfile")
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "$name stopped (pid $pid)"
    fi
    rm -f "$pidfile"
  done
}

status() {
  ETCDCTL_API=3 "$ETCDCTL" --endpoints "$ENDPOINTS" endpoint status -w table
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

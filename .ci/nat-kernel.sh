#!/usr/bin/env bash
# Kernel NAT test harness: real Linux NAT boxes (nftables + conntrack) in network namespaces.
#
#   .ci/nat-kernel.sh selftest [A,B ...]   UDP hole-punching check with .ci/nat-punch.py
#   .ci/nat-kernel.sh run BIN_DIR [A,B ...] the real `stt` binaries (relay, listen, send)
#   .ci/nat-kernel.sh clean                 removes namespaces left by runs that were killed -9
#
# A,B is a pair of NAT presets (peer A's NAT, peer B's NAT), e.g. `easy,hard`. Presets:
#   none      plain router: no NAT, no filtering; the peer's private LAN is routed on the public
#             segment (the other NAT box and the relay get a route to it), so the peer is
#             reachable at its own 10.x address like a host with a public address.
#   easy      `masquerade` (endpoint-independent mapping; Linux keeps the source port when it
#             can) + inbound filter: on the WAN side only `ct state established,related` passes
#             (address-and-port-dependent filtering, like a home router).
#   hard      `masquerade random` (a new random port per destination: symmetric NAT) + the same
#             inbound filter. Punching cannot work; traffic must be relayed.
#   fullcone  (extra) endpoint-independent mapping via a dynamic nft map (as in
#             n0-computer/patchbay) and no inbound filter: any host can reach a mapped port.
#   masq      (extra) plain `masquerade` without the inbound filter, to show why the filter
#             matters (an early inbound probe leaves a conntrack entry that clashes).
#
# Topology (one fresh set of namespaces per cell, all named sttnat-<pid>-<random>-*):
#
#   peerA(-pa) 10.1.0.2 --veth-- 10.1.0.1 natA(-na) 198.18.0.2 --veth--+
#                                                                      |  br0 in -pub
#   peerB(-pb) 10.2.0.2 --veth-- 10.2.0.1 natB(-nb) 198.18.0.3 --veth--+  (the "internet":
#                                                                      |   one L2 segment,
#                                        relay(-rl) 198.18.0.1 --veth--+   198.18.0.0/24)
#
# The public segment is a bridge in its own namespace; the relay is an ordinary host on it
# (it does not forward). The peers' default route points at their NAT box; the NAT boxes
# need no default route (all public addresses are on-link). Every veth is created directly
# inside the namespaces (`ip -n NS link add ... peer ... netns NS2`), so nothing is ever
# created in, or changed in, the root namespace. The EXIT trap kills what runs in these
# namespaces and deletes them, also on failure and Ctrl-C.
#
# Without root or network namespaces (or nft, python3) it prints why and exits 0, unless
# CI (any value but 0/false) or STT_REQUIRE_NETNS=1 is set: then it exits 1.
#
# Knobs (environment): STT_NAT_TIMEOUT (timeout of each stt command, 60), STT_NAT_PAYLOAD_BYTES
# (4000000), STT_NAT_LISTEN_WAIT (s between listen and send, 1), STT_NAT_STT_FLAGS (e.g. "-v",
# put before the subcommand), STT_NAT_KEEP=1 (keep the logs), STT_NAT_DEBUG=1 (selftest: print
# the nft rules and conntrack tables of both NAT boxes after each cell).
# Stop it with Ctrl-C or SIGTERM (a copy started with `&` by a non-interactive shell ignores
# SIGINT, as bash does for such jobs; use TERM there). After kill -9, `clean` removes leftovers.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PUNCH="$HERE/nat-punch.py"

# ---- Expected outcomes: direct | relayed | any (not asserted). Key: "PRESET_A,PRESET_B". ----
# selftest: the python punch probe (both sides also answer a probe's source address, as ICE's
# peer-reflexive candidates do). These are the outcomes measured on Linux 6.18, nftables 1.0.6.
declare -A EXPECT_SELFTEST=(
    [none,none]=direct [none,easy]=direct [none,hard]=direct
    [easy,none]=direct [easy,easy]=direct [easy,hard]=relayed
    [hard,none]=direct [hard,easy]=relayed [hard,hard]=relayed
    [fullcone,fullcone]=direct [fullcone,easy]=direct [fullcone,hard]=direct
    [easy,fullcone]=direct [hard,fullcone]=direct
    [masq,masq]=any [masq,easy]=any [easy,masq]=any
)
# run: the final path that `stt send` reports (its last "path: ..." line).
declare -A EXPECT_RUN=(
    [none,none]=direct [none,easy]=direct [none,hard]=direct
    [easy,none]=direct [easy,easy]=direct [easy,hard]=relayed
    [hard,none]=direct [hard,easy]=relayed [hard,hard]=relayed
)
SELFTEST_PAIRS_DEFAULT="none,none none,easy none,hard easy,none easy,easy easy,hard hard,none hard,easy hard,hard"
RUN_PAIRS_DEFAULT="$SELFTEST_PAIRS_DEFAULT"

# ---- Addresses ----
RELAY_IP=198.18.0.1
declare -A WAN_IP=([a]=198.18.0.2 [b]=198.18.0.3)
declare -A LAN_NET=([a]=10.1.0 [b]=10.2.0)
RELAY_PORT=7000          # stt relay
RENDEZVOUS_PORT=3478     # selftest rendezvous
declare -A PUNCH_PORT=([a]=40001 [b]=40002)
STT_TIMEOUT=${STT_NAT_TIMEOUT:-60}
PAYLOAD_BYTES=${STT_NAT_PAYLOAD_BYTES:-4000000}
LISTEN_WAIT=${STT_NAT_LISTEN_WAIT:-1}   # seconds between starting `listen` and `send`

P="sttnat-$$-$RANDOM"    # prefix of every namespace this run creates
WORK=""
FAILED_LOGS=""
CELL_FAILED=0

say() { printf '%s\n' "$*"; }
die() { printf 'nat-kernel: %s\n' "$*" >&2; exit 1; }
now_us() { local t=${EPOCHREALTIME/./}; printf '%s' "$((10#$t))"; }
secs_since() { local d=$(( $(now_us) - $1 )); printf '%d.%01d' "$((d / 1000000))" "$(( (d % 1000000) / 100000 ))"; }

ns_of() { printf '%s-%s' "$P" "$1"; }   # pa na pub rl nb pb
in_ns() { local ns; ns=$(ns_of "$1"); shift; ip netns exec "$ns" "$@"; }

# Kills every process in our namespaces (all of them are ours) and deletes the namespaces.
teardown() {
    local ns pids
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${P}-" || true); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -9 $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
}

on_exit() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    teardown
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "${STT_NAT_KEEP:-0}" = 1 ]; then say "logs kept in $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'say "nat-kernel: interrupted"; exit 130' INT
trap 'say "nat-kernel: terminated"; exit 143' TERM

# Refuses (exit 0) or fails (exit 1) when this machine cannot run the harness.
require() {
    local why="" need_python=$1
    if [ "$(id -u)" -ne 0 ]; then
        why="not root (network namespaces and nftables need root)"
    elif ! command -v ip > /dev/null || ! ip netns list > /dev/null 2>&1; then
        why="'ip netns' is unavailable (install iproute2)"
    elif ! command -v nft > /dev/null; then
        why="nft is missing (apt-get install -y nftables)"
    elif [ "$need_python" = 1 ] && ! command -v python3 > /dev/null; then
        why="python3 is missing"
    elif ! ip netns add "$P-probe" 2> /dev/null; then
        why="cannot create a network namespace (no CAP_SYS_ADMIN in this container?)"
    elif ! ip netns exec "$P-probe" nft -f - > /dev/null 2>&1 <<'EOF'
table ip probe {
    chain post { type nat hook postrouting priority srcnat; policy accept; masquerade random; }
    chain pre { type filter hook prerouting priority -150; policy accept; ct state established accept; }
}
EOF
    then
        why="nftables NAT/conntrack does not work in a network namespace here (kernel modules?)"
    fi
    ip netns del "$P-probe" 2> /dev/null || true
    [ -z "$why" ] && return 0
    if { [ -n "${CI:-}" ] && [ "${CI}" != 0 ] && [ "${CI}" != false ]; } || [ "${STT_REQUIRE_NETNS:-0}" = 1 ]; then
        say "nat-kernel: FAIL: cannot run: $why (CI/STT_REQUIRE_NETNS requires it)"
        exit 1
    fi
    say "nat-kernel: SKIPPED: $why (set STT_REQUIRE_NETNS=1 to make this an error)"
    exit 0
}

# apply_nat PRESET NS WAN_IF: the NAT box behaviour of one namespace (nftables table `sttnat`).
apply_nat() {
    local preset=$1 ns=$2 wan=$3
    # Inbound filter: only packets of connections the inside started may come in on the WAN.
    # Hooked at prerouting priority -150 (after conntrack at -200, before DNAT at -100), so it
    # covers packets to the box itself and forwarded ones. A dropped packet's conntrack entry
    # is never confirmed, so an early probe from the other peer leaves no state behind.
    local filter="
    chain inbound {
        type filter hook prerouting priority -150; policy accept;
        iifname \"$wan\" ct state established,related accept
        iifname \"$wan\" drop
    }"
    # An (empty) nat prerouting chain: registers the NAT hook there so replies are un-NATed.
    local prenat="
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
    }"
    case "$preset" in
        none)
            return 0 ;;
        easy)
            ip netns exec "$ns" nft -f - <<EOF
table ip sttnat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "$wan" masquerade
    }$prenat$filter
}
EOF
            ;;
        hard)
            ip netns exec "$ns" nft -f - <<EOF
table ip sttnat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "$wan" masquerade random
    }$prenat$filter
}
EOF
            ;;
        masq)
            ip netns exec "$ns" nft -f - <<EOF
table ip sttnat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "$wan" masquerade
    }$prenat
}
EOF
            ;;
        fullcone)
            # The map remembers, per source port, which inside host:port sent; any inbound UDP
            # packet to that port is sent there (endpoint-independent mapping and filtering).
            ip netns exec "$ns" nft -f - <<EOF
table ip sttnat {
    map fullcone {
        type inet_service : ipv4_addr . inet_service
        flags dynamic,timeout
        timeout 300s
        size 65536
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "$wan" meta l4proto udp dnat ip to udp dport map @fullcone
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "$wan" meta l4proto udp update @fullcone { udp sport timeout 300s : ip saddr . udp sport }
        oifname "$wan" masquerade
    }
}
EOF
            ;;
        *)
            die "unknown NAT preset '$preset' (none, easy, hard, fullcone, masq)" ;;
    esac
}

sysctls() {
    local ns=$1 fwd=$2
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward="$fwd" net.ipv4.conf.all.rp_filter=0 \
        net.ipv4.conf.default.rp_filter=0 net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1
}

# build PRESET_A PRESET_B: the six namespaces of one cell.
build() {
    local -A preset=([a]=$1 [b]=$2)
    local s n pub
    for n in pa na pub rl nb pb; do
        ip netns add "$(ns_of "$n")"
        ip -n "$(ns_of "$n")" link set lo up
    done
    pub=$(ns_of pub)
    for n in pa pb rl pub; do sysctls "$(ns_of "$n")" 0; done
    sysctls "$(ns_of na)" 1
    sysctls "$(ns_of nb)" 1
    # The bridge must not hand frames to netfilter (br_netfilter may be loaded on the host).
    if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
        ip netns exec "$pub" sysctl -qw net.bridge.bridge-nf-call-iptables=0 \
            net.bridge.bridge-nf-call-arptables=0 net.bridge.bridge-nf-call-ip6tables=0 2> /dev/null || true
    fi
    ip -n "$pub" link add br0 type bridge forward_delay 0 stp_state 0
    ip -n "$pub" link set br0 up

    ip -n "$(ns_of rl)" link add eth0 type veth peer name rl netns "$pub"
    ip -n "$pub" link set rl master br0 up
    ip -n "$(ns_of rl)" addr add "$RELAY_IP/24" dev eth0
    ip -n "$(ns_of rl)" link set eth0 up

    for s in a b; do
        local nat peer
        nat=$(ns_of "n$s"); peer=$(ns_of "p$s")
        ip -n "$nat" link add wan type veth peer name "n$s" netns "$pub"
        ip -n "$pub" link set "n$s" master br0 up
        ip -n "$nat" addr add "${WAN_IP[$s]}/24" dev wan
        ip -n "$nat" link set wan up
        ip -n "$nat" link add lan type veth peer name eth0 netns "$peer"
        ip -n "$nat" addr add "${LAN_NET[$s]}.1/24" dev lan
        ip -n "$nat" link set lan up
        ip -n "$peer" addr add "${LAN_NET[$s]}.2/24" dev eth0
        ip -n "$peer" link set eth0 up
        ip -n "$peer" route add default via "${LAN_NET[$s]}.1"
    done
    # `none`: the LAN behind that box is routed, so the relay and the other NAT box reach it.
    for s in a b; do
        if [ "${preset[$s]}" = none ]; then
            local other=b; [ "$s" = b ] && other=a
            ip -n "$(ns_of rl)" route add "${LAN_NET[$s]}.0/24" via "${WAN_IP[$s]}"
            ip -n "$(ns_of "n$other")" route add "${LAN_NET[$s]}.0/24" via "${WAN_IP[$s]}"
        fi
    done
    apply_nat "${preset[a]}" "$(ns_of na)" wan
    apply_nat "${preset[b]}" "$(ns_of nb)" wan
}

# wait_for FILE PATTERN SECONDS
wait_for() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        grep -q -- "$2" "$1" 2> /dev/null && return 0
        sleep 0.1
    done
    return 1
}

show_logs() {
    local f
    for f in "$@"; do
        [ -e "$f" ] || continue
        printf -- '----- %s -----\n' "$(basename "$f")"
        tail -n 60 "$f"
    done
}

field() { sed -n "s/.*[[:space:]]$1=\\([^[:space:]]*\\).*/\\1/p" "$2" 2> /dev/null | head -n 1 || true; }

# ---------------------------------------------------------------- selftest
selftest_cell() {
    local a=$1 b=$2 dir=$3 t0 n rv pa pb ra rb da db verdict exp ok
    t0=$(now_us)
    build "$a" "$b"
    in_ns rl python3 "$PUNCH" rendezvous --bind "$RELAY_IP:$RENDEZVOUS_PORT" --lifetime 20 > "$dir/rendezvous.log" 2>&1 &
    rv=$!
    wait_for "$dir/rendezvous.log" "listening" 5 || { show_logs "$dir/rendezvous.log"; die "rendezvous did not start"; }
    in_ns pb python3 "$PUNCH" peer --name B --bind "0.0.0.0:${PUNCH_PORT[b]}" --rendezvous "$RELAY_IP:$RENDEZVOUS_PORT" > "$dir/B.log" 2>&1 &
    pb=$!
    in_ns pa python3 "$PUNCH" peer --name A --bind "0.0.0.0:${PUNCH_PORT[a]}" --rendezvous "$RELAY_IP:$RENDEZVOUS_PORT" > "$dir/A.log" 2>&1 &
    pa=$!
    ra=0; wait "$pa" || ra=$?
    rb=0; wait "$pb" || rb=$?
    kill -TERM "$rv" 2> /dev/null || true
    wait "$rv" 2> /dev/null || true
    if [ "${STT_NAT_DEBUG:-0}" = 1 ]; then
        for n in na nb; do say "== conntrack/nft in $n"; in_ns "$n" nft list ruleset; in_ns "$n" conntrack -L -p udp 2>&1 || true; done
    fi
    teardown
    da=$(field direct "$dir/A.log"); db=$(field direct "$dir/B.log")
    if [ "$ra" -ne 0 ] || [ "$rb" -ne 0 ] || [ -z "$da" ] || [ -z "$db" ]; then
        verdict=FAIL
    elif [ "$da" = 1 ] && [ "$db" = 1 ]; then
        verdict=direct
    elif [ "$(field relay "$dir/A.log")" = 1 ] && [ "$(field relay "$dir/B.log")" = 1 ]; then
        verdict=relayed
        if [ "$da" = 1 ] || [ "$db" = 1 ]; then verdict="relayed(one-way)"; fi
    else
        verdict=FAIL
    fi
    exp=${EXPECT_SELFTEST[$a,$b]:-any}
    if [ "$verdict" = FAIL ]; then ok=FAIL
    elif [ "$exp" = any ] || [ "$exp" = "${verdict%%(*}" ]; then ok=ok
    else ok=FAIL; fi
    local pubA pubB seenA seenB
    pubA=$(sed -n 's/^rendezvous: A is at //p' "$dir/rendezvous.log" | tr '\n' ' ')
    pubB=$(sed -n 's/^rendezvous: B is at //p' "$dir/rendezvous.log" | tr '\n' ' ')
    seenA=$(field seen_as "$dir/B.log"); seenB=$(field seen_as "$dir/A.log")
    printf '%-20s %-17s %-8s %-5s %-20s %-20s %-20s %-20s %ss\n' "$a x $b" "$verdict" "$exp" "$ok" \
        "${pubA% }" "${seenA:--}" "${pubB% }" "${seenB:--}" "$(secs_since "$t0")"
    if [ "$ok" != ok ]; then
        FAILED_LOGS+=" $dir"
        CELL_FAILED=$((CELL_FAILED + 1))
    fi
}

selftest() {
    require 1
    [ -r "$PUNCH" ] || die "missing $PUNCH"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$P.XXXXXX")
    local pairs=("$@") pair a b i=0 t0
    [ ${#pairs[@]} -gt 0 ] || read -r -a pairs <<< "$SELFTEST_PAIRS_DEFAULT"
    t0=$(now_us)
    say "NAT selftest: UDP hole punching between peerA (10.1.0.2:${PUNCH_PORT[a]}) and peerB (10.2.0.2:${PUNCH_PORT[b]}), rendezvous $RELAY_IP:$RENDEZVOUS_PORT"
    say "(public = address the rendezvous saw; seen-by-peer = source of the probes the other peer received)"
    printf '%-20s %-17s %-8s %-5s %-20s %-20s %-20s %-20s %s\n' "pair (A x B)" result expected check \
        "A public" "A seen by B" "B public" "B seen by A" time
    for pair in "${pairs[@]}"; do
        a=${pair%,*}; b=${pair#*,}
        i=$((i + 1))
        mkdir -p "$WORK/$i-$a-$b"
        selftest_cell "$a" "$b" "$WORK/$i-$a-$b"
    done
    say "selftest total: $(secs_since "$t0")s"
    if [ "$CELL_FAILED" -ne 0 ]; then
        local d
        for d in $FAILED_LOGS; do say "===== logs of $(basename "$d")"; show_logs "$d"/*.log; done
        say "nat-selftest: $(( ${#pairs[@]} - CELL_FAILED )) passed, $CELL_FAILED failed"
        exit 1
    fi
    say "nat-selftest: ${#pairs[@]} passed, 0 failed"
}

# ---------------------------------------------------------------- run (real stt binaries)
stop_proc() {   # stop_proc PID SIGNAL: that signal, then TERM after 5 s, then KILL after 2 s more
    local pid=$1 sig=$2 i
    kill "-$sig" "$pid" 2> /dev/null || return 0
    for ((i = 0; i < 70; i++)); do
        kill -0 "$pid" 2> /dev/null || break
        if [ "$i" -eq 50 ]; then kill -TERM "$pid" 2> /dev/null || true; fi
        sleep 0.1
    done
    kill -KILL "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
}

run_cell() {
    local a=$1 b=$2 dir=$3 keys=$4 node_id=$5 payload=$6
    local t0 ts relay_pid listen_pid rc=0 path exp result ttfb dur reason=""
    # shellcheck disable=SC2206 # STT_NAT_STT_FLAGS is split into words on purpose (e.g. "-v")
    local stt=("$STT_BIN" ${STT_NAT_STT_FLAGS:-})
    t0=$(now_us)
    build "$a" "$b"
    mkdir -p "$dir/out"
    in_ns rl timeout "$STT_TIMEOUT" "${stt[@]}" relay --bind "$RELAY_IP:$RELAY_PORT" \
        --shared-seed "$keys/shared.seed" > "$dir/relay.log" 2>&1 &
    relay_pid=$!
    if ! wait_for "$dir/relay.log" "relay listening on" 10; then
        reason="relay did not print 'relay listening on'"
    else
        in_ns pb timeout "$STT_TIMEOUT" "${stt[@]}" listen --bind 0.0.0.0:9000 --relay "$RELAY_IP:$RELAY_PORT" \
            --shared-seed "$keys/shared.seed" --node-seed "$keys/nodeB.seed" --out "$dir/out" > "$dir/listen.log" 2>&1 &
        listen_pid=$!
        sleep "$LISTEN_WAIT"
        ts=$(now_us)
        in_ns pa timeout "$STT_TIMEOUT" "${stt[@]}" send --relay "$RELAY_IP:$RELAY_PORT" --peer "$node_id" \
            --shared-seed "$keys/shared.seed" "$payload" > "$dir/send.out" 2> "$dir/send.err" || rc=$?
        dur=$(secs_since "$ts")
        stop_proc "$listen_pid" INT
        [ "$rc" -eq 0 ] || reason="send exited $rc"
    fi
    stop_proc "$relay_pid" TERM
    teardown
    path=$(grep -oE 'path: (direct|relayed)' "$dir/send.err" 2> /dev/null | tail -n 1 | awk '{print $2}' || true)
    ttfb=$(grep -ihoE '(time to )?first byte[^,;)]*' "$dir/send.err" "$dir/listen.log" 2> /dev/null | head -n 1 || true)
    exp=${EXPECT_RUN[$a,$b]:-any}
    if [ -z "$reason" ] && ! cmp -s "$payload" "$dir/out/$(basename "$payload")"; then
        reason="received file missing or different"
    fi
    if [ -z "$reason" ] && [ -z "$path" ]; then reason="send printed no 'path: direct|relayed' line"; fi
    # The receiver must know its confirmation arrived (a relayed path once lost it).
    if [ -z "$reason" ] && grep -q "may not have reached" "$dir/listen.log" 2> /dev/null; then
        reason="the listener doubts its confirmation reached the sender"
    fi
    if [ -z "$reason" ] && [ "$exp" != any ] && [ "$path" != "$exp" ]; then
        reason="path $path, expected $exp"
    fi
    result=PASS; [ -z "$reason" ] || result=FAIL
    printf '%-14s %-6s %-8s %-8s %-28s %-8s %-8s %s\n' "$a x $b" "$result" "${path:--}" "$exp" \
        "${ttfb:--}" "${dur:--}s" "$(secs_since "$t0")s" "$reason"
    if [ "$result" = FAIL ]; then
        say "===== logs of $a x $b ($dir)"
        show_logs "$dir/relay.log" "$dir/listen.log" "$dir/send.out" "$dir/send.err"
        CELL_FAILED=$((CELL_FAILED + 1))
    fi
}

run_stt() {
    local bin_dir=${1:-}
    [ -n "$bin_dir" ] || die "usage: $0 run BIN_DIR [A,B ...]"
    shift
    require 0
    [ -x "$bin_dir/stt" ] || die "no executable $bin_dir/stt (BIN_DIR is the folder holding the stt binary, e.g. target/release)"
    STT_BIN="$(cd "$bin_dir" && pwd)/stt"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$P.XXXXXX")
    local keys="$WORK/keys" node_id payload pairs=("$@") pair a b i=0 t0
    [ ${#pairs[@]} -gt 0 ] || read -r -a pairs <<< "$RUN_PAIRS_DEFAULT"
    mkdir -p "$keys"; chmod 700 "$keys"
    "$STT_BIN" keygen --out "$keys/shared.seed" > /dev/null
    "$STT_BIN" keygen --out "$keys/nodeB.seed" > /dev/null
    node_id=$("$STT_BIN" id --node-seed "$keys/nodeB.seed")
    payload="$WORK/payload.bin"
    head -c "$PAYLOAD_BYTES" /dev/urandom > "$payload"
    t0=$(now_us)
    say "NAT run: stt send (peerA) -> stt listen (peerB, node $node_id) via relay $RELAY_IP:$RELAY_PORT, $PAYLOAD_BYTES bytes"
    printf '%-14s %-6s %-8s %-8s %-28s %-8s %-8s %s\n' "pair (A x B)" result path expected "first byte" send cell note
    for pair in "${pairs[@]}"; do
        a=${pair%,*}; b=${pair#*,}
        i=$((i + 1))
        mkdir -p "$WORK/$i-$a-$b"
        run_cell "$a" "$b" "$WORK/$i-$a-$b" "$keys" "$node_id" "$payload"
    done
    say "run total: $(secs_since "$t0")s"
    say "nat-run: $(( ${#pairs[@]} - CELL_FAILED )) passed, $CELL_FAILED failed"
    [ "$CELL_FAILED" -eq 0 ]
}

# ---------------------------------------------------------------- clean
clean_stale() {
    local ns pid pids
    for ns in $(ip netns list 2> /dev/null | awk '{print $1}' | grep -E '^sttnat-[0-9]+-' || true); do
        pid=${ns#sttnat-}; pid=${pid%%-*}
        if ! kill -0 "$pid" 2> /dev/null; then
            pids=$(ip netns pids "$ns" 2> /dev/null || true)
            # shellcheck disable=SC2086
            [ -z "$pids" ] || kill -9 $pids 2> /dev/null || true
            ip netns del "$ns" && say "removed stale namespace $ns"
        fi
    done
    for ns in "${TMPDIR:-/tmp}"/sttnat-[0-9]*-*.*; do
        [ -d "$ns" ] || continue
        pid=${ns##*/sttnat-}; pid=${pid%%-*}
        if ! kill -0 "$pid" 2> /dev/null; then rm -rf "$ns" && say "removed stale log directory $ns"; fi
    done
}

case "${1:-}" in
    selftest) shift; selftest "$@" ;;
    run) shift; run_stt "$@" ;;
    clean) clean_stale ;;
    *) say "usage: $0 selftest [A,B ...] | run BIN_DIR [A,B ...] | clean   (presets: none easy hard fullcone masq)"; exit 2 ;;
esac

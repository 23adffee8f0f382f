#!/usr/bin/env bash
# End-to-end check of the `stt` binary over loopback: keygen, id, recv + send with confirmation,
# seed-permission refusal. Bounded in time; cleans up after itself.
set -euo pipefail
bin="$1"
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin" keygen --out "$dir/shared.seed"
"$bin" keygen --out "$dir/node.seed"
if "$bin" keygen --out "$dir/shared.seed" 2>/dev/null; then echo "FAIL: keygen overwrote a seed"; exit 1; fi
id=$("$bin" id --node-seed "$dir/node.seed")
[ ${#id} -eq 64 ] || { echo "FAIL: bad node id '$id'"; exit 1; }
cp "$dir/shared.seed" "$dir/open.seed"; chmod 644 "$dir/open.seed"
if "$bin" id --node-seed "$dir/open.seed" 2>"$dir/err"; then echo "FAIL: world-readable seed accepted"; exit 1; fi
grep -q "chmod 600" "$dir/err" || { echo "FAIL: no fix-it message"; cat "$dir/err"; exit 1; }
head -c 3000000 /dev/urandom > "$dir/payload"
port=$((20000 + RANDOM % 20000))
timeout 60 "$bin" recv --bind "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --node-seed "$dir/node.seed" --out "$dir/received" > "$dir/recv.log" &
recv_pid=$!
sleep 0.5
timeout 60 "$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --peer "$id" "$dir/payload"
wait "$recv_pid"
cmp "$dir/payload" "$dir/received" || { echo "FAIL: received file differs"; exit 1; }
# The same over WebSocket: listen --ws-bind, send --to ws://.
mkdir -p "$dir/in"
wsport=$((20000 + RANDOM % 20000))
timeout 60 "$bin" listen --bind "127.0.0.1:0" --ws-bind "127.0.0.1:$wsport" --shared-seed "$dir/shared.seed" --out "$dir/in" > "$dir/listen.log" 2>&1 &
listen_pid=$!
sleep 0.5
timeout 60 "$bin" send --to "ws://127.0.0.1:$wsport/stt" --shared-seed "$dir/shared.seed" "$dir/payload"
kill -INT "$listen_pid"; wait "$listen_pid" || true
got=$(ls "$dir/in" | head -n 1)
cmp "$dir/payload" "$dir/in/$got" || { echo "FAIL: file received over WebSocket differs"; cat "$dir/listen.log"; exit 1; }
grep -q "sha3-256" "$dir/listen.log" || { echo "FAIL: no summary line"; exit 1; }
echo "cli smoke: 2 passed, 0 failed"

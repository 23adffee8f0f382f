#!/usr/bin/env bash
# End-to-end check of the `stt` binary over loopback: keygen, id, recv + send with confirmation,
# WebSocket-only listen, progress on a terminal, names that never overwrite, refusals at start, write
# errors, Ctrl-C (send, recv, listen), resume, seed-permission refusal. Bounded in time; cleans up after itself.
set -euo pipefail
bin="$1"
dir=$(mktemp -d)
# Kills a background process that outlives 60 s (signal tests run it without `timeout`,
# which would turn SIGINT into another signal).
watchdog() { ( sleep 60; kill -9 "$1" 2>/dev/null ) & }
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
# (A host name resolves: `--to localhost:PORT`.)
timeout 60 "$bin" send --to "localhost:$port" --shared-seed "$dir/shared.seed" --peer "$id" "$dir/payload"
wait "$recv_pid"
cmp "$dir/payload" "$dir/received" || { echo "FAIL: received file differs"; exit 1; }
grep -q "received 3000000 bytes in .* MB/s).*packets lost" "$dir/recv.log" || { echo "FAIL: no summary line (bytes, time, rate, losses)"; cat "$dir/recv.log"; exit 1; }
pass=2
# The same over WebSocket, with a WebSocket-only listener (no --bind) that has a node seed:
# a sender without --peer prints the id it connected to.
mkdir -p "$dir/in"
wsport=$((20000 + RANDOM % 20000))
timeout 60 "$bin" -v listen --ws-bind "127.0.0.1:$wsport" --shared-seed "$dir/shared.seed" --node-seed "$dir/node.seed" --out "$dir/in" > "$dir/listen.log" 2>&1 &
listen_pid=$!
sleep 0.5
timeout 60 "$bin" send --to "ws://127.0.0.1:$wsport/stt" --shared-seed "$dir/shared.seed" "$dir/payload" 2> "$dir/send.err"
grep -q "connected to receiver $id (not pinned: pass --peer" "$dir/send.err" || { echo "FAIL: unpinned send did not print the peer id"; cat "$dir/send.err"; exit 1; }
# A second file of the same name never replaces the first; a symlink at the next name is not followed.
ln -s "$dir/victim" "$dir/in/payload-1"
mkdir -p "$dir/second"; head -c 1000 /dev/urandom > "$dir/second/payload"
timeout 60 "$bin" send --to "ws://127.0.0.1:$wsport/stt" --shared-seed "$dir/shared.seed" --peer "$id" "$dir/second/payload" 2>/dev/null
# --no-verify: neither side hashes; the same bytes are stored and both sides say so.
mkdir -p "$dir/third"; head -c 700000 /dev/urandom > "$dir/third/fast.bin"
timeout 60 "$bin" send --no-verify --to "ws://127.0.0.1:$wsport/stt" --shared-seed "$dir/shared.seed" --peer "$id" "$dir/third/fast.bin" > "$dir/nv.out" 2>/dev/null
grep -q "not verified (--no-verify); receiver confirmed" "$dir/nv.out" || { echo "FAIL: --no-verify send"; cat "$dir/nv.out"; exit 1; }
if "$bin" send --no-verify --resume --to 127.0.0.1:1 --shared-seed "$dir/shared.seed" "$dir/payload" 2>/dev/null; then echo "FAIL: --no-verify with --resume accepted"; exit 1; fi
kill -INT "$listen_pid"; wait "$listen_pid" || true
cmp "$dir/third/fast.bin" "$dir/in/fast.bin" || { echo "FAIL: --no-verify file differs"; exit 1; }
grep -q "not verified (sender's --no-verify), saved as" "$dir/listen.log" || { echo "FAIL: listen did not say the transfer was unverified"; cat "$dir/listen.log"; exit 1; }
cmp "$dir/payload" "$dir/in/payload" || { echo "FAIL: file received over WebSocket differs or was overwritten"; cat "$dir/listen.log"; exit 1; }
cmp "$dir/second/payload" "$dir/in/payload-2" || { echo "FAIL: second file not stored as payload-2"; ls -la "$dir/in"; exit 1; }
[ ! -e "$dir/victim" ] || { echo "FAIL: a symlink was followed"; exit 1; }
[ "$(stat -c %a "$dir/in/payload")" = 600 ] || { echo "FAIL: received file is not mode 0600"; exit 1; }
grep -q "sha-256" "$dir/listen.log" || { echo "FAIL: no summary line"; exit 1; }
grep -q "INFO stt_tokio.*node started" "$dir/listen.log" || { echo "FAIL: -v printed no tracing output"; exit 1; }
pass=$((pass + 1))

# Progress on a terminal (a pseudo-terminal from `script`): percentage, rate and ETA on both
# sides; none when stderr is not a terminal.
port=$((20000 + RANDOM % 20000))
timeout 60 script -qfec "$bin recv --bind 127.0.0.1:$port --shared-seed $dir/shared.seed --out $dir/tty-received" "$dir/recv.tty" > /dev/null < /dev/null &
recv_pid=$!
sleep 0.5
timeout 60 script -qfec "$bin send --to 127.0.0.1:$port --shared-seed $dir/shared.seed $dir/payload" "$dir/send.tty" > /dev/null < /dev/null
wait "$recv_pid"
cmp "$dir/payload" "$dir/tty-received" || { echo "FAIL: file received on a terminal differs"; exit 1; }
for side in send recv; do
    grep -aq "% .*/s ETA" "$dir/$side.tty" || { echo "FAIL: no progress (%, rate, ETA) from $side on a terminal"; cat -v "$dir/$side.tty"; exit 1; }
done
if grep -q "ETA" "$dir/send.err"; then echo "FAIL: a progress bar was written to a file"; exit 1; fi
pass=$((pass + 1))

# listen --out must be an existing, writable directory; otherwise it refuses to start.
for bad in "$dir/missing" /proc "$dir/payload"; do
    if timeout 10 "$bin" listen --bind 127.0.0.1:0 --shared-seed "$dir/shared.seed" --out "$bad" 2> "$dir/err"; then
        echo "FAIL: listen started with --out $bad"; exit 1
    fi
done
pass=$((pass + 1))

# recv --out refuses an existing file unless --force, before binding anything.
echo keep > "$dir/exists"
if timeout 10 "$bin" recv --bind 127.0.0.1:0 --shared-seed "$dir/shared.seed" --out "$dir/exists" 2> "$dir/err"; then
    echo "FAIL: recv accepted an existing --out"; exit 1
fi
grep -q -- "--force" "$dir/err" || { echo "FAIL: no --force hint"; cat "$dir/err"; exit 1; }
port=$((20000 + RANDOM % 20000))
timeout 60 "$bin" recv --bind "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --out "$dir/exists" --force > /dev/null 2>&1 &
recv_pid=$!
sleep 0.5
timeout 60 "$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/shared.seed" "$dir/payload" > /dev/null 2>&1
wait "$recv_pid"
cmp "$dir/payload" "$dir/exists" || { echo "FAIL: --force did not replace the file"; exit 1; }
pass=$((pass + 1))

# A write error at the receiver (file size limit) fails the transfer: the sender exits
# non-zero with the receiver's reason, and neither the file nor a partial file is left.
mkdir -p "$dir/small"
port=$((20000 + RANDOM % 20000))
( trap '' XFSZ; ulimit -f 1000; exec timeout 60 "$bin" listen --bind "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --out "$dir/small" ) > "$dir/listen.log" 2>&1 &
listen_pid=$!
sleep 0.5
if timeout 60 "$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/shared.seed" "$dir/payload" 2> "$dir/send.err"; then
    echo "FAIL: the sender succeeded although the receiver could not write"; exit 1
fi
grep -q "could not store the file: cannot write payload" "$dir/send.err" || { echo "FAIL: the receiver's reason is missing"; cat "$dir/send.err"; exit 1; }
kill -INT "$listen_pid"; wait "$listen_pid" || true
[ -z "$(ls -A "$dir/small")" ] || { echo "FAIL: a file was left after a failed write"; ls -la "$dir/small"; exit 1; }
pass=$((pass + 1))

# Ctrl-C on the sender mid-transfer: the receiver says "sender cancelled" and exits 3, the
# sender exits 130, and no file (partial or not) is left.
mkfifo "$dir/fifo"
exec 3<> "$dir/fifo"
head -c 60000 /dev/urandom >&3
mkdir -p "$dir/cut"
port=$((20000 + RANDOM % 20000))
"$bin" recv --bind "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --out "$dir/cut/file" > "$dir/recv.log" 2>&1 &
recv_pid=$!; watchdog "$recv_pid"
sleep 0.5
"$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/shared.seed" - < "$dir/fifo" 2> "$dir/send.err" &
send_pid=$!; watchdog "$send_pid"
sleep 1.5
kill -INT "$send_pid"
rc=0; wait "$send_pid" || rc=$?
[ "$rc" -eq 130 ] || { echo "FAIL: interrupted sender exited $rc, not 130"; cat "$dir/send.err"; exit 1; }
rc=0; wait "$recv_pid" || rc=$?
[ "$rc" -eq 3 ] || { echo "FAIL: receiver of a cancelled transfer exited $rc, not 3"; cat "$dir/recv.log"; exit 1; }
grep -q "sender cancelled (interrupted by Ctrl-C)" "$dir/recv.log" || { echo "FAIL: the receiver did not say the sender cancelled, with its reason phrase"; cat "$dir/recv.log"; exit 1; }
if grep -qi "NoError" "$dir/recv.log"; then echo "FAIL: NoError for a cut transfer"; exit 1; fi
[ -z "$(ls -A "$dir/cut")" ] || { echo "FAIL: a cancelled transfer left a file"; ls -la "$dir/cut"; exit 1; }
pass=$((pass + 1))

# Ctrl-C on the receiver (listen) mid-transfer: the sender says "receiver shut down" and
# exits 3; listen removes the partial file.
head -c 60000 /dev/urandom >&3
mkdir -p "$dir/cut2"
port=$((20000 + RANDOM % 20000))
"$bin" listen --bind "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --out "$dir/cut2" > "$dir/listen.log" 2>&1 &
listen_pid=$!; watchdog "$listen_pid"
sleep 0.5
"$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/shared.seed" - < "$dir/fifo" 2> "$dir/send.err" &
send_pid=$!; watchdog "$send_pid"
sleep 1.5
ls "$dir/cut2" | grep -q "stt-partial" || { echo "FAIL: no partial file while receiving"; ls -la "$dir/cut2"; exit 1; }
kill -INT "$listen_pid"
rc=0; wait "$listen_pid" || rc=$?
[ "$rc" -eq 0 ] || { echo "FAIL: listen stopped by Ctrl-C exited $rc"; cat "$dir/listen.log"; exit 1; }
rc=0; wait "$send_pid" || rc=$?
[ "$rc" -eq 3 ] || { echo "FAIL: sender to a receiver that shut down exited $rc, not 3"; cat "$dir/send.err"; exit 1; }
grep -q "receiver shut down (stopped by Ctrl-C)" "$dir/send.err" || { echo "FAIL: the sender did not say the receiver shut down"; cat "$dir/send.err"; exit 1; }
[ -z "$(ls -A "$dir/cut2")" ] || { echo "FAIL: listen left a partial file"; ls -la "$dir/cut2"; exit 1; }
pass=$((pass + 1))

# Ctrl-C on `recv` mid-transfer: the sender says "receiver shut down" and exits 3; recv
# exits 130 and leaves no file.
head -c 60000 /dev/urandom >&3
mkdir -p "$dir/cut3"
port=$((20000 + RANDOM % 20000))
"$bin" recv --bind "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --out "$dir/cut3/file" > "$dir/recv.log" 2>&1 &
recv_pid=$!; watchdog "$recv_pid"
sleep 0.5
"$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/shared.seed" - < "$dir/fifo" 2> "$dir/send.err" &
send_pid=$!; watchdog "$send_pid"
sleep 1.5
kill -INT "$recv_pid"
rc=0; wait "$recv_pid" || rc=$?
[ "$rc" -eq 130 ] || { echo "FAIL: recv stopped by Ctrl-C exited $rc, not 130"; cat "$dir/recv.log"; exit 1; }
rc=0; wait "$send_pid" || rc=$?
[ "$rc" -eq 3 ] || { echo "FAIL: sender to a recv that shut down exited $rc, not 3"; cat "$dir/send.err"; exit 1; }
grep -q "receiver shut down (interrupted by Ctrl-C)" "$dir/send.err" || { echo "FAIL: the sender did not say the receiver shut down"; cat "$dir/send.err"; exit 1; }
[ -z "$(ls -A "$dir/cut3")" ] || { echo "FAIL: recv left a file"; ls -la "$dir/cut3"; exit 1; }
exec 3>&-
pass=$((pass + 1))

# listen -v logs refused handshakes with the reason (a sender holding another seed).
"$bin" keygen --out "$dir/other.seed" > /dev/null
port=$((20000 + RANDOM % 20000))
timeout 60 "$bin" -v listen --bind "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --out "$dir/in" > "$dir/refuse.log" 2>&1 &
listen_pid=$!
sleep 0.5
timeout 3 "$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/other.seed" "$dir/payload" 2>/dev/null || true
sleep 1.2
kill -INT "$listen_pid"; wait "$listen_pid" || true
grep -q "refused: authentication failed (wrong shared seed" "$dir/refuse.log" || { echo "FAIL: listen -v did not log the refused handshake"; cat "$dir/refuse.log"; exit 1; }
if grep -qi "$(cat "$dir/other.seed")" "$dir/refuse.log"; then echo "FAIL: a seed appeared in the log"; exit 1; fi
pass=$((pass + 1))

# ... and a member of the seed that is not on --allow: refused, logged with the reason, and
# the sender is told it is not on the allow-list.
port=$((20000 + RANDOM % 20000))
timeout 60 "$bin" -v listen --bind "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --allow "$id" --out "$dir/in" > "$dir/refuse.log" 2>&1 &
listen_pid=$!
sleep 0.5
if timeout 10 "$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/shared.seed" "$dir/payload" 2> "$dir/send.err"; then
    echo "FAIL: a sender not on the allow-list was served"; exit 1
fi
sleep 1.2
kill -INT "$listen_pid"; wait "$listen_pid" || true
grep -q "refused: a member not on the allow-list" "$dir/refuse.log" || { echo "FAIL: listen -v did not log the allow-list refusal"; cat "$dir/refuse.log"; exit 1; }
grep -q "allow-list" "$dir/send.err" || { echo "FAIL: the refused sender was not told why"; cat "$dir/send.err"; exit 1; }
pass=$((pass + 1))

# ... and a sender that expected another node id: it aborts after CHALLENGE without a word
# (its identity stays unrevealed); listen -v logs the abandoned handshake once the half-open
# state expires (handshake timeout, 15 s).
port=$((20000 + RANDOM % 20000))
timeout 60 "$bin" -v listen --bind "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --node-seed "$dir/node.seed" --out "$dir/in" > "$dir/refuse.log" 2>&1 &
listen_pid=$!
sleep 0.5
wrong=$("$bin" id --node-seed "$dir/other.seed")
if timeout 10 "$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --peer "$wrong" "$dir/payload" 2> "$dir/send.err"; then
    echo "FAIL: a sender expecting another node id sent anyway"; exit 1
fi
for _ in $(seq 40); do grep -q "abandoned after CHALLENGE" "$dir/refuse.log" && break; sleep 0.5; done
kill -INT "$listen_pid"; wait "$listen_pid" || true
grep -q "refused: a handshake abandoned after CHALLENGE" "$dir/refuse.log" || { echo "FAIL: listen -v did not log the abandoned handshake"; cat "$dir/refuse.log"; exit 1; }
pass=$((pass + 1))

# Relay on loopback: `send --relay --peer ID` reaches a `listen --relay`; the listener registers
# again after the relay restarts (Ctrl-C closes its members' sessions).
rport=$((20000 + RANDOM % 20000))
mkdir -p "$dir/rin"
timeout 60 "$bin" relay --bind "127.0.0.1:$rport" --shared-seed "$dir/shared.seed" > "$dir/relay1.log" 2>&1 &
relay_pid=$!
sleep 0.5
grep -q "relay listening on 127.0.0.1:$rport" "$dir/relay1.log" || { echo "FAIL: relay did not start"; cat "$dir/relay1.log"; exit 1; }
timeout 60 "$bin" listen --bind 127.0.0.1:0 --relay "127.0.0.1:$rport" --shared-seed "$dir/shared.seed" --node-seed "$dir/node.seed" --out "$dir/rin" > "$dir/rlisten.log" 2>&1 &
rlisten_pid=$!
for _ in $(seq 50); do grep -q "reachable as $id through relay" "$dir/rlisten.log" && break; sleep 0.1; done
grep -q "reachable as $id through relay" "$dir/rlisten.log" || { echo "FAIL: listen --relay did not register"; cat "$dir/rlisten.log"; exit 1; }
kill -INT "$relay_pid"; wait "$relay_pid" || true
timeout 60 "$bin" relay --bind "127.0.0.1:$rport" --shared-seed "$dir/shared.seed" > "$dir/relay2.log" 2>&1 &
relay_pid=$!
for _ in $(seq 150); do [ "$(grep -c "reachable as\|registered with relay" "$dir/rlisten.log")" -ge 3 ] && break; sleep 0.1; done
grep -q "registering again" "$dir/rlisten.log" || { echo "FAIL: listen did not notice the relay restart"; cat "$dir/rlisten.log"; exit 1; }
grep -q "ended (the relay shut down)" "$dir/rlisten.log" || { echo "FAIL: members were not told the relay shut down"; cat "$dir/rlisten.log"; exit 1; }
timeout 60 "$bin" send --relay "127.0.0.1:$rport" --peer "$id" --shared-seed "$dir/shared.seed" "$dir/payload" 2> "$dir/rsend.err"
cmp "$dir/payload" "$dir/rin/payload" || { echo "FAIL: file through the relay differs"; cat "$dir/rsend.err"; exit 1; }
# (On loopback punching may finish before the first line is printed: either path is right.)
grep -q "^registered with relay" "$dir/rsend.err" && grep -q "^path: " "$dir/rsend.err" || { echo "FAIL: send did not register or report its path"; cat "$dir/rsend.err"; exit 1; }
# A file sent to the relay itself fails at once, saying so (it used to wait forever).
rc=0; timeout 30 "$bin" send --to "127.0.0.1:$rport" --shared-seed "$dir/shared.seed" "$dir/payload" 2> "$dir/torelay.err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "the peer is a relay" "$dir/torelay.err" || { echo "FAIL: send to the relay itself (exit $rc)"; cat "$dir/torelay.err"; exit 1; }
# A malformed node id is a usage error (exit 2); a relay address without a port says so.
rc=0; "$bin" send --relay "127.0.0.1:$rport" --peer abc --shared-seed "$dir/shared.seed" "$dir/payload" 2> /dev/null || rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL: a malformed --peer exited $rc, not 2"; exit 1; }
rc=0; timeout 30 "$bin" send --relay 127.0.0.1 --peer "$id" --shared-seed "$dir/shared.seed" "$dir/payload" 2> "$dir/noport.err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "port is missing" "$dir/noport.err" || { echo "FAIL: --relay without a port (exit $rc)"; cat "$dir/noport.err"; exit 1; }
# A second listener with the same node seed takes the registration over; the first says why
# and does not register again (they used to displace each other every 5 s for ever).
timeout 60 "$bin" listen --bind 127.0.0.1:0 --relay "127.0.0.1:$rport" --shared-seed "$dir/shared.seed" --node-seed "$dir/node.seed" --out "$dir/rin" > "$dir/rtwin.log" 2>&1 &
rtwin_pid=$!
for _ in $(seq 100); do grep -q "not registering again" "$dir/rlisten.log" && break; sleep 0.1; done
grep -q "another process is using this node seed.*not registering" "$dir/rlisten.log" || { echo "FAIL: the displaced listener did not say why"; cat "$dir/rlisten.log"; exit 1; }
sleep 6
[ "$(grep -c "reachable as" "$dir/rtwin.log")" -eq 1 ] && ! grep -q "registering again" "$dir/rtwin.log" || { echo "FAIL: the twin listeners keep displacing each other"; cat "$dir/rtwin.log"; exit 1; }
kill -INT "$rtwin_pid"; wait "$rtwin_pid" || true
kill -INT "$rlisten_pid" "$relay_pid"; wait "$rlisten_pid" "$relay_pid" || true
pass=$((pass + 1))

# Two processes with one node seed: the newer session replaces the older, whose sender says why.
"$bin" keygen --out "$dir/twin.seed" > /dev/null
mkdir -p "$dir/twin"
mkfifo "$dir/fifo2"
exec 4<> "$dir/fifo2"
head -c 10000 /dev/urandom >&4
port=$((20000 + RANDOM % 20000))
timeout 60 "$bin" listen --bind "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --out "$dir/twin" > "$dir/twin.log" 2>&1 &
twin_listen=$!
sleep 0.5
"$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --node-seed "$dir/twin.seed" - < "$dir/fifo2" 2> "$dir/twin1.err" &
twin1=$!; watchdog "$twin1"
sleep 1
timeout 60 "$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --node-seed "$dir/twin.seed" "$dir/payload" 2> "$dir/twin2.err" \
    || { echo "FAIL: the second sender with the same node seed failed"; cat "$dir/twin2.err"; exit 1; }
rc=0; wait "$twin1" || rc=$?
[ "$rc" -ne 0 ] || { echo "FAIL: the replaced sender exited 0"; exit 1; }
grep -q "another process is using the same node seed" "$dir/twin1.err" || { echo "FAIL: the replaced sender did not say why"; cat "$dir/twin1.err"; exit 1; }
exec 4>&-
kill -INT "$twin_listen"; wait "$twin_listen" || true
pass=$((pass + 1))

# send --resume: a resumable transfer cut by a write error at the receiver keeps its partial
# file; the next `send --resume` continues it from there (offset agreed, prefix checked by
# SHA-256) and the result is byte-exact; a tampered partial file is detected and the file is
# sent again in full; --resume without --node-seed is refused.
"$bin" keygen --out "$dir/sender.seed" > /dev/null
mkdir -p "$dir/res"
cp "$dir/payload" "$dir/resume1.bin"; cp "$dir/payload" "$dir/resume2.bin"
if "$bin" send --to 127.0.0.1:9 --shared-seed "$dir/shared.seed" --resume "$dir/resume1.bin" 2> "$dir/err"; then
    echo "FAIL: --resume without --node-seed accepted"; exit 1
fi
grep -q "needs --node-seed" "$dir/err" || { echo "FAIL: no reason for refusing --resume"; cat "$dir/err"; exit 1; }
resume_listen() {
    port=$((20000 + RANDOM % 20000))
    ( trap '' XFSZ; [ -z "${1:-}" ] || ulimit -f "$1"; exec timeout 60 "$bin" listen --bind "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --out "$dir/res" ) > "$dir/listen.log" 2>&1 &
    listen_pid=$!
    sleep 0.5
}
resume_send() {
    timeout 60 "$bin" send --to "127.0.0.1:$port" --shared-seed "$dir/shared.seed" --node-seed "$dir/sender.seed" --resume "$1" 2> "$dir/send.err" > "$dir/send.out"
}
for f in resume1 resume2; do
    resume_listen 1000
    if resume_send "$dir/$f.bin"; then echo "FAIL: $f: sender succeeded past the receiver's file size limit"; exit 1; fi
    kill -INT "$listen_pid"; wait "$listen_pid" || true
done
p1=$(ls "$dir/res"/resume1.bin.*.stt-partial); p2=$(ls "$dir/res"/resume2.bin.*.stt-partial)
held=$(stat -c %s "$p1")
[ "$held" -gt 0 ] && [ "$held" -lt 3000000 ] || { echo "FAIL: kept partial file has $held bytes"; exit 1; }
# Flip one byte of the second partial file.
printf '\xff' | cmp -s - <(dd if="$p2" bs=1 skip=100 count=1 2>/dev/null) && b='\x00' || b='\xff'
printf "$b" | dd of="$p2" bs=1 seek=100 conv=notrunc 2>/dev/null
resume_listen
resume_send "$dir/resume1.bin" || { echo "FAIL: resumed send failed"; cat "$dir/send.err"; exit 1; }
grep -q "resuming: the receiver already holds $held of 3000000 bytes" "$dir/send.err" || { echo "FAIL: did not resume at $held"; cat "$dir/send.err"; exit 1; }
grep -q "(resumed at byte $held)" "$dir/send.out" || { echo "FAIL: no resumed summary"; cat "$dir/send.out"; exit 1; }
resume_send "$dir/resume2.bin" || { echo "FAIL: send after a tampered partial failed"; cat "$dir/send.err"; exit 1; }
grep -q "differs from this file: sending it all again" "$dir/send.err" || { echo "FAIL: tampered partial not detected"; cat "$dir/send.err"; exit 1; }
kill -INT "$listen_pid"; wait "$listen_pid" || true
cmp "$dir/payload" "$dir/res/resume1.bin" || { echo "FAIL: resumed file differs"; exit 1; }
cmp "$dir/payload" "$dir/res/resume2.bin" || { echo "FAIL: re-sent file differs"; exit 1; }
[ -z "$(ls "$dir/res" | grep stt-partial)" ] || { echo "FAIL: partial files left after resumed transfers"; ls -la "$dir/res"; exit 1; }
pass=$((pass + 1))

# Storage (file://): put prints the address, ls lists it, get writes it byte-exact; an unknown
# address fails; an existing --out is refused without --force; a store needs its key file.
"$bin" keygen --out "$dir/store.key" > /dev/null
addr=$("$bin" store put --store "file://$dir/store" --key "$dir/store.key" "$dir/payload" 2>/dev/null)
[ ${#addr} -eq 64 ] || { echo "FAIL: store put printed '$addr', not an address"; exit 1; }
[ "$("$bin" store put --store "file://$dir/store" --key "$dir/store.key" "$dir/payload" 2>/dev/null)" = "$addr" ] \
    || { echo "FAIL: a second put gave another address"; exit 1; }
[ "$("$bin" store ls --store "file://$dir/store" --key "$dir/store.key")" = "$addr" ] || { echo "FAIL: store ls"; exit 1; }
"$bin" store get --store "file://$dir/store" --key "$dir/store.key" "$addr" --out "$dir/got" 2>/dev/null
cmp "$dir/payload" "$dir/got" || { echo "FAIL: store get is not byte-exact"; exit 1; }
if "$bin" store get --store "file://$dir/store" --key "$dir/store.key" "$addr" --out "$dir/got" 2>/dev/null; then
    echo "FAIL: store get overwrote --out without --force"; exit 1
fi
"$bin" store get --store "file://$dir/store" --key "$dir/store.key" "$addr" --out "$dir/got" --force 2>/dev/null
unknown=$(printf '0%.0s' $(seq 64))
if "$bin" store get --store "file://$dir/store" --key "$dir/store.key" "$unknown" --out "$dir/none" 2> "$dir/err"; then
    echo "FAIL: store get of an unknown address succeeded"; exit 1
fi
grep -q "not in file://" "$dir/err" || { echo "FAIL: no 'not in' message"; cat "$dir/err"; exit 1; }
[ ! -e "$dir/none" ] && ! ls "$dir" | grep -q 'stt-partial' || { echo "FAIL: a failed get left a file"; ls "$dir"; exit 1; }
"$bin" keygen --out "$dir/other.key" > /dev/null
if "$bin" store get --store "file://$dir/store" --key "$dir/other.key" "$addr" --out "$dir/wrongkey" 2> "$dir/err"; then
    echo "FAIL: store get with another key succeeded"; exit 1
fi
grep -q "integrity" "$dir/err" && [ ! -e "$dir/wrongkey" ] || { echo "FAIL: wrong key not reported as an integrity failure"; cat "$dir/err"; exit 1; }
pass=$((pass + 1))

# Content fetched from peers: two `serve-store` nodes (each its own store and key) hold the
# payload; `fetch` takes it from both, checked against the address, into a file and a store.
"$bin" store put --store "file://$dir/store2" --key "$dir/other.key" "$dir/payload" > /dev/null 2>&1
sp1=$((20000 + RANDOM % 20000)); sp2=$((sp1 + 1))
timeout 60 "$bin" serve-store --bind "127.0.0.1:$sp1" --shared-seed "$dir/shared.seed" --node-seed "$dir/node.seed" \
    --store "file://$dir/store" --key "$dir/store.key" 2> "$dir/serve1.log" &
serve1=$!
timeout 60 "$bin" serve-store --bind "127.0.0.1:$sp2" --shared-seed "$dir/shared.seed" \
    --store "file://$dir/store2" --key "$dir/other.key" 2> "$dir/serve2.log" &
serve2=$!
sleep 0.5
timeout 60 "$bin" fetch "$addr" --from "$id@127.0.0.1:$sp1" --from "127.0.0.1:$sp2" --shared-seed "$dir/shared.seed" \
    --out "$dir/fetched" --store "file://$dir/store3" --key "$dir/store.key" 2> "$dir/fetch.err" \
    || { echo "FAIL: fetch"; cat "$dir/fetch.err" "$dir/serve1.log"; exit 1; }
cmp "$dir/payload" "$dir/fetched" || { echo "FAIL: fetched file differs"; exit 1; }
[ "$("$bin" store ls --store "file://$dir/store3" --key "$dir/store.key")" = "$addr" ] || { echo "FAIL: fetch --store did not store it"; exit 1; }
if timeout 60 "$bin" fetch "$unknown" --from "127.0.0.1:$sp1" --shared-seed "$dir/shared.seed" --out "$dir/nothing" 2> "$dir/err"; then
    echo "FAIL: fetch of an unknown address succeeded"; exit 1
fi
grep -q "no peer has the blob" "$dir/err" && [ ! -e "$dir/nothing" ] || { echo "FAIL: unknown fetch message"; cat "$dir/err"; exit 1; }
kill -INT "$serve1" "$serve2"; wait "$serve1" "$serve2" || true
pass=$((pass + 1))

echo "cli smoke: $pass passed, 0 failed"

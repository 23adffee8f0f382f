#!/usr/bin/env python3
"""UDP hole-punching probe for .ci/nat-kernel.sh (standard library only).

  nat-punch.py rendezvous --bind IP:PORT [--lifetime S]
  nat-punch.py peer --name A|B --bind IP:PORT --rendezvous IP:PORT [--punch S]

The rendezvous server records the address it observes for each peer (its public, post-NAT
address) and, once both peers have registered, answers each with the other's observed
address. It also forwards RELAY datagrams to the other peer, so a pair that cannot punch
still has a working (relayed) path, as with stt's relay.

Each peer punches for --punch seconds: every 50 ms it sends a PROBE to every candidate
address of the other peer, starting with the one the rendezvous reported, and adds the
source address of any PROBE it receives (a peer-reflexive candidate, as ICE does), so a
peer behind an address-dependent NAT can still be answered at the port its NAT really
chose. Meanwhile it sends RELAY datagrams through the rendezvous. It then prints one line:

  RESULT name=A local=... peer_public=... direct=0|1 seen_as=... relay=0|1
         probes_sent=N probes_received=N

direct=1 means at least one PROBE from the other peer arrived without the rendezvous;
seen_as is the source address it arrived from (the other peer's NAT mapping towards us).
Exit code 0 whenever the run completed (the verdict is the caller's job), 2 if the
rendezvous never answered.
"""

import argparse
import select
import socket
import sys
import time


def addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def fmt(a):
    return "%s:%d" % a if a else "-"


def rendezvous(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(addr(args.bind))
    print("rendezvous listening on %s" % fmt(sock.getsockname()), flush=True)
    seen = {}  # name -> observed address
    deadline = time.monotonic() + args.lifetime
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.2)
        if not ready:
            continue
        data, src = sock.recvfrom(2048)
        parts = data.decode(errors="replace").split()
        if len(parts) >= 2 and parts[0] == "HELLO":
            name = parts[1]
            if seen.get(name) != src:
                print("rendezvous: %s is at %s" % (name, fmt(src)), flush=True)
            seen[name] = src
            others = [n for n in seen if n != name]
            if others:
                other = seen[others[0]]
                sock.sendto(("PEER %s %d" % other).encode(), src)
        elif len(parts) >= 2 and parts[0] == "RELAY":
            for name, where in seen.items():
                if where != src:
                    sock.sendto(data, where)
    return 0


def peer(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(addr(args.bind))
    local = sock.getsockname()
    rv = addr(args.rendezvous)
    name = args.name

    # 1. Register until the rendezvous tells us where the other peer is.
    peer_public = None
    deadline = time.monotonic() + args.register_timeout
    next_hello = 0.0
    while peer_public is None and time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_hello:
            sock.sendto(("HELLO %s" % name).encode(), rv)
            next_hello = now + 0.2
        ready, _, _ = select.select([sock], [], [], 0.05)
        if ready:
            data, src = sock.recvfrom(2048)
            parts = data.decode(errors="replace").split()
            if src == rv and len(parts) == 3 and parts[0] == "PEER":
                peer_public = (parts[1], int(parts[2]))
    if peer_public is None:
        print("RESULT name=%s local=%s error=no-rendezvous-answer" % (name, fmt(local)), flush=True)
        return 2

    # (Our own public address is in the rendezvous log: "rendezvous: A is at ...".)
    candidates = [peer_public]
    direct = False
    seen_as = None
    relay_ok = False
    sent = received = 0
    end = time.monotonic() + args.punch
    next_send = 0.0
    seq = 0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_send:
            seq += 1
            for cand in candidates:
                sock.sendto(("PROBE %s %d" % (name, seq)).encode(), cand)
                sent += 1
            if seq % 4 == 0:
                sock.sendto(("RELAY %s %d" % (name, seq)).encode(), rv)
                sock.sendto(("HELLO %s" % name).encode(), rv)  # keeps the relay mapping alive
            next_send = now + 0.05
        ready, _, _ = select.select([sock], [], [], 0.02)
        if not ready:
            continue
        try:
            data, src = sock.recvfrom(2048)
        except OSError:
            continue  # an ICMP error reported on the socket
        parts = data.decode(errors="replace").split()
        if len(parts) < 2 or parts[1] == name:
            continue
        if parts[0] == "PROBE" and src != rv:
            received += 1
            if not direct:
                direct = True
                seen_as = src
            if src not in candidates:
                candidates.append(src)
        elif parts[0] == "RELAY" and src == rv:
            relay_ok = True
    print(
        "RESULT name=%s local=%s peer_public=%s direct=%d seen_as=%s relay=%d "
        "probes_sent=%d probes_received=%d"
        % (name, fmt(local), fmt(peer_public), int(direct), fmt(seen_as), int(relay_ok), sent, received),
        flush=True,
    )
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("rendezvous")
    r.add_argument("--bind", required=True)
    r.add_argument("--lifetime", type=float, default=30.0)
    q = sub.add_parser("peer")
    q.add_argument("--name", required=True)
    q.add_argument("--bind", required=True)
    q.add_argument("--rendezvous", required=True)
    q.add_argument("--register-timeout", type=float, default=5.0)
    q.add_argument("--punch", type=float, default=3.0)
    args = p.parse_args()
    return rendezvous(args) if args.mode == "rendezvous" else peer(args)


if __name__ == "__main__":
    sys.exit(main())

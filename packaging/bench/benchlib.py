#!/usr/bin/env python3
"""Helpers for packaging/bench/live.sh: traffic generators that run inside the
lab namespaces, and small JSON readers the shell uses while it waits.

Every generator is bounded in count and time and only talks to the address it
is given (the lab peer). Nothing here needs anything beyond the standard
library, so the bench runs on any machine with python3.
"""

import argparse
import json
import os
import resource
import signal
import socket
import sys
import time


def _load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------- readers


def cmd_iface(args):
    """Exit 0 if `netmonctl --json status` (file) shows IF capturing."""
    try:
        st = _load(args.status)
    except (OSError, ValueError):
        return 1
    for i in st.get("interfaces", []):
        if i.get("name") == args.iface and i.get("capturing"):
            return 0
    return 1


def cmd_get(args):
    """Print a dotted path of a JSON file (`flows_active`, `a.b.0.c`)."""
    v = _load(args.file)
    for part in args.path.split("."):
        v = v[int(part)] if isinstance(v, list) else v[part]
    print(json.dumps(v) if isinstance(v, (dict, list)) else v)
    return 0


# ------------------------------------------------------------- generators


def _raise_nofile(n):
    # 10k sockets need more descriptors than the usual soft limit of 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            except (ValueError, OSError):
                sys.exit(f"benchlib: need {want} open files, hard limit is {hard}")
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def cmd_udp_sink(args):
    """Bound UDP port(s) on the peer that silently take datagrams, so the peer
    answers no ICMP port-unreachable (which would add flows of its own)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((args.bind, args.port))
    s.settimeout(0.5)
    end = time.monotonic() + args.secs
    n = 0
    while time.monotonic() < end:
        try:
            s.recv(2048)
            n += 1
        except socket.timeout:
            pass
    print(json.dumps({"received": n}))
    return 0


def cmd_udp_flows(args):
    """N UDP sockets, each a distinct source port, each sends one small
    datagram to the peer; then hold them open (idle, so the flows stay live in
    netmond's table) until SIGTERM or --hold seconds."""
    _raise_nofile(args.count)
    socks = []
    for _ in range(args.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((args.src, 0))
        socks.append(s)
    for i, s in enumerate(socks):
        s.sendto(b"netmon-bench", (args.dst, args.port))
        if i % 500 == 499:
            # Pace a little so the flows arrive as a burst of new flows, not
            # as a queue overflow on the veth.
            time.sleep(0.005)
    print(json.dumps({"pid": os.getpid(), "flows": len(socks)}), flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    end = time.monotonic() + args.hold
    while not stop and time.monotonic() < end:
        time.sleep(0.2)
    return 0


def cmd_flood(args):
    """Up to --packets datagrams, each a distinct 5-tuple: source port (one of
    --sports sockets) x destination host (in the peer /24) x destination port.
    Bounded by --packets and --secs."""
    hosts = [f"{args.net}.{h}" for h in range(args.host_first, args.host_last + 1)]
    ports = list(range(args.port_first, args.port_first + args.dports))
    _raise_nofile(args.sports)
    socks = []
    for _ in range(args.sports):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((args.src, 0))
        socks.append(s)
    payload = b"f"
    sent = 0
    errors = 0
    start = time.monotonic()
    end = start + args.secs
    done = False
    for p in ports:
        for h in hosts:
            addr = (h, p)
            for s in socks:
                try:
                    s.sendto(payload, addr)
                    sent += 1
                except OSError:
                    # ENOBUFS when the qdisc is full: count and go on; the
                    # figure is printed so a short flood is visible.
                    errors += 1
                if sent + errors >= args.packets:
                    done = True
                    break
            if done or time.monotonic() > end:
                done = True
                break
        if done:
            break
    secs = time.monotonic() - start
    print(json.dumps({"sent": sent, "errors": errors, "secs": round(secs, 3),
                      "flows_possible": len(hosts) * len(ports) * len(socks)}))
    return 0


def cmd_rr_server(args):
    """Request/response server on the peer: read the request, answer --resp
    bytes, close. Sequential on purpose: the client is sequential too."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.bind, args.port))
    srv.listen(512)
    srv.settimeout(0.5)
    body = b"r" * args.resp
    end = time.monotonic() + args.secs
    served = 0
    while time.monotonic() < end and served < args.max_conns:
        try:
            c, _ = srv.accept()
        except socket.timeout:
            continue
        try:
            c.settimeout(2)
            got = 0
            while got < args.req:
                b = c.recv(args.req - got)
                if not b:
                    break
                got += len(b)
            c.sendall(body)
            served += 1
        except OSError:
            pass
        finally:
            c.close()
    return 0


def cmd_rr_client(args):
    """--conns short TCP connections from this one process: connect, send
    --req bytes, read the --resp byte answer to EOF, close. Paced at --rate
    connections/s, bounded by --secs."""
    req = b"q" * args.req
    ok = sent = received = failed = 0
    start = time.monotonic()
    end = start + args.secs
    for i in range(args.conns):
        if time.monotonic() > end:
            break
        if args.rate > 0:
            due = start + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        try:
            with socket.create_connection((args.dst, args.port), timeout=2) as s:
                s.sendall(req)
                sent += len(req)
                got = 0
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    got += len(b)
                received += got
                ok += 1 if got == args.resp else 0
        except OSError:
            failed += 1
    print(json.dumps({"pid": os.getpid(), "conns_ok": ok, "conns_failed": failed,
                      "sent_bytes": sent, "received_bytes": received,
                      "secs": round(time.monotonic() - start, 3)}))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("iface-capturing")
    p.add_argument("status")
    p.add_argument("iface")
    p.set_defaults(fn=cmd_iface)

    p = sub.add_parser("get")
    p.add_argument("file")
    p.add_argument("path")
    p.set_defaults(fn=cmd_get)

    p = sub.add_parser("udp-sink")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secs", type=float, default=120)
    p.set_defaults(fn=cmd_udp_sink)

    p = sub.add_parser("udp-flows")
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--hold", type=float, default=60)
    p.set_defaults(fn=cmd_udp_flows)

    p = sub.add_parser("flood")
    p.add_argument("--src", required=True)
    p.add_argument("--net", required=True, help="first three octets, e.g. 10.232.7")
    p.add_argument("--host-first", type=int, default=3)
    p.add_argument("--host-last", type=int, default=252)
    p.add_argument("--port-first", type=int, default=20000)
    p.add_argument("--dports", type=int, default=250)
    p.add_argument("--sports", type=int, default=16)
    p.add_argument("--packets", type=int, default=1_000_000)
    p.add_argument("--secs", type=float, default=60)
    p.set_defaults(fn=cmd_flood)

    p = sub.add_parser("rr-server")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--req", type=int, default=100)
    p.add_argument("--resp", type=int, default=1000)
    p.add_argument("--max-conns", type=int, default=100000)
    p.add_argument("--secs", type=float, default=600)
    p.set_defaults(fn=cmd_rr_server)

    p = sub.add_parser("rr-client")
    p.add_argument("--dst", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=2000)
    p.add_argument("--req", type=int, default=100)
    p.add_argument("--resp", type=int, default=1000)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--secs", type=float, default=60)
    p.set_defaults(fn=cmd_rr_client)

    args = ap.parse_args()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())

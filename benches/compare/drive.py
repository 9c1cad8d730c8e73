#!/usr/bin/env python3
"""A fixed-count HTTP/1.1 client for benches/compare-commits: sends exactly N GET requests,
one after another on one keep-alive connection (reopened only if the server closes it), and
checks every answer. wrk runs for a time, not a count; instructions per request under
callgrind need a count.

Usage: drive.py PORT PATH N [--status 200] [--header 'x-cache: HIT']
Prints one line: `requests=N connections=C`. Exits 1 at the first unexpected answer.
"""

import argparse
import http.client
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("path")
    ap.add_argument("n", type=int)
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--header", default="", help="'name: value' every answer must carry")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    want_name, _, want_value = args.header.partition(":")
    want_name, want_value = want_name.strip().lower(), want_value.strip()

    connections = 0
    conn = None
    for i in range(args.n):
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=args.timeout)
            connections += 1
        conn.request("GET", args.path)
        resp = conn.getresponse()
        resp.read()
        if resp.status != args.status:
            print(f"drive.py: request {i + 1}: status {resp.status}, want {args.status}", file=sys.stderr)
            return 1
        if want_name and resp.getheader(want_name, "").strip() != want_value:
            got = resp.getheader(want_name)
            print(f"drive.py: request {i + 1}: {want_name}: {got!r}, want {want_value!r}", file=sys.stderr)
            return 1
        if resp.will_close:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    print(f"requests={args.n} connections={connections}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

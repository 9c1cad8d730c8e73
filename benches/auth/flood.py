#!/usr/bin/env python3
"""One round of benches/auth/flood.sh: CONCURRENCY requests at once from ATTACKER, each with
Basic credentials never seen before, on a protected route; once every one of them is sent, a
client on HONEST registers a new user (POST /user) and logs in afresh with it (POST /path with
Basic: one token exchange of its own). Prints one JSON line: the honest client's times (ms),
its statuses, the attacker's statuses, and how many guesses were still unanswered when the
honest client started and when its login was done.

Usage: flood.py PORT ATTACKER HONEST CONCURRENCY LOGIN   (CONCURRENCY 0: no flood, a baseline)
"""

import asyncio
import base64
import json
import resource
import secrets
import sys
import time
import urllib.parse
from collections import Counter


async def request(port, source, head, body=b"", sent=None):
    """One HTTP/1.1 request on its own connection from `source`; the status (0: no answer).
    Calls `sent` once the request is written (or could not be)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError:
        if sent:
            sent()
        return 0
    try:
        writer.write(head + body)
        await writer.drain()
        if sent:
            sent()
            sent = None
        line = await reader.readline()
        await reader.read()  # Connection: close
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 else 0
    except (OSError, ValueError):
        return 0
    finally:
        if sent:
            sent()
        writer.close()


def basic(login, password):
    return base64.b64encode(f"{login}:{password}".encode()).decode()


def get(port, path, authorization):
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Basic {authorization}\r\nConnection: close\r\n\r\n"
    ).encode()


def post(port, path, body, authorization=None):
    auth = f"Authorization: Basic {authorization}\r\n" if authorization else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode(), body


async def main():
    port, attacker, honest, concurrency, login = (
        int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    all_sent = asyncio.get_running_loop().create_future()
    count = [0]

    def sent():
        count[0] += 1
        if count[0] == concurrency:
            all_sent.set_result(None)

    if concurrency == 0:  # the baseline: no flood
        all_sent.set_result(None)
    flood = [
        asyncio.create_task(request(
            port, attacker, get(port, "/path?id=1", basic(f"guess-{secrets.token_hex(6)}", "wrong")),
            sent=sent))
        for _ in range(concurrency)
    ]
    await all_sent  # every guess is on the wire (or its connection was refused)
    password = secrets.token_hex(12)
    unanswered_at_start = sum(1 for task in flood if not task.done())
    started = time.perf_counter()
    form = urllib.parse.urlencode({
        "first_name": "Ada", "last_name": "Lovelace", "email": f"{login}@example.org",
        "title": "Countess", "login": login, "password": password}).encode()
    registered = await request(port, honest, *post(port, "/user", form))
    t_register = time.perf_counter()
    path = urllib.parse.urlencode({"startpoint": "63 Sunfield Way", "endpoint": "4 Pawling Point"}).encode()
    logged_in = await request(port, honest, *post(port, "/path", path, basic(login, password)))
    done = time.perf_counter()
    unanswered = sum(1 for task in flood if not task.done())
    statuses = Counter(await asyncio.gather(*flood))
    print(json.dumps({
        "register_ms": round(1000 * (t_register - started), 1),
        "login_ms": round(1000 * (done - t_register), 1),
        "total_ms": round(1000 * (done - started), 1),
        "register_status": registered,
        "login_status": logged_in,
        "flood_unanswered_at_start": unanswered_at_start,
        "flood_unanswered_at_login": unanswered,
        "flood": {str(k): v for k, v in sorted(statuses.items())},
    }))


soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
asyncio.run(main())

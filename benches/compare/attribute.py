#!/usr/bin/env python3
"""Where a gateway's instructions go, from one callgrind dump (benches/compare-commits with
KEEP_DUMPS=dir keeps the dumps of its 2N runs; each covers exactly REQUESTS requests since
callgrind_control -z).

Usage: attribute.py DUMP REQUESTS [--top 30]

Prints markdown: instructions per request by area (self cost: the instructions executed in
the function itself, inlined code included, callees not), the hottest functions by self
cost, the inclusive cost of the gateway's hooks, and calls per request of the allocator and of
a few functions worth counting (label lookups, formatting, getpeername, ...).

Reads the callgrind format directly (name compression `fn=(id) name`, `calls=` lines whose
next line is the call's inclusive cost), so it needs nothing but Python.
"""

import argparse
import re
import sys
from collections import defaultdict

# Areas, first match wins, by function name (demangled) and object file.
AREAS = [
    ("allocator (malloc/free/realloc)", re.compile(
        r"^(__libc_|_int_|__GI___libc_|__GI_|)(malloc|free|realloc|calloc|cfree|memalign|posix_memalign)"
        r"|malloc_consolidate|unlink_chunk|tcache|_int_free_merge|__rust_(alloc|dealloc|realloc|alloc_zeroed)"
        r"|^alloc::alloc::|__rdl_|__rg_")),
    ("memcpy/memmove/memset/memcmp", re.compile(r"mem(cpy|move|set|cmp)|__memcpy|__memmove|__memset|bcmp")),
    ("metrics (prometheus)", re.compile(r"^<?prometheus::|<prometheus::")),
    ("the gateway's own code", re.compile(r"^<?gateway::|^<gateway::")),
    ("Pingora", re.compile(r"^<?pingora_|^<pingora_")),
    ("tokio / mio", re.compile(r"^<?(tokio|mio)::|^<(tokio|mio)::")),
    ("HTTP parsing and types (httparse, http, bytes)", re.compile(r"^<?(httparse|http|bytes)::|^<(httparse|http|bytes)::")),
    ("hashing (SipHash, ahash, SHA-256)", re.compile(r"hash|Hasher|sip|sha2|aws_lc|ring::")),
    ("formatting (core::fmt)", re.compile(r"core::fmt|alloc::fmt|<.* as core::fmt::")),
    ("tracing", re.compile(r"^<?tracing|^<tracing")),
    ("arc-swap / Arc", re.compile(r"arc_swap|alloc::sync::Arc")),
]

# Functions whose call counts per request are worth knowing (substring of the name).
COUNTED = [
    ("malloc", re.compile(r"^(__libc_)?malloc$")),
    ("calloc", re.compile(r"^(__libc_)?calloc$")),
    ("realloc", re.compile(r"^(__libc_)?realloc$")),
    ("free", re.compile(r"^(__libc_)?free$|^cfree$")),
    ("memcpy/memmove", re.compile(r"^(__)?mem(cpy|move)")),
    ("prometheus with_label_values", re.compile(r"with_label_values")),
    ("prometheus Histogram::observe", re.compile(r"Histogram(Core)?>?::observe|histogram.*observe")),
    ("prometheus counter inc", re.compile(r"GenericCounter<.*>>::inc(_by)?$")),
    ("alloc::fmt::format", re.compile(r"^alloc::fmt::format")),
    ("core::fmt::write", re.compile(r"^core::fmt::write$")),
    ("getpeername", re.compile(r"getpeername")),
    ("getsockname", re.compile(r"getsockname")),
    ("clock_gettime", re.compile(r"clock_gettime")),
    ("recv/read", re.compile(r"^(__libc_)?(recv|recvfrom|read)$")),
    ("send/write/writev", re.compile(r"^(__libc_)?(send|sendto|write|writev|sendmsg)$")),
    ("epoll_wait", re.compile(r"epoll_wait")),
    ("String clone", re.compile(r"<alloc::string::String as core::clone::Clone>::clone")),
    ("ArcSwap load", re.compile(r"arc_swap.*::load")),
]

HOOKS = re.compile(r"<gateway::proxy::[A-Za-z]+ as pingora_proxy::proxy_trait::ProxyHttp>::([a-z_]+)")


def parse(path):
    """-> (total Ir, self Ir by fn name, inclusive call cost by (caller, callee), calls by
    callee, object by fn name)."""
    names = {"fn": {}, "cfn": {}, "ob": {}, "cob": {}}
    self_cost = defaultdict(int)
    call_incl = defaultdict(int)
    calls = defaultdict(int)
    pair_calls = defaultdict(int)
    obj_of = {}
    npos = 1
    event_idx = 0
    fn = cfn = ob = cob = None
    pending_call = None
    total = None

    def resolve(kind, rest):
        m = re.match(r"\((\d+)\)(?: (.*))?$", rest)
        if not m:
            return rest
        space = "fn" if kind in ("fn", "cfn") else "ob"
        if m.group(2) is not None:
            names[space][m.group(1)] = m.group(2)
        return names[space].get(m.group(1), "?")

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                costs = parts[npos:]
                ir = int(costs[event_idx]) if len(costs) > event_idx else 0
                if pending_call is not None:
                    call_incl[(fn, pending_call)] += ir
                    pending_call = None
                else:
                    self_cost[fn] += ir
                continue
            key, _, rest = line.partition("=")
            if key == "fn":
                fn = resolve("fn", rest)
                obj_of.setdefault(fn, ob)
                cob = None
            elif key == "cfn":
                cfn = resolve("cfn", rest)
            elif key == "ob":
                ob = resolve("ob", rest)
            elif key == "cob":
                cob = resolve("ob", rest)
            elif key == "calls":
                count = int(rest.split()[0])
                calls[cfn] += count
                pair_calls[(fn, cfn)] += count
                pending_call = cfn
            elif line.startswith("positions:"):
                npos = len(line.split()[1:])
            elif line.startswith("events:"):
                events = line.split()[1:]
                event_idx = events.index("Ir") if "Ir" in events else 0
            elif line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1 + event_idx])
    if total is None:
        total = sum(self_cost.values())
    return total, self_cost, call_incl, calls, obj_of, pair_calls


def area_of(name, obj):
    for label, rx in AREAS:
        if rx.search(name):
            return label
    if obj and "libc" in obj:
        return "other libc (syscall wrappers, ...)"
    if obj and ("ld-linux" in obj or "vgpreload" in obj):
        return "dynamic loader / valgrind preload"
    return "other (std, core, alloc, other crates)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("requests", type=int)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--callers", action="append", default=[], metavar="REGEX",
                    help="also list the direct callers of the functions matching REGEX")
    args = ap.parse_args()
    total, self_cost, call_incl, calls, obj_of, pair_calls = parse(args.dump)
    n = args.requests
    per = lambda v: v / n  # noqa: E731

    print(f"Total: {total:,} instructions for {n} requests = {per(total):,.0f} per request "
          f"(self costs add up to {sum(self_cost.values()):,}).\n")

    areas = defaultdict(int)
    for name, v in self_cost.items():
        areas[area_of(name, obj_of.get(name))] += v
    print("| area (self cost) | instructions per request | share |")
    print("| --- | ---: | ---: |")
    for label, v in sorted(areas.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {per(v):,.0f} | {100 * v / total:.1f} % |")
    print()

    # Inclusive cost of the hooks: self + what they call, summed over the hook's functions
    # (the async fn and its closures); recursion is not an issue for these.
    incl_by_fn = defaultdict(int)
    for (caller, _callee), v in call_incl.items():
        incl_by_fn[caller] += v
    hooks = defaultdict(int)
    for name in set(self_cost) | set(incl_by_fn):
        m = HOOKS.search(name)
        if m and not name.endswith("new_ctx"):
            # Count only the outermost function of each hook: a closure called by the hook
            # function itself would be counted twice.
            hooks[m.group(1)] = max(hooks[m.group(1)], self_cost.get(name, 0) + incl_by_fn.get(name, 0))
    if hooks:
        print("| gateway hook (inclusive: itself and all it calls) | instructions per request | share |")
        print("| --- | ---: | ---: |")
        for hook, v in sorted(hooks.items(), key=lambda kv: -kv[1]):
            print(f"| `{hook}` | {per(v):,.0f} | {100 * v / total:.1f} % |")
        print()

    print("| calls per request | count |")
    print("| --- | ---: |")
    for label, rx in COUNTED:
        c = sum(v for name, v in calls.items() if name and rx.search(name))
        if c:
            print(f"| {label} | {c / n:.2f} |")
    print()

    print(f"| hottest functions by self cost (top {args.top}) | instructions per request | share |")
    print("| --- | ---: | ---: |")
    for name, v in sorted(self_cost.items(), key=lambda kv: -kv[1])[: args.top]:
        short = name if len(name) <= 150 else name[:147] + "..."
        short = short.replace("|", "\\|")
        print(f"| `{short}` | {per(v):,.0f} | {100 * v / total:.1f} % |")

    for pattern in args.callers:
        rx = re.compile(pattern)
        rows = [(caller, callee, call_incl[(caller, callee)], c)
                for (caller, callee), c in pair_calls.items() if callee and rx.search(callee)]
        rows.sort(key=lambda r: -r[2])
        print(f"\n| callers of `{pattern}` (top {args.top}) | calls per request | instructions per request in the callee |")
        print("| --- | ---: | ---: |")
        for caller, _callee, incl, c in rows[: args.top]:
            short = (caller if len(caller) <= 150 else caller[:147] + "...").replace("|", "\\|")
            print(f"| `{short}` | {c / n:.2f} | {per(incl):,.0f} |")


if __name__ == "__main__":
    sys.exit(main())

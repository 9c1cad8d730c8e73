#!/usr/bin/env python3
"""The README's tour, pasted as a newcomer would paste it, checked.

Extracts every ```sh block of the README's "A five-minute tour" section (except one preceded
by `<!-- tour: skip -->`), starts `travel up` on a fresh data directory, and feeds the
blocks, one step at a time, to one bash process (so a variable set in one block is seen by
the next, as in a terminal). A step is a run of command lines followed by its `#>` lines:
what the commands print (stdout and stderr, as a terminal shows them) must be exactly those
lines; `#> text...` matches any line starting with `text`. A step with no `#>` lines must
exit 0. The first failing step stops the run with a diff.

The tour is run where it cannot disturb anything: in a scratch git repository holding a copy
of gateway.yaml (so `sed -i ... gateway.yaml` and `git checkout -- gateway.yaml` work as in
the clone), with the README's ports (8888, 9091, 8081-8084) replaced by free loopback ports
in the copy and in the commands, and `target/release/` by the directory of the binaries.
The banner of `travel up` is checked too: its config must be watched, and its first
commands must be the tour's.

    tests/tour/run.py               # builds the debug binaries (CARGO_TARGET_DIR or target/)
    TOUR_BIN_DIR=target/release tests/tour/run.py
    TOUR_KEEP=1 tests/tour/run.py   # keep the scratch directory (logs) even on success

Exit status 0 only when every step printed what the README says.
"""

import difflib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_PORTS = ["8888", "9091", "8081", "8082", "8083", "8084"]
STEP_DEADLINE = 60.0
READY_DEADLINE = 60.0


def say(message):
    print(f"tour: {message}", flush=True)


def fail(message):
    print(f"tests/tour/run.py: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def tour_blocks(readme):
    """The tour's ```sh blocks, as lists of lines."""
    lines = readme.splitlines()
    try:
        start = lines.index("## A five-minute tour")
    except ValueError:
        fail("README.md has no '## A five-minute tour' section")
    blocks, block, skip_next = [], None, False
    for line in lines[start + 1:]:
        if block is None and line.startswith("## "):
            break
        if block is None:
            if line.strip() == "<!-- tour: skip -->":
                skip_next = True
            elif line.strip() == "```sh":
                block = []
            continue
        if line.strip() == "```":
            if not skip_next:
                blocks.append(block)
            block, skip_next = None, False
            continue
        block.append(line)
    if not blocks:
        fail("the tour has no ```sh blocks")
    return blocks


def steps(block):
    """A block's steps: (command lines, expected lines or None)."""
    result, commands, expected = [], [], None
    for line in block:
        if line.startswith("#>"):
            expected = (expected or []) + [line[3:] if line.startswith("#> ") else line[2:]]
            continue
        if expected is not None:
            result.append((commands, expected))
            commands, expected = [], None
        commands.append(line)
    if commands or expected is not None:
        result.append((commands, expected))
    return result


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [str(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def substitute(text, ports, bin_dir):
    for old, new in ports.items():
        text = re.sub(rf"(?<=:){old}\b", new, text)
    return text.replace("target/release/", f"{bin_dir}/")


def matches(expected, actual):
    if expected.endswith("..."):
        return actual.startswith(expected[:-3])
    return actual == expected


def build(bin_dir_env):
    if bin_dir_env:
        return Path(bin_dir_env).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    say("building travel and gateway (debug)")
    subprocess.run(
        ["cargo", "build", "--quiet", "--locked", "-p", "stack", "-p", "gateway"],
        cwd=ROOT,
        check=True,
    )
    return (ROOT / target / "debug").resolve()


class Stack:
    """`travel up` in the scratch directory."""

    def __init__(self, work, travel, ports):
        self.work = work
        self.out = work / "up.out"
        self.err = work / "up.err"
        env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
        env.setdefault("RUST_LOG", "warn")
        args = [
            str(travel), "up", "--config", "gateway.yaml", "--data-dir", "data",
            "--users-port", ports["8081"], "--paths-port", ports["8082"],
            "--trips-port", ports["8083"], "--parties-port", ports["8084"],
        ]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(args, cwd=work, env=env, stdout=out, stderr=err)

    def wait_ready(self):
        """The banner; None when a port was taken meanwhile (the caller picks others)."""
        deadline = time.monotonic() + READY_DEADLINE
        while time.monotonic() < deadline:
            banner = self.out.read_text()
            if "Ctrl-C or SIGTERM" in banner:
                return banner
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        if self.process.poll() is not None and "(in use)" in self.err.read_text():
            return None
        self.show_log()
        fail("travel up did not get ready")

    def show_log(self):
        print("--- travel up, last lines of stderr:", file=sys.stderr)
        for line in self.err.read_text().splitlines()[-20:]:
            print(line, file=sys.stderr)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Shell:
    """One bash process fed the steps, like a terminal the blocks are pasted into."""

    def __init__(self, work):
        self.work = work
        (work / "steps").mkdir()
        env = {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}
        self.process = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            cwd=work,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.count = 0

    def run(self, commands):
        """(exit status, output lines) of one step, or None past the deadline."""
        self.count += 1
        step = self.work / "steps" / f"{self.count}.sh"
        out, rc = step.with_suffix(".out"), step.with_suffix(".rc")
        step.write_text("\n".join(commands) + "\n")
        self.process.stdin.write(f"source {step} >{out} 2>&1 </dev/null; echo $? >{rc}.tmp; mv {rc}.tmp {rc}\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + STEP_DEADLINE
        while time.monotonic() < deadline:
            if rc.exists():
                lines = [line.rstrip() for line in out.read_text(errors="replace").splitlines()]
                while lines and not lines[-1]:
                    lines.pop()
                return int(rc.read_text().strip() or 1), lines
            if self.process.poll() is not None:
                return None
            time.sleep(0.05)
        return None

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def main():
    readme = (ROOT / "README.md").read_text()
    blocks = tour_blocks(readme)
    bin_dir = build(os.environ.get("TOUR_BIN_DIR"))
    for name in ("travel", "gateway"):
        if not (bin_dir / name).is_file():
            fail(f"no {name} binary in {bin_dir}")

    # Free ports can be taken by another process before travel up binds them: retried.
    for attempt in range(3):
        ports = dict(zip(README_PORTS, free_ports(len(README_PORTS))))
        work = Path(tempfile.mkdtemp(prefix="gateway-tour."))
        config = substitute((ROOT / "gateway.yaml").read_text(), ports, bin_dir)
        (work / "gateway.yaml").write_text(config)
        git = ["git", "-c", "user.name=tour", "-c", "user.email=tour@localhost"]
        subprocess.run(git + ["init", "-q"], cwd=work, check=True)
        subprocess.run(git + ["add", "gateway.yaml"], cwd=work, check=True)
        subprocess.run(git + ["commit", "-qm", "gateway.yaml as shipped"], cwd=work, check=True)
        stack = Stack(work, bin_dir / "travel", ports)
        banner = stack.wait_ready()
        if banner is not None:
            break
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    else:
        fail("travel up found one of its ports taken three times in a row")

    shell = None
    ok = False
    try:
        if "gateway.yaml is watched" not in banner:
            fail(f"travel up does not watch gateway.yaml in the tour's set-up:\n{banner}")
        tried = [line.strip() for line in banner.splitlines() if line.startswith("  curl ")]
        first = [substitute(line, ports, bin_dir).removesuffix("; echo")
                 for line in blocks[0] if line.startswith("curl ")][: len(tried)]
        if not tried or tried != first:
            diff = "\n".join(difflib.unified_diff(first, tried, "README tour", "travel up banner", lineterm=""))
            fail(f"the banner's commands are not the tour's first ones:\n{diff}")
        say(f"travel up ready in {work} (gateway :{ports['8888']}, admin :{ports['9091']})")

        shell = Shell(work)
        number = 0
        for block_number, block in enumerate(blocks, 1):
            for commands, expected in steps(block):
                number += 1
                run = [substitute(line, ports, bin_dir) for line in commands]
                result = shell.run(run)
                shown = "\n".join(f"  $ {line}" for line in commands if line and not line.startswith("#"))
                if result is None:
                    stack.show_log()
                    fail(f"block {block_number}, step {number}: no answer within {STEP_DEADLINE:.0f} s:\n{shown}")
                status, actual = result
                if expected is None:
                    if status != 0:
                        print("\n".join(actual[-20:]), file=sys.stderr)
                        fail(f"block {block_number}, step {number}: exit status {status}:\n{shown}")
                    continue
                want = [substitute(line, ports, bin_dir) for line in expected]
                if len(want) != len(actual) or not all(map(matches, want, actual)):
                    diff = "\n".join(difflib.unified_diff(want, actual, "README (#> lines)", "printed", lineterm=""))
                    stack.show_log()
                    fail(f"block {block_number}, step {number} printed something else than the README says:\n{shown}\n{diff}")
                say(f"block {block_number}, step {number}: ok")
        ok = True
    finally:
        if shell:
            shell.stop()
        stack.stop()
        if ok and not os.environ.get("TOUR_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"tour: scratch directory kept: {work}", file=sys.stderr)
    say(f"passed: {number} steps in {len(blocks)} blocks")


if __name__ == "__main__":
    main()

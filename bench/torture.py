#!/usr/bin/env python3
"""Continuous protection under faults (issue 15: "correct to the transaction").

Part 1 (default): `offsite run` with `continuous: {interval: "1s"}` ships a live database to two
targets at once, a folder and `rclone serve s3` on 127.0.0.1, while a writer process commits mixed
inserts, updates and deletes of varying sizes and logs every commit: its number (a counter row in
the same transaction), the wall-clock time just before COMMIT and just after it returned (ms), and
a digest of the table after it (order-independent, kept incrementally). During the run: random
application checkpoints (PASSIVE, FULL, RESTART, TRUNCATE), one VACUUM, two `kill -9` of the
agent each followed by a restart, one outage of each target (the S3 server stopped; the folder
target renamed away) for about 20 s. Afterwards `offsite list --json` gives the restorable windows
per target; random moments inside them are restored with `offsite restore --at` and each must be
the state the writer had committed at that moment and pass `PRAGMA integrity_check`; moments in the
holes (between windows) must be refused or restore the right state.

A moment M is judged against the writer's log: commit k is certainly committed by M when its
COMMIT returned at or before M, certainly not when its COMMIT began after M; a restore that gives
the state of commit k is
- OK when k is the last commit certainly committed by M, or a commit in flight at M;
- LATE STAMP when k is older but only by commits that returned less than --tolerance ms before M
  (the agent stamps a transaction with the time it saw it committed, normally a few ms later);
- WRONG otherwise (older or newer state, or a state the writer never committed).

Part 2 (--restore-bench): a 1 GiB CRM database (`offsite-crm generate`), a full backup by the agent
on a folder target, then the agent ships an hour's worth of changes at 50 tx/s (`offsite-crm write`
at a higher rate; --transactions, default 180000); `offsite restore --backup BASE` against
`offsite restore` (latest: base plus changes, compacted objects for the bulk), wall time and peak
RSS from /usr/bin/time -v.

Uses the release build (`swift build -c release`). Python standard library only; needs rclone,
GNU time. Not part of CI.

    python3 bench/torture.py                 # 5-minute run, both targets
    python3 bench/torture.py --quick         # about 1 minute
    python3 bench/torture.py --restore-bench [--transactions 180000]
"""

import argparse
import bisect
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".build" / "release"
DB_NAME = "torture"
SECTION = "## Continuous protection under faults"


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def now_ms():
    return int(time.time() * 1000)


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso(text):
    # 2026-12-03T12:00:01.512Z or without fraction
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z", text)
    if not m:
        raise ValueError(text)
    base = datetime(*map(int, m.groups()[:6]), tzinfo=timezone.utc)
    fraction = (m.group(7) or "0").ljust(3, "0")[:3]
    return int(base.timestamp()) * 1000 + int(fraction)


def load_average():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---------------------------------------------------------------------------------------------
# The writer (runs as its own process: `torture.py --writer …`)

def row_hash(row_id, tag, value):
    h = hashlib.blake2b(digest_size=8)
    h.update(row_id.to_bytes(8, "little"))
    h.update(tag.encode())
    h.update(value)
    return int.from_bytes(h.digest(), "little")


def table_digest(connection):
    """Count and order-independent digest of table kv, and the counter."""
    total, count = 0, 0
    for row_id, tag, value in connection.execute("SELECT id, tag, v FROM kv"):
        total = (total + row_hash(row_id, tag, value)) & 0xFFFFFFFFFFFFFFFF
        count += 1
    n = connection.execute("SELECT n FROM meta").fetchone()[0]
    return n, count, total


def create_database(path):
    connection = sqlite3.connect(path, isolation_level=None)
    connection.executescript("""
        PRAGMA page_size = 4096;
        PRAGMA journal_mode = WAL;
        CREATE TABLE kv(id INTEGER PRIMARY KEY, tag TEXT NOT NULL, v BLOB NOT NULL);
        CREATE INDEX kv_tag ON kv(tag);
        CREATE TABLE meta(n INTEGER NOT NULL);
        INSERT INTO meta VALUES (0);
    """)
    connection.close()


def random_size(rng):
    roll = rng.random()
    if roll < 0.70:
        return rng.randint(10, 500)
    if roll < 0.95:
        return rng.randint(500, 8000)
    return rng.randint(8000, 120000)  # overflow chains


def writer_main(args):
    """Commits until the stop file appears; one log line per commit, one per checkpoint or VACUUM."""
    rng = random.Random(args.seed)
    connection = sqlite3.connect(args.db, isolation_level=None, timeout=10)
    connection.execute("PRAGMA busy_timeout = 10000")
    connection.execute("PRAGMA synchronous = NORMAL")
    out = open(args.log, "a", buffering=1)
    hashes = {}
    for row_id, tag, value in connection.execute("SELECT id, tag, v FROM kv"):
        hashes[row_id] = row_hash(row_id, tag, value)
    digest = sum(hashes.values()) & 0xFFFFFFFFFFFFFFFF
    n = connection.execute("SELECT n FROM meta").fetchone()[0]
    next_id = (max(hashes) + 1) if hashes else 1
    live = list(hashes)
    start = time.time()
    next_checkpoint = start + rng.uniform(2, 8)
    vacuum_at = start + args.vacuum_after if args.vacuum_after >= 0 else None
    out.write(json.dumps({"kind": "start", "t": now_ms(), "n": n, "count": len(hashes), "digest": digest}) + "\n")
    while not os.path.exists(args.stop):
        if time.time() >= next_checkpoint:
            mode = rng.choice(["PASSIVE", "FULL", "RESTART", "TRUNCATE"])
            began = now_ms()
            try:
                result = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
                outcome = list(result)
            except sqlite3.OperationalError as error:
                outcome = str(error)
            out.write(json.dumps({"kind": "checkpoint", "mode": mode, "t0": began, "t": now_ms(), "result": outcome}) + "\n")
            next_checkpoint = time.time() + rng.uniform(2, 8)
            continue
        if vacuum_at is not None and time.time() >= vacuum_at:
            vacuum_at = None
            began = now_ms()
            connection.execute("VACUUM")
            out.write(json.dumps({"kind": "vacuum", "t0": began, "t": now_ms()}) + "\n")
            continue
        changes = {}
        roll = rng.random()
        connection.execute("BEGIN IMMEDIATE")
        if roll < 0.01 and live:
            operations = [("delete", None)] * (len(live) * 3 // 10)  # a mass delete
        elif roll < 0.03:
            operations = [("insert", 2000)] * 150  # a big transaction
        else:
            operations = []
            for _ in range(rng.randint(1, 6)):
                choice = rng.random()
                if len(live) > args.max_rows:
                    choice = 0.95
                operations.append(("insert", None) if choice < 0.55 or not live else
                                  ("update", None) if choice < 0.80 else ("delete", None))
        for operation, size in operations:
            if operation == "insert" or not live:
                value = rng.randbytes(size or random_size(rng))
                tag = f"t{rng.randint(0, 999):03d}"
                connection.execute("INSERT INTO kv(id, tag, v) VALUES (?, ?, ?)", (next_id, tag, value))
                changes[next_id] = row_hash(next_id, tag, value)
                live.append(next_id)
                next_id += 1
            elif operation == "update":
                row_id = rng.choice(live)
                value = rng.randbytes(random_size(rng))
                tag = f"t{rng.randint(0, 999):03d}"
                connection.execute("UPDATE kv SET tag = ?, v = ? WHERE id = ?", (tag, value, row_id))
                changes[row_id] = row_hash(row_id, tag, value)
            else:
                index = rng.randrange(len(live))
                row_id = live[index]
                live[index] = live[-1]
                live.pop()
                connection.execute("DELETE FROM kv WHERE id = ?", (row_id,))
                changes[row_id] = None
        connection.execute("UPDATE meta SET n = n + 1")
        began = now_ms()
        connection.execute("COMMIT")
        ended = now_ms()
        n += 1
        for row_id, value in changes.items():
            old = hashes.pop(row_id, 0)
            digest = (digest - old) & 0xFFFFFFFFFFFFFFFF
            if value is not None:
                hashes[row_id] = value
                digest = (digest + value) & 0xFFFFFFFFFFFFFFFF
        out.write(json.dumps({"kind": "commit", "n": n, "t0": began, "t": ended, "count": len(hashes), "digest": digest}) + "\n")
        time.sleep(rng.uniform(0, args.pause_ms / 1000))
    connection.close()
    out.write(json.dumps({"kind": "stop", "t": now_ms(), "n": n}) + "\n")


# ---------------------------------------------------------------------------------------------
# Processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """`rclone serve s3` on 127.0.0.1 over a folder; the key pair only in the environment."""

    def __init__(self, folder, bucket="torture"):
        self.folder = Path(folder)
        self.bucket = bucket
        (self.folder / bucket).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.access_key = "torture" + secrets.token_hex(4)
        self.secret = secrets.token_hex(16)
        self.process = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        environment = dict(os.environ, RCLONE_AUTH_KEY=f'"{self.access_key},{self.secret}"',
                           RCLONE_CONFIG=str(self.folder.parent / "rclone.conf"))
        self.log = open(self.folder.parent / "rclone.log", "a")
        self.process = subprocess.Popen(["rclone", "serve", "s3", "--addr", f"127.0.0.1:{self.port}", str(self.folder)],
                                        env=environment, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("rclone serve s3 did not start")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None


class Agent:
    def __init__(self, work, config, label="agent"):
        self.work, self.config, self.label = Path(work), config, label
        self.process = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.log_path = self.work / f"{self.label}-{self.starts}.log"
        handle = open(self.log_path, "w")
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("OFFSITE_", "AWS_"))}
        self.process = subprocess.Popen([str(BIN / "offsite"), "run", "--config", str(self.config)], cwd=self.work,
                                        stdout=handle, stderr=handle, stdin=subprocess.DEVNULL, env=environment)
        self.started_at = now_ms()

    def events(self, name=None):
        found = []
        for path in sorted(self.work.glob(f"{self.label}-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if name is None or entry.get("event") == name:
                    entry["_file"] = path.name
                    found.append(entry)
        return found

    def wait_for(self, event, count=1, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.events(event)) >= count:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"the agent exited ({self.process.returncode}) before {event}: see {self.log_path}")
            time.sleep(0.2)
        raise RuntimeError(f"no {event} within {timeout} s: see {self.log_path}")

    def kill9(self):
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        return now_ms()

    def terminate(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait()
        return self.process.returncode if self.process else None


def offsite(work, config, *arguments, timed=False, check=True):
    command = [str(BIN / "offsite"), *arguments, "--config", str(config)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OFFSITE_", "AWS_"))}
    time_file = None
    if timed:
        time_file = Path(work) / "time.txt"
        command = ["/usr/bin/time", "-v", "-o", str(time_file)] + command
    began = time.monotonic()
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, env=environment)
    result.wall = time.monotonic() - began
    if timed:
        text = time_file.read_text()
        result.rss_mib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
        user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))
        system = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
        result.cpu = user + system
    if check and result.returncode != 0:
        raise RuntimeError(f"offsite {' '.join(arguments)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def keygen(work):
    result = subprocess.run([str(BIN / "offsite"), "keygen", "--output", "identity.txt"], cwd=work,
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


# ---------------------------------------------------------------------------------------------
# Part 1: the run under faults

class History:
    """The writer's log: commits in order, and what the state is at any moment."""

    def __init__(self, path):
        self.commits = []  # (n, t0, t, count, digest)
        self.events = []
        self.start_state = None
        for line in Path(path).read_text().splitlines():
            entry = json.loads(line)
            if entry["kind"] == "commit":
                self.commits.append(entry)
            elif entry["kind"] == "start":
                self.start_state = entry
            else:
                self.events.append(entry)
        self.by_n = {c["n"]: c for c in self.commits}
        self.ends = [c["t"] for c in self.commits]
        self.begins = [c["t0"] for c in self.commits]

    def state(self, n):
        """(count, digest) after commit n."""
        if n in self.by_n:
            return self.by_n[n]["count"], self.by_n[n]["digest"]
        if self.start_state and n == self.start_state["n"]:
            return self.start_state["count"], self.start_state["digest"]
        return None

    def judge(self, moment, n, tolerance):
        """OK, LATE STAMP or WRONG for a restore at `moment` that gave the state after commit n."""
        first = self.start_state["n"]
        # the last commit whose COMMIT returned by the moment; the last whose COMMIT began by it
        certain = bisect.bisect_right(self.ends, moment)  # commits[0:certain] certainly committed
        possible = bisect.bisect_right(self.begins, moment)  # commits[0:possible] may be committed
        newest_certain = first + certain
        newest_possible = first + possible
        if newest_certain <= n <= newest_possible:
            return "OK", 0
        if n < newest_certain:
            # older: acceptable only when every commit after n returned within the tolerance before the moment
            returned = self.by_n[n + 1]["t"]
            lag = moment - returned
            return ("LATE STAMP" if lag <= tolerance else "WRONG"), lag
        return "WRONG", None


def digest_of(path):
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
        n, count, digest = table_digest(connection)
    finally:
        connection.close()
    return integrity, n, count, digest


def windows_from_list(work, config, db=DB_NAME):
    """Per target: restorable spans [(from_ms, to_ms)], bases, change object count."""
    listing = json.loads(offsite(work, config, "list", "--db", db, "--json").stdout)
    targets = {}
    for entry in listing:
        target = targets.setdefault(entry["target"], {"spans": [], "bases": [], "changes": 0, "compacted": 0, "missing": []})
        if entry.get("object") == "backup" and entry.get("target") != "local":
            target["bases"].append(entry["id"])
            for span in entry.get("restorable", []):
                target["spans"].append((parse_iso(span["from"]), parse_iso(span["to"]), entry["id"]))
            if "missingChange" in entry:
                target["missing"].append((entry["id"], entry["missingChange"]))
        elif entry.get("object") == "change":
            target["changes"] += 1
        elif entry.get("object") == "compacted":
            target["compacted"] += 1
    targets.pop("local", None)
    for target in targets.values():
        target["spans"].sort()
    return targets


def run_faults(args, work):
    cleanup = []
    try:
        return run_faults_in(args, work, cleanup)
    finally:
        for stop in reversed(cleanup):
            try:
                stop()
            except Exception as error:  # noqa: BLE001 - cleaning up after a failure
                log(f"cleanup: {error}")


def stop_process(process):
    if process.poll() is None:
        process.kill()
        process.wait()


def run_faults_in(args, work, cleanup):
    work.mkdir(parents=True, exist_ok=True)
    data, local, remote = work / "data", work / "local", work / "remote"
    data.mkdir()
    local.mkdir()
    remote.mkdir()
    recipient = keygen(work)
    s3 = S3Server(work / "s3data")
    s3.start()
    cleanup.append(lambda: s3.stop())
    (work / "s3-secret").write_text(s3.secret)
    (work / "s3-secret").chmod(0o600)
    config = work / "config.json"
    config.write_text(json.dumps({
        "watch": {"dir": str(data)},
        "local": {"dir": str(local)},
        "encryption": {"recipients": [recipient], "identityFile": str(work / "identity.txt")},
        "schedule": {"every": "1h", "startup": False, "shutdown": False},
        "continuous": {"interval": "1s"},
        "targets": [
            {"name": "folder", "url": f"file://{remote}"},
            {"name": "s3", "url": f"s3://{s3.bucket}/offsite", "endpoint": s3.endpoint, "region": "us-east-1",
             "accessKeyId": s3.access_key, "secretAccessKeyFile": str(work / "s3-secret"), "timeout": "10s"},
        ],
        "shutdownTimeout": "30s",
        "log": {"format": "json", "level": "debug"},
    }, indent=2))
    db = data / f"{DB_NAME}.db"
    create_database(db)
    duration = args.minutes * 60
    outage = args.outage
    load_start = load_average()

    agent = Agent(work, config)
    agent.start()
    cleanup.append(lambda: agent.process and stop_process(agent.process))
    agent.wait_for("changes.chain", timeout=60)
    writer_log = work / "commits.jsonl"
    stop_file = work / "stop-writer"
    writer = subprocess.Popen([sys.executable, __file__, "--writer", "--db", str(db), "--log", str(writer_log),
                               "--stop", str(stop_file), "--seed", str(args.seed), "--pause-ms", str(args.pause_ms),
                               "--max-rows", str(args.max_rows), "--vacuum-after", str(0.45 * duration)],
                              stdout=subprocess.DEVNULL)
    cleanup.append(lambda: stop_process(writer))
    began = time.time()
    faults = []

    def at(fraction):
        wait = began + fraction * duration - time.time()
        if wait > 0:
            time.sleep(wait)
        if writer.poll() is not None:
            raise RuntimeError(f"the writer exited early ({writer.returncode})")

    def kill_and_restart(label):
        killed = agent.kill9()
        log(f"{label}: agent killed (kill -9)")
        time.sleep(args.down)
        agent.start()
        faults.append({"fault": label, "from": killed, "to": agent.started_at})
        log(f"{label}: agent restarted")

    at(0.15)
    kill_and_restart("kill -9 #1")
    at(0.30)
    s3.stop()
    stopped = now_ms()
    log(f"S3 server stopped for {outage} s")
    time.sleep(outage)
    s3.start()
    faults.append({"fault": "S3 outage", "from": stopped, "to": now_ms()})
    log("S3 server back")
    at(0.55)
    # Running as root, chmod 000 stops nobody: the folder is renamed away and a plain file takes
    # its place, so that the target can neither write nor create its folder again.
    aside = work / "remote-away"
    remote.rename(aside)
    remote.write_text("the folder target is away\n")
    stopped = now_ms()
    log(f"folder target renamed away (a file in its place) for {outage} s")
    time.sleep(outage)
    remote.unlink()
    aside.rename(remote)
    faults.append({"fault": "folder outage (renamed away, a file in its place)", "from": stopped, "to": now_ms()})
    log("folder target back")
    at(0.75)
    kill_and_restart("kill -9 #2")
    at(1.0)
    stop_file.write_text("stop")
    writer.wait(timeout=60)
    if writer.returncode != 0:
        raise RuntimeError(f"the writer failed ({writer.returncode})")
    history = History(writer_log)
    last = history.commits[-1]
    log(f"writer stopped after {len(history.commits)} commits; waiting for the targets to reach commit {last['n']}")
    deadline = time.time() + 180
    reached = {}
    while time.time() < deadline:
        windows = windows_from_list(work, config)
        reached = {name: max((s[1] for s in w["spans"]), default=0) for name, w in windows.items()}
        if len(reached) == 2 and all(end >= last["t"] for end in reached.values()):
            break
        time.sleep(2)
    caught_up = now_ms()
    status = agent.terminate()
    s3_process_alive = s3.process is not None
    log(f"agent stopped ({status}); targets reached: " + ", ".join(f"{k} {iso(v)}" for k, v in reached.items()))
    load_run = load_average()

    # Restores
    windows = windows_from_list(work, config)
    rng = random.Random(args.seed + 1)
    first_commit = history.commits[0]["t"]
    results = []
    restore_dir = work / "restored"
    restore_dir.mkdir()
    for target, window in sorted(windows.items()):
        spans = [s for s in window["spans"]]
        if not spans:
            continue
        start, end = spans[0][0], spans[-1][1]
        moments = []
        total = sum(s[1] - s[0] for s in spans)
        for _ in range(args.moments):
            pick = rng.randrange(max(total, 1))
            for s in spans:
                if pick <= s[1] - s[0]:
                    moments.append(("window", s[0] + pick))
                    break
                pick -= s[1] - s[0]
        # holes: between spans (each hole gets a few moments), and at the faults
        holes = [(a[1], b[0]) for a, b in zip(spans, spans[1:]) if b[0] - a[1] > 1]
        for a, b in holes:
            for _ in range(args.hole_moments):
                moments.append(("hole", rng.randint(a + 1, b - 1)))
        for fault in faults:
            for _ in range(2):
                moments.append(("fault", rng.randint(fault["from"], fault["to"])))
        for index, (kind, moment) in enumerate(moments):
            if moment < max(start, first_commit) or moment > last["t"]:
                continue
            covered = any(s[0] <= moment <= s[1] for s in spans)
            output = restore_dir / f"{target}-{index}.db"
            result = offsite(work, config, "restore", "--target", target, "--db", DB_NAME, "--at", iso(moment),
                             "--output", str(output), check=False)
            entry = {"target": target, "kind": kind, "covered": covered, "moment": moment, "status": result.returncode,
                     "message": (result.stderr.strip() or result.stdout.strip())[-400:]}
            if result.returncode != 0:
                entry["verdict"] = "REFUSED" if not covered else "REFUSED INSIDE WINDOW"
            else:
                integrity, n, count, digest = digest_of(output)
                entry.update(n=n, integrity=integrity)
                expected = history.state(n)
                if integrity != "ok":
                    entry["verdict"] = "WRONG"
                    entry["why"] = f"integrity_check: {integrity}"
                elif expected != (count, digest):
                    entry["verdict"] = "WRONG"
                    entry["why"] = f"the content is not the state the writer had after commit {n}"
                else:
                    verdict, lag = history.judge(moment, n, args.tolerance)
                    entry["verdict"] = verdict
                    if lag is not None:
                        entry["lag"] = lag
                    if verdict != "OK":
                        certain = bisect.bisect_right(history.ends, moment) + history.start_state["n"]
                        entry["why"] = f"restored commit {n}; commit {certain} had returned at or before the moment"
                output.unlink()
            results.append(entry)
            if entry["verdict"] not in ("OK", "REFUSED"):
                log(f"{target} {kind} {iso(moment)}: {entry['verdict']} {entry.get('why', '')} {entry['message'][:200]}")
    # latest restore and integrity on both targets
    latest = {}
    for target in sorted(windows):
        output = restore_dir / f"{target}-latest.db"
        result = offsite(work, config, "restore", "--target", target, "--db", DB_NAME, "--output", str(output), check=False)
        if result.returncode == 0:
            integrity, n, count, digest = digest_of(output)
            latest[target] = {"n": n, "integrity": integrity, "matches": history.state(n) == (count, digest),
                              "last commit": last["n"]}
        else:
            latest[target] = {"failed": result.stderr.strip()[-300:]}
    if s3_process_alive:
        s3.stop()

    gaps = [{"reason": e.get("reason"), "file": e["_file"]} for e in agent.events("changes.gap")]
    checkpoints = [e for e in history.events if e["kind"] == "checkpoint"]
    summary = {
        "minutes": args.minutes,
        "commits": len(history.commits),
        "rate": len(history.commits) / max(1, (history.commits[-1]["t"] - history.commits[0]["t"]) / 1000),
        "checkpoints": {mode: sum(1 for c in checkpoints if c["mode"] == mode) for mode in ["PASSIVE", "FULL", "RESTART", "TRUNCATE"]},
        "checkpoint_busy": sum(1 for c in checkpoints if isinstance(c["result"], list) and c["result"][0] != 0),
        "checkpoint_errors": sum(1 for c in checkpoints if not isinstance(c["result"], list)),
        "vacuum": [e for e in history.events if e["kind"] == "vacuum"],
        "faults": faults,
        "gaps": gaps,
        "agent_starts": agent.starts,
        "agent_exit": status,
        "windows": {name: {"spans": [(iso(a), iso(b), base) for a, b, base in w["spans"]], "bases": len(w["bases"]),
                           "changes": w["changes"], "compacted": w["compacted"], "missing": w["missing"]}
                    for name, w in windows.items()},
        "catch_up_ms": caught_up - last["t"],
        "latest": latest,
        "load": {"start": load_start, "end of run": load_run, "end of restores": load_average()},
        "counts": {},
        "results": results,
    }
    for entry in results:
        key = f"{entry['target']}: {entry['verdict']}"
        summary["counts"][key] = summary["counts"].get(key, 0) + 1
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def print_faults_summary(summary):
    print()
    print(f"== Continuous protection under faults: {summary['minutes']} min, {summary['commits']} commits "
          f"({summary['rate']:.1f}/s)")
    print(f"checkpoints: {summary['checkpoints']} (busy {summary['checkpoint_busy']}, errors {summary['checkpoint_errors']}); "
          f"VACUUM: {len(summary['vacuum'])}")
    for fault in summary["faults"]:
        print(f"fault: {fault['fault']} {iso(fault['from'])} – {iso(fault['to'])}")
    print(f"gaps the agent reported: {len(summary['gaps'])}: " + "; ".join(g["reason"] or "?" for g in summary["gaps"]))
    for name, window in summary["windows"].items():
        print(f"{name}: {window['bases']} base(s), {window['changes']} change + {window['compacted']} compacted objects; spans:")
        for a, b, base in window["spans"]:
            print(f"    {a} – {b}  ({base})")
    print(f"latest restores: {summary['latest']}")
    for target in sorted({r["target"] for r in summary["results"]}):
        mine = [r for r in summary["results"] if r["target"] == target]
        counts = {}
        for r in mine:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        print(f"{target}: {len(mine)} restores: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    wrong = [r for r in summary["results"] if r["verdict"] == "WRONG"]
    print(f"WRONG: {len(wrong)}")
    for r in wrong[:20]:
        print(f"  {r['target']} {r['kind']} {iso(r['moment'])}: {r.get('why')} (lag {r.get('lag')} ms)")
    print(f"load average: {summary['load']}")


# ---------------------------------------------------------------------------------------------
# Part 2: restore of a base plus an hour of changes

def run_restore_bench(args, work):
    work.mkdir(parents=True, exist_ok=True)
    data, local, remote = work / "data", work / "local", work / "remote"
    for folder in (data, local, remote):
        folder.mkdir(exist_ok=True)
    cache = Path(args.cache) if args.cache else work / "crm-1024.db"
    if not cache.exists():
        log(f"generating a {args.size_mib} MiB CRM database")
        subprocess.run([str(BIN / "offsite-crm"), "generate", "--out", str(cache), "--size-mib", str(args.size_mib),
                        "--seed", "1"], check=True)
    db = data / "crm.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    shutil.copyfile(cache, db)
    recipient = keygen(work)
    config = work / "config.json"
    config.write_text(json.dumps({
        "watch": {"dir": str(data)},
        "local": {"dir": str(local)},
        "encryption": {"recipients": [recipient], "identityFile": str(work / "identity.txt")},
        "schedule": {"every": "24h", "startup": False, "shutdown": False},
        # maxChain large: one chain for the whole hour, as the case has it
        "continuous": {"interval": "1s", "maxChain": "1000%"},
        "targets": [{"name": "folder", "url": f"file://{remote}"}],
        "shutdownTimeout": "60s",
        "log": {"format": "json", "level": "info"},
    }, indent=2))
    load_start = load_average()
    agent = Agent(work, config)
    agent.start()
    log("waiting for the base (a full backup of the 1 GiB database)")
    agent.wait_for("changes.chain", timeout=900)
    began = time.monotonic()
    written = 0
    reports = []
    while written < args.transactions:
        seconds = min(60, max(5, (args.transactions - written) / args.write_rate + 1))
        result = subprocess.run([str(BIN / "offsite-crm"), "write", "--db", str(db), "--rate", str(args.write_rate),
                                 "--duration", f"{seconds:.0f}", "--seed", str(written + 1), "--json"],
                                capture_output=True, text=True, check=True)
        report = json.loads(result.stdout)
        reports.append(report)
        written += report["committed"]
        log(f"{written} transactions written ({report['achievedRate']:.0f}/s)")
    write_seconds = time.monotonic() - began
    # wait for everything on the target
    log("waiting for the agent to ship the last change")
    deadline = time.time() + 600
    target_end = 0
    last_commit = now_ms()
    while time.time() < deadline:
        windows = windows_from_list(work, config, "crm")
        target_end = max((s[1] for w in windows.values() for s in w["spans"]), default=0)
        if target_end >= last_commit - 2000 and not list((local / "crm" / ".outbox").glob("*")):
            break
        time.sleep(3)
    agent.terminate()
    windows = windows_from_list(work, config, "crm")["folder"]
    base = windows["bases"][-1]
    sizes = {"base": 0, "change": 0, "compacted": 0}
    listing = json.loads(offsite(work, config, "list", "--db", "crm", "--json", "--target", "folder").stdout)
    for entry in listing:
        if entry.get("object") in ("change", "compacted"):
            sizes[entry["object"]] += entry["size"]
        elif entry.get("object") == "backup" and entry.get("id") == base:
            sizes["base"] = entry["size"]
    db_size = db.stat().st_size
    runs = []
    for run in range(args.runs):
        for what in (["base", "latest"] if run % 2 == 0 else ["latest", "base"]):
            output = work / f"restored-{what}.db"
            output.unlink(missing_ok=True)
            arguments = ["restore", "--target", "folder", "--db", "crm", "--output", str(output)]
            if what == "base":
                arguments += ["--backup", base]
            result = offsite(work, config, *arguments, timed=True)
            runs.append({"what": what, "wall": result.wall, "cpu": result.cpu, "rss": result.rss_mib,
                         "message": result.stderr.strip()[-300:]})
            log(f"restore {what}: {result.wall:.2f} s wall, {result.cpu:.2f} s CPU, {result.rss_mib:.1f} MiB")
    # The latest restore must hold every transaction: the CRM's own counters agree with its rows.
    check = subprocess.run([str(BIN / "offsite-crm"), "check", "--db", str(work / "restored-latest.db")],
                           capture_output=True, text=True)
    live = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    restored = sqlite3.connect(f"file:{work / 'restored-latest.db'}?mode=ro", uri=True)
    count_sql = "SELECT count(*) FROM sqlite_master"
    same = live.execute(count_sql).fetchone() == restored.execute(count_sql).fetchone()
    tables = [r[0] for r in live.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        if live.execute(f'SELECT count(*), max(rowid) FROM "{table}"').fetchone() != \
                restored.execute(f'SELECT count(*), max(rowid) FROM "{table}"').fetchone():
            same = False
    summary = {
        "transactions": written, "write_seconds": write_seconds,
        "write_rate": written / write_seconds, "hour_ratio": written / 180000,
        "db_mib": db_size / 2**20, "sizes_mib": {k: v / 2**20 for k, v in sizes.items()},
        "changes": windows["changes"], "compacted": windows["compacted"], "base_id": base,
        "runs": runs, "crm_check": (check.returncode, check.stdout.strip()[-300:]), "latest_matches_live": same,
        "load": {"start": load_start, "end": load_average()},
    }
    def median(values):
        values = sorted(values)
        return values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    for what in ("base", "latest"):
        mine = [r for r in runs if r["what"] == what]
        summary[what] = {"wall": median([r["wall"] for r in mine]), "cpu": median([r["cpu"] for r in mine]),
                         "rss": max(r["rss"] for r in mine), "walls": [r["wall"] for r in mine]}
    summary["ratio"] = summary["latest"]["wall"] / summary["base"]["wall"]
    (work / "restore-summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def print_restore_summary(s):
    print()
    print(f"== Restore of a {s['db_mib']:.0f} MiB base plus {s['transactions']} transactions "
          f"({s['hour_ratio']:.2f} h at 50 tx/s), written at {s['write_rate']:.0f}/s")
    print(f"objects: base {s['sizes_mib']['base']:.1f} MiB, {s['changes']} change objects {s['sizes_mib']['change']:.1f} MiB, "
          f"{s['compacted']} compacted {s['sizes_mib']['compacted']:.1f} MiB")
    for what in ("base", "latest"):
        r = s[what]
        print(f"restore {what}: median wall {r['wall']:.2f} s {r['walls']}, CPU {r['cpu']:.2f} s, peak RSS {r['rss']:.1f} MiB")
    print(f"ratio latest / base: {s['ratio']:.2f} (goal ≤ 1.5); latest restore passes offsite-crm check: "
          f"{s['crm_check'][0] == 0}; same tables and row counts as the live database: {s['latest_matches_live']}")
    print(f"load average: {s['load']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db")
    parser.add_argument("--log")
    parser.add_argument("--stop")
    parser.add_argument("--vacuum-after", type=float, default=-1)
    parser.add_argument("--max-rows", type=int, default=4000, help="rows the writer keeps about (default 4000)")
    parser.add_argument("--pause-ms", type=float, default=40, help="writer's random pause between commits, at most (ms)")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--quick", action="store_true", help="about one minute, outages of 10 s")
    parser.add_argument("--outage", type=float, default=20, help="seconds each target is away")
    parser.add_argument("--down", type=float, default=3, help="seconds the agent stays dead after each kill -9")
    parser.add_argument("--moments", type=int, default=50, help="random moments per target inside the windows")
    parser.add_argument("--hole-moments", type=int, default=3, help="moments per hole between windows")
    parser.add_argument("--tolerance", type=int, default=100, help="ms a commit stamp may lag the writer's clock")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", help="work folder (default: a new one under bench/work)")
    parser.add_argument("--restore-bench", action="store_true", help="part 2 only")
    parser.add_argument("--transactions", type=int, default=180000)
    parser.add_argument("--write-rate", type=float, default=2000, help="offsite-crm write --rate for part 2")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--cache", help="an existing generated CRM database to copy for part 2")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.writer:
        return writer_main(args)
    if args.quick:
        args.minutes = 1
        args.outage = min(args.outage, 10)
    if not (BIN / "offsite").exists():
        sys.exit(f"{BIN / 'offsite'} is missing: run `swift build -c release` first")
    base = Path(args.work).resolve() if args.work else ROOT / "bench" / "work" / f"torture-{time.strftime('%Y%m%dT%H%M%S')}"
    if args.restore_bench:
        summary = run_restore_bench(args, base)
        print_restore_summary(summary)
        return 0
    summary = run_faults(args, base)
    print_faults_summary(summary)
    print(f"details: {base / 'summary.json'}")
    return 1 if any(r["verdict"] == "WRONG" for r in summary["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())

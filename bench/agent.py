#!/usr/bin/env python3
"""What `offsite run` (the agent) costs an application that commits at 50 transactions a second.

    python3 bench/agent.py            # the full run (about 35 min); writes its section of docs/BENCHMARKS.md
    python3 bench/agent.py --quick    # small databases, short phases: checks that everything works (< 2 min)

Standard library only; uses the release build (`swift build -c release`: .build/release/offsite and
offsite-crm, or BENCH_BIN), strace, rclone (S3 server on 127.0.0.1), sqlite3 and litestream (0.5).

Every measurement is a pair of phases of the same length on fresh copies of the same database: the
writer alone, then the writer with the agent (or Litestream) beside it; the pairs are repeated.
The writer is a separate process (this script with --writer): every 1/RATE s one transaction of
ROWS_PER_TX inserted rows of ROW_BYTES bytes of text plus one counter update, synchronous=NORMAL,
the default autocheckpoint (1000 pages), busy timeout 5 s; it records each commit's start and end
time. Scenarios:

- idle-agent (issue 14): the agent with no backup due (schedule.every far away, no startup or
  change backups, no continuous protection). Commit latency, the agent's fsync/fdatasync/rename
  calls (strace attached to the agent in a third phase of each pair), CPU and peak RSS.
- continuous (issue 15), `continuous.interval` 1 s, to a folder target and to S3 (rclone serve s3 on
  127.0.0.1, behind a counting proxy): per-commit RPO from the writer's commit to the agent's
  `changes.shipped` log line, commit latency, peak -wal size (sampled every 10 ms), CPU, peak RSS,
  requests and bytes sent to S3, then a 60 s idle window with no writes (requests made).
- litestream: `litestream replicate` (1 s sync interval) on the same workload and S3 server.
"""

import argparse
import ctypes
import datetime
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Workload parameters

RATE = 50                 # transactions per second the writer commits
SECONDS = 60              # length of every phase (writer alone, writer + agent)
ROWS_PER_TX = 1           # rows inserted per transaction (plus one counter update)
ROW_BYTES = 200           # bytes of text per row (hex of random bytes: compresses about 2:1)
REPEATS = 2               # pairs of phases (alone, with) per scenario, one after the other
IDLE_SECONDS = 60         # the idle window after a continuous S3 phase (no writes)
CRM_MIB = 200             # the generated CRM database (offsite-crm generate)
CORPUS_KIND = "text"      # the database not from our generator (bench/corpus.py)
CORPUS_MIB = 200
INTERVAL = "1s"           # continuous.interval, and Litestream's sync interval
WAL_SAMPLE_SECONDS = 0.010
CHECKPOINT_PAGES = 1000   # the writer's autocheckpoint threshold (SQLite's default)

QUICK = dict(SECONDS=4, REPEATS=1, IDLE_SECONDS=3, CRM_MIB=8, CORPUS_MIB=4)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("BENCH_BIN", ROOT / ".build" / "release"))
OFFSITE = str(BIN / "offsite")
CRM = str(BIN / "offsite-crm")
WORK = Path(os.environ.get("BENCH_WORK", ROOT / "bench" / "work")).resolve() / "agent"
BUCKET = "bench"
MIB = 1024 * 1024
SECTION = "## The agent beside an application"
MARK_BEGIN = "<!-- agent-bench: written by bench/agent.py -->"
MARK_END = "<!-- end agent-bench -->"
STARTUP_LTX = "/0000000000000001-"  # Litestream objects whose transaction range starts at 1


class BenchFailure(Exception):
    pass


def log(message):
    print(message, file=sys.stderr, flush=True)


def die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def loadavg():
    return tuple(float(x) for x in Path("/proc/loadavg").read_text().split()[:3])


# ---------------------------------------------------------------------------------------------
# The writer (a separate process)


def writer_main(db, rate, seconds, rows, row_bytes, out):
    connection = sqlite3.connect(db, isolation_level=None, timeout=5.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=5000")
    records, errors = [], 0
    period = 1.0 / rate
    started = time.monotonic()
    count = int(round(rate * seconds))
    for index in range(count):
        due = started + index * period
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        payloads = [secrets.token_hex(row_bytes // 2) for _ in range(rows)]
        began_wall, began = time.time(), time.perf_counter()
        try:
            connection.execute("BEGIN")
            for payload in payloads:
                connection.execute("INSERT INTO bench_writes(t, payload) VALUES (?, ?)", (began_wall, payload))
            connection.execute("UPDATE bench_counter SET n = n + 1 WHERE id = 1")
            connection.execute("COMMIT")
        except sqlite3.OperationalError:
            errors += 1
            try:
                connection.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass
            continue
        ended = time.perf_counter()
        records.append((began_wall * 1000, began_wall * 1000 + (ended - began) * 1000, (ended - began) * 1000))
    connection.close()
    with open(out, "w") as handle:
        json.dump({"commits": records, "errors": errors}, handle)


def prepare_writer_tables(db):
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE IF NOT EXISTS bench_writes(id INTEGER PRIMARY KEY, t REAL, payload TEXT)")
    connection.execute("CREATE TABLE IF NOT EXISTS bench_counter(id INTEGER PRIMARY KEY, n INTEGER)")
    connection.execute("INSERT OR IGNORE INTO bench_counter VALUES (1, 0)")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    return page_size


# ---------------------------------------------------------------------------------------------
# The counting proxy in front of the S3 server (a separate process)


def proxy_main(port, upstream_port, log_path):
    out = open(log_path, "a", buffering=1)
    lock = threading.Lock()
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def upstream(self, fresh=False):
            if fresh or getattr(local, "conn", None) is None:
                local.conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
            return local.conn

        def forward(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
                body = b"".join(parts)
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = [(k, v) for k, v in self.headers.items()
                       if k.lower() not in ("transfer-encoding", "expect", "connection", "content-length")]
            for attempt in (0, 1):
                conn = self.upstream(fresh=attempt == 1)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for key, value in headers:
                        conn.putheader(key, value)
                    if body or self.command in ("PUT", "POST"):
                        conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders(body if body else None)
                    response = conn.getresponse()
                    data = response.read()
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    local.conn = None
                    if attempt == 1:
                        self.send_error(502)
                        return
            self.send_response_only(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            if self.command == "HEAD":
                self.send_header("Content-Length", response.getheader("Content-Length", "0"))
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            with lock:
                out.write(f"{time.time():.3f} {self.command} {self.path.split('?')[0]} "
                          f"{'?' + self.path.split('?', 1)[1] if '?' in self.path else '-'} "
                          f"{response.status} {len(body)} {len(data)}\n")

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


def read_proxy_log(path, start, end, prefix, exclude=None):
    """Requests under PREFIX between START and END (epoch seconds), by kind, with bytes sent and
    received; requests whose path contains EXCLUDE are left out."""
    counts, sent, received = {}, 0, 0
    if not Path(path).exists():
        return counts, 0, 0
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) < 7:
            continue
        moment, method, target, query = float(parts[0]), parts[1], parts[2], parts[3]
        if not (start <= moment < end):
            continue
        if f"/{BUCKET}/{prefix}" not in target and f"prefix={prefix}" not in query.replace("%2F", "/"):
            continue
        if exclude and exclude in target:
            continue
        kind = method
        if method == "GET" and target.rstrip("/") == f"/{BUCKET}":
            kind = "LIST"
        elif method == "POST":
            kind = "POST (multipart)"
        counts[kind] = counts.get(kind, 0) + 1
        sent += int(parts[5])
        received += int(parts[6])
    return counts, sent, received


# ---------------------------------------------------------------------------------------------
# Servers and processes


class S3:
    def __init__(self):
        self.data = WORK / "s3data"
        self.port, self.proxy_port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.proxy_port}"
        self.access_key = "bench" + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(20)
        self.proxy_log = WORK / "logs" / "s3-requests.log"

    def start(self):
        shutil.rmtree(self.data, ignore_errors=True)
        (self.data / BUCKET).mkdir(parents=True)
        env = dict(os.environ, RCLONE_AUTH_KEY=f'"{self.access_key},{self.secret_key}"')
        self.log = open(WORK / "logs" / "rclone.log", "ab")
        self.server = subprocess.Popen(
            ["rclone", "serve", "s3", "--addr", f"127.0.0.1:{self.port}", "--log-level", "ERROR", str(self.data)],
            env=env, stdout=self.log, stderr=self.log, preexec_fn=die_with_parent)
        self.proxy = subprocess.Popen(
            [sys.executable, __file__, "--proxy", str(self.proxy_port), str(self.port), str(self.proxy_log)],
            preexec_fn=die_with_parent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise BenchFailure("the S3 server (or its proxy) did not answer within 30 s")

    def stop(self):
        for process in (self.proxy, self.server):
            if process.poll() is None:
                process.terminate()
                process.wait(10)

    def env(self):
        env = dict(os.environ)
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key,
                   AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL_S3=self.endpoint,
                   AWS_EC2_METADATA_DISABLED="true",
                   LITESTREAM_ACCESS_KEY_ID=self.access_key, LITESTREAM_SECRET_ACCESS_KEY=self.secret_key)
        # Litestream 0.5's AWS SDK fails before it connects when AWS_CA_BUNDLE is set (plain HTTP here).
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE"):
            env.pop(name, None)
        return env


def proc_cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (all threads)


def proc_peak_rss(pid):
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


class WalSampler(threading.Thread):
    def __init__(self, wal):
        super().__init__(daemon=True)
        self.wal, self.peak, self.samples, self.stopped = wal, 0, 0, threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                size = os.stat(self.wal).st_size
            except FileNotFoundError:
                size = 0
            self.peak = max(self.peak, size)
            self.samples += 1
            time.sleep(WAL_SAMPLE_SECONDS)

    def stop(self):
        self.stopped.set()
        self.join()
        return self.peak


def wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise BenchFailure(f"timed out after {seconds} s waiting for {what}")


def log_events(path, event):
    """The logfmt lines of EVENT in the agent's log, as dicts."""
    events = []
    for line in Path(path).read_text(errors="replace").splitlines():
        if f" {event} " not in f" {line} " and f"event={event}" not in line and f"msg={event}" not in line:
            continue
        events.append(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line)))
    return [{k: v.strip('"') for k, v in e.items()} for e in events]


# ---------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.results = []
        self.loads = []

    def prepare(self):
        for sub in ("logs", "runs"):
            (WORK / sub).mkdir(parents=True, exist_ok=True)
        for old in (WORK / "logs").glob("*"):
            old.unlink()
        self.identity = WORK / "identity.txt"
        if self.identity.exists():
            self.identity.unlink()
        self.recipient = subprocess.run([OFFSITE, "keygen", "--output", str(self.identity)], check=True,
                                        capture_output=True, text=True).stdout.strip()
        self.s3 = S3()
        self.s3.start()
        self.databases = {"crm": self.crm_database(), CORPUS_KIND: self.corpus_database()}

    def crm_database(self):
        db = WORK / f"crm-{CRM_MIB}.db"
        if not db.exists():
            log(f"generating the {CRM_MIB} MiB CRM database")
            subprocess.run([CRM, "generate", "--out", str(db), "--size-mib", str(CRM_MIB), "--seed", "1"], check=True)
        return db

    def corpus_database(self):
        db = WORK / f"{CORPUS_KIND}-{CORPUS_MIB}.db"
        if not db.exists():
            log(f"making the {CORPUS_MIB} MiB '{CORPUS_KIND}' corpus database")
            subprocess.run([sys.executable, str(ROOT / "bench" / "corpus.py"), "--kind", CORPUS_KIND, "--out", str(db),
                            "--size-mib", str(CORPUS_MIB), "--seed", "1", "--scratch", str(WORK / "scratch")], check=True)
        return db

    def fresh_copy(self, source, name):
        folder = WORK / "runs" / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        db = folder / source.name
        shutil.copyfile(source, db)
        page_size = prepare_writer_tables(db)
        with open(db, "rb") as handle:  # from the page cache, as a running application's database is
            while handle.read(8 * MIB):
                pass
        return folder, db, page_size

    def run_writer(self, db, folder, label, seconds=None):
        out = folder / f"writer-{label}.json"
        seconds = seconds or SECONDS
        process = subprocess.Popen([sys.executable, __file__, "--writer", str(db), str(RATE), str(seconds),
                                    str(ROWS_PER_TX), str(ROW_BYTES), str(out)], preexec_fn=die_with_parent)
        return process, out

    def writer_phase(self, db, folder, label):
        """Runs the writer for one phase while sampling the -wal size; returns the commits and the peak."""
        sampler = WalSampler(str(db) + "-wal")
        sampler.start()
        start = time.time()
        process, out = self.run_writer(db, folder, label)
        if process.wait() != 0:
            raise BenchFailure(f"the writer failed ({label})")
        end = time.time()
        peak = sampler.stop()
        data = json.loads(out.read_text())
        return data, peak, start, end

    def agent_config(self, folder, db, target, continuous, level):
        config = {
            "databases": [{"path": str(db)}],
            "local": {"dir": str(folder / "local")},
            "encryption": {"recipients": [self.recipient]},
            "schedule": {"every": "10000h", "onChange": False, "startup": False, "shutdown": False},
            "targets": [target],
            "log": {"level": level},
        }
        if continuous:
            config["continuous"] = {"interval": INTERVAL}
        path = folder / "offsite.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def summary(self, commits):
        latencies = [c[2] for c in commits]
        return {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "max": max(latencies),
                "commits": len(latencies)}

    # -- scenarios ----------------------------------------------------------------------------

    def scenario(self, name, dbname, kind, target_kind=None, repeats=None):
        for repeat in range(1, (repeats or REPEATS) + 1):
            self.loads.append((f"{name} {repeat} start", loadavg()))
            entry = {"scenario": name, "db": dbname, "kind": kind, "target": target_kind, "repeat": repeat}
            log(f"== {name} repeat {repeat}: writer alone")
            folder, db, page_size = self.fresh_copy(self.databases[dbname], f"{name}-{repeat}-alone")
            data, peak, _, _ = self.writer_phase(db, folder, "alone")
            entry["alone"] = dict(self.summary(data["commits"]), errors=data["errors"], wal_peak=peak)
            entry["page_size"] = page_size
            shutil.rmtree(folder, ignore_errors=True)
            log(f"   alone: {fmt_latency(entry['alone'])} wal peak {peak / MIB:.2f} MiB")
            log(f"== {name} repeat {repeat}: writer + {kind}")
            if kind == "litestream":
                entry["with"] = self.with_litestream(name, repeat, dbname)
            else:
                entry["with"] = self.with_agent(name, repeat, dbname, kind, target_kind, idle=(repeat == 1))
            if kind == "idle-agent":
                # strace slows every system call of the agent (and takes CPU of its own): the latency
                # figures come from the phase without it, the counts of calls from a third phase.
                log(f"== {name} repeat {repeat}: writer + idle-agent under strace (counts calls)")
                entry["traced"] = self.with_agent(name, repeat, dbname, kind, target_kind, idle=False, trace=True)
                log(f"   traced: {fmt_latency(entry['traced'])} syncs/s {entry['traced']['syncs_per_second']:.2f}")
            w = entry["with"]
            log(f"   with: {fmt_latency(w)} wal peak {w['wal_peak'] / MIB:.2f} MiB cpu {w['cpu']:.2f} s "
                f"rss {w['rss'] / MIB:.1f} MiB" + (f" rpo p99 {w['rpo']['p99']:.0f} ms" if w.get("rpo") else "")
                )
            self.results.append(entry)
            self.loads.append((f"{name} {repeat} end", loadavg()))
            (WORK / "results.json").write_text(json.dumps({"results": self.results, "loads": self.loads}, indent=1))

    def target(self, folder, target_kind, prefix):
        if target_kind == "folder":
            remote = folder / "remote"
            remote.mkdir()
            return {"name": "remote", "url": f"file://{remote}"}
        return {"name": "remote", "url": f"s3://{BUCKET}/{prefix}"}

    def with_agent(self, name, repeat, dbname, kind, target_kind, idle, trace=False):
        continuous = kind == "continuous"
        folder, db, page_size = self.fresh_copy(self.databases[dbname], f"{name}-{repeat}-with")
        prefix = f"{name}-{repeat}"
        target = self.target(folder, target_kind or "folder", prefix)
        config = self.agent_config(folder, db, target, continuous, "debug" if continuous else "info")
        agent_log = WORK / "logs" / f"agent-{name}-{repeat}.log"
        with open(agent_log, "wb") as handle:
            agent = subprocess.Popen([OFFSITE, "run", "--config", str(config)], env=self.s3.env(),
                                     stdout=handle, stderr=handle, preexec_fn=die_with_parent)
        strace = None
        try:
            wait_for(lambda: agent.poll() is not None or "agent.start" in agent_log.read_text(), 60, "agent.start")
            if continuous:
                wait_for(lambda: agent.poll() is not None or log_events(agent_log, "backup.done"), 600,
                         "the agent's first full backup (the chain's base)")
            if agent.poll() is not None:
                raise BenchFailure(f"the agent exited with {agent.returncode}; see {agent_log}")
            time.sleep(2)
            trace_file = folder / "strace.txt"
            if trace:
                strace = subprocess.Popen(["strace", "-f", "-tt", "-y", "-p", str(agent.pid), "-o", str(trace_file),
                                           "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,sync_file_range"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                time.sleep(1)
            cpu_before = proc_cpu_seconds(agent.pid)
            data, peak, start, end = self.writer_phase(db, folder, "with")
            cpu = proc_cpu_seconds(agent.pid) - cpu_before
            result = dict(self.summary(data["commits"]), errors=data["errors"], wal_peak=peak, cpu=cpu,
                          seconds=end - start)
            if strace:
                time.sleep(0.5)
                strace.send_signal(signal.SIGINT)
                strace.wait(10)
                result.update(self.syncs(trace_file, start, end))
            if continuous:
                last = max(c[0] for c in data["commits"])
                try:
                    wait_for(lambda: any(float(e["lastCommit"]) >= last for e in log_events(agent_log, "changes.shipped")),
                             120, "the last commit shipped")
                except BenchFailure as failure:
                    newest = max((float(e["lastCommit"]) for e in log_events(agent_log, "changes.shipped")), default=0)
                    counter = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
                        "SELECT n FROM bench_counter").fetchone()[0]
                    raise BenchFailure(f"{failure}: the writer's last commit began at {last:.0f} ms, the newest "
                                       f"shipped commit is stamped {newest:.0f} ms; {len(data['commits'])} commits "
                                       f"logged, counter {counter}; see {agent_log}") from None
                shipped = log_events(agent_log, "changes.shipped")
                result["rpo"] = rpo(data["commits"], shipped)
                result["objects"] = len([e for e in shipped if start * 1000 <= float(e["shippedAt"]) <= end * 1000 + 60000])
                if target_kind == "s3":
                    time.sleep(1)
                    counts, sent, received = read_proxy_log(self.s3.proxy_log, start, time.time(), prefix)
                    result["s3"] = {"counts": counts, "sent": sent, "received": received, "seconds": time.time() - start}
                    if idle:
                        time.sleep(3)
                        idle_start = time.time()
                        cpu_idle = proc_cpu_seconds(agent.pid)
                        time.sleep(IDLE_SECONDS)
                        counts, sent, _ = read_proxy_log(self.s3.proxy_log, idle_start, time.time(), prefix)
                        result["idle"] = {"seconds": IDLE_SECONDS, "counts": counts, "sent": sent,
                                          "cpu": proc_cpu_seconds(agent.pid) - cpu_idle}
            result["rss"] = proc_peak_rss(agent.pid)
            gaps = log_events(agent_log, "changes.gap")
            result["gaps"] = len(gaps)
            return result
        finally:
            if strace and strace.poll() is None:
                strace.kill()
            if agent.poll() is None:
                agent.terminate()
                try:
                    agent.wait(60)
                except subprocess.TimeoutExpired:
                    agent.kill()
            self.s3_cleanup(prefix)
            shutil.rmtree(folder, ignore_errors=True)

    def s3_cleanup(self, prefix):
        shutil.rmtree(self.s3.data / BUCKET / prefix, ignore_errors=True)

    def syncs(self, trace_file, start, end):
        calls = {}
        files = {}
        day = datetime.datetime.fromtimestamp(start).date()
        for line in trace_file.read_text(errors="replace").splitlines():
            match = re.match(r"\d+\s+(\d\d):(\d\d):(\d\d\.\d+) (\w+)\((.*)", line)
            if not match or "resumed" in line:
                continue
            moment = datetime.datetime.combine(day, datetime.time(int(match[1]), int(match[2]))).timestamp() + float(match[3])
            if not (start <= moment <= end):
                continue
            calls[match[4]] = calls.get(match[4], 0) + 1
            path = re.search(r"<([^>]*)>|\"([^\"]*)\"", match[5])
            if path:
                key = Path(path.group(1) or path.group(2)).name
                key = re.sub(r"\d{6,}|[0-9a-f]{8,}", "N", key)
                files[f"{match[4]} {key}"] = files.get(f"{match[4]} {key}", 0) + 1
        seconds = end - start
        state_writes = sum(v for k, v in files.items() if k.startswith("rename") and "state" in k)
        return {"syncs": calls, "syncs_per_second": sum(calls.values()) / seconds, "sync_files": files,
                "state_writes_per_second": state_writes / seconds}

    def with_litestream(self, name, repeat, dbname):
        folder, db, page_size = self.fresh_copy(self.databases[dbname], f"{name}-{repeat}-with")
        prefix = f"{name}-{repeat}"
        config = folder / "litestream.yml"
        config.write_text(
            "dbs:\n"
            f"  - path: {db}\n"
            "    replica:\n"
            "      type: s3\n"
            f"      bucket: {BUCKET}\n"
            f"      path: {prefix}\n"
            f"      endpoint: {self.s3.endpoint}\n"
            "      region: us-east-1\n"
            "      force-path-style: true\n"
            f"      sync-interval: {INTERVAL}\n")
        ls_log = WORK / "logs" / f"litestream-{name}-{repeat}.log"
        with open(ls_log, "wb") as handle:
            process = subprocess.Popen(["litestream", "replicate", "-config", str(config)], env=self.s3.env(),
                                       stdout=handle, stderr=handle, preexec_fn=die_with_parent)
        try:
            launched = time.time()
            # Ready once its first snapshot is on the server (the bytes sent under its prefix reach a
            # third of the database: LZ4 makes it about half) and it has been quiet for 5 s.
            db_bytes = db.stat().st_size
            def settled():
                if process.poll() is not None:
                    return True
                _, sent, _ = read_proxy_log(self.s3.proxy_log, launched, time.time(), prefix)
                return sent >= db_bytes / 3 and time.time() - last_request(self.s3.proxy_log, prefix) > 5
            wait_for(settled, 600, "Litestream's first snapshot")
            if process.poll() is not None:
                raise BenchFailure(f"litestream exited with {process.returncode}; see {ls_log}")
            cpu_before = proc_cpu_seconds(process.pid)
            data, peak, start, end = self.writer_phase(db, folder, "with")
            cpu = proc_cpu_seconds(process.pid) - cpu_before
            time.sleep(3)
            # Litestream's first compactions copy the objects that hold its initial snapshot (the
            # transaction range starting at 1) into each level once: left out, counted apart.
            stop = time.time()
            counts, sent, received = read_proxy_log(self.s3.proxy_log, start, stop, prefix, exclude=STARTUP_LTX)
            _, all_sent, all_received = read_proxy_log(self.s3.proxy_log, start, stop, prefix)
            result = dict(self.summary(data["commits"]), errors=data["errors"], wal_peak=peak, cpu=cpu,
                          seconds=end - start, rss=proc_peak_rss(process.pid),
                          s3={"counts": counts, "sent": sent, "received": received, "seconds": stop - start,
                              "startup_sent": all_sent - sent, "startup_received": all_received - received})
            return result
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            self.s3_cleanup(prefix)
            shutil.rmtree(folder, ignore_errors=True)


def last_request(path, prefix):
    latest = 0.0
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and prefix in line:
            latest = max(latest, float(parts[0]))
    return latest


def rpo(commits, shipped):
    """Per commit: from its end (writer's clock) to the moment the object holding it was durable.

    A commit belongs to the first object whose last commit, as the agent saw it, is not before the
    commit began (commits are 1/RATE s apart, so this is exact unless the agent saw a commit later
    than the next one began)."""
    objects = sorted((float(e["lastCommit"]), float(e["shippedAt"])) for e in shipped)
    latencies, missing = [], 0
    index = 0
    for began, ended, _ in sorted(commits):
        while index < len(objects) and objects[index][0] < began:
            index += 1
        if index == len(objects):
            missing += 1
            continue
        latencies.append(objects[index][1] - ended)
    return {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "max": max(latencies) if latencies else 0,
            "min": min(latencies) if latencies else 0, "missing": missing}


def fmt_latency(d):
    return f"p50 {d['p50']:.2f} ms p99 {d['p99']:.2f} ms max {d['max']:.1f} ms ({d['commits']} commits)"


# ---------------------------------------------------------------------------------------------
# Report


def tool_version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def report(bench, started, finished):
    rows = bench.results
    lines = [MARK_BEGIN, SECTION, ""]
    lines.append(f"Generated by `python3 bench/agent.py{' --quick' if bench.args.quick else ''}` on "
                 f"{started:%Y-%m-%d %H:%M} UTC, in {(finished - started).seconds // 60} min. "
                 f"What `offsite run` costs an application that commits {RATE} transactions a second: every figure "
                 f"comes from a pair of {SECONDS} s phases on fresh copies of the same database, the writer alone "
                 f"and then the writer with the agent beside it; {REPEATS} pair(s) per scenario, one after the other, "
                 "and every pair is shown.")
    if getattr(bench, "merged", None):
        lines[-1] += (f" Scenarios {', '.join(bench.merged)} come from this run; the others from the run before it "
                      "(same script, same machine, same day).")
    lines.append("")
    loads = [f"{label} {a:.2f}/{b:.2f}/{c:.2f}" for label, (a, b, c) in bench.loads]
    busiest = max((l[1][0] for l in bench.loads), default=0)
    lines += [
        f"- Machine: {os.cpu_count()} cores shared with other work (other sessions built and tested on them while "
        f"this ran), the databases on the same virtio disk as the rest of the benchmark. The 1-minute load average "
        f"reached {busiest:.1f}; compare figures within a pair, not across pairs.",
        "- Load average (1/5/15 min) at the start and end of each pair: " + "; ".join(loads) + ".",
        f"- Versions: {tool_version([OFFSITE, 'version'])}; litestream {tool_version(['litestream', 'version'])}; "
        f"{tool_version(['rclone', 'version'])}; {tool_version(['strace', '-V'])}.",
        f"- Workload: a separate process commits every {1000 // RATE} ms one transaction: {ROWS_PER_TX} row(s) of "
        f"{ROW_BYTES} bytes of hex text inserted into a table of its own and one counter row updated; "
        f"`synchronous=NORMAL`, the default autocheckpoint ({CHECKPOINT_PAGES} pages), busy timeout 5 s. Latency is "
        "BEGIN to the end of COMMIT, as the application sees it.",
        f"- Databases: `crm` is `offsite-crm generate --size-mib {CRM_MIB} --seed 1`; `{CORPUS_KIND}` is "
        f"`bench/corpus.py --kind {CORPUS_KIND} --size-mib {CORPUS_MIB} --seed 1` (not from our generator).",
        "- The agent: `offsite run` with one database, one target, `schedule.every` 10000h, `onChange`, `startup` "
        "and `shutdown` off, an age recipient, compression level 6 (the default). `idle agent` has no continuous "
        f"protection: no backup is due during the run. `continuous` adds `\"continuous\": {{\"interval\": \"{INTERVAL}\"}}` "
        "and `log.level` debug; each phase starts after the chain's base (the first full backup) is on the target.",
        "- S3: `rclone serve s3` on 127.0.0.1 (objects on the same disk), behind a counting proxy (part of this "
        "script) that forwards each request unchanged and records its method and body sizes; both offsite and "
        "Litestream talk to the proxy. Folder: a `file://` target on the same disk.",
        f"- RPO: per commit, from the end of its COMMIT (writer's clock) to the `shippedAt` time of the agent's "
        "`changes.shipped` line (logged once the target acknowledged the object: after the PUT, or the folder's "
        "rename). A commit is matched to the first object whose last commit time is not before the commit began.",
        f"- WAL: the size of the `-wal` file sampled every {WAL_SAMPLE_SECONDS * 1000:.0f} ms during the phase; "
        f"threshold = {CHECKPOINT_PAGES} frames.",
        "- Agent CPU is user+sys of the agent process during the writer phase (from /proc); peak RSS is its VmHWM "
        "(the whole life of the process, its startup and first full backup included).",
        "- fsync/fdatasync/rename: `strace -f -tt -y -p AGENT -e trace=fsync,fdatasync,rename,renameat,renameat2,"
        "sync_file_range` attached to the agent for a third phase of each idle-agent pair (writer + agent again, on a fresh copy): "
        "ptrace stops the agent at every system call and strace takes CPU of its own, so latency, CPU and RSS come "
        "from the phase without it.",
        "",
    ]

    def ms(v):
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"

    idle = [r for r in rows if r["kind"] == "idle-agent"]
    if idle:
        lines += ["### No backup due (issue 14)", "",
                  "| db | pair | alone p50 / p99 / max ms | with agent p50 / p99 / max ms | p99 ratio (≤ 1.1) "
                  "| agent CPU s | agent peak RSS MiB | under strace: fsync+fdatasync+rename /s | of which state renames /s (≤ 1) "
                  "| under strace: with-agent p99 ms, agent CPU s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in idle:
            a, w, t = r["alone"], r["with"], r["traced"]
            lines.append(f"| {r['db']} | {r['repeat']} | {ms(a['p50'])} / {ms(a['p99'])} / {ms(a['max'])} | "
                         f"{ms(w['p50'])} / {ms(w['p99'])} / {ms(w['max'])} | {w['p99'] / a['p99']:.2f} | "
                         f"{w['cpu']:.2f} | {w['rss'] / MIB:.1f} | {t['syncs_per_second']:.2f} | "
                         f"{t['state_writes_per_second']:.2f} | {ms(t['p99'])}, {t['cpu']:.2f} |")
        calls = {}
        for r in idle:
            for k, v in r["traced"].get("sync_files", {}).items():
                calls[k] = calls.get(k, 0) + v
        if calls:
            lines += ["", "Calls seen (all pairs, file names with numbers replaced by N): "
                      + ", ".join(f"`{k}` {v}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])) + "."]
        lines.append("")

    cont = [r for r in rows if r["kind"] == "continuous"]
    if cont:
        lines += ["### Continuous protection, interval 1 s (issue 15)", "",
                  "| db | target | pair | RPO p50 / p99 / max ms (p99 ≤ 2000) | alone p99 ms | with p99 ms | p99 ratio (≤ 1.3) "
                  "| alone / with max ms | WAL peak alone / with (frames; ≤ 2× threshold) | agent CPU s | agent peak RSS MiB (≤ 64) | objects | gaps |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in cont:
            a, w = r["alone"], r["with"]
            frame = r["page_size"] + 24
            fa, fw = (a["wal_peak"] - 32) / frame, (w["wal_peak"] - 32) / frame
            rp = w["rpo"]
            lines.append(f"| {r['db']} | {r['target']} | {r['repeat']} | {rp['p50']:.0f} / {rp['p99']:.0f} / {rp['max']:.0f}"
                         + (f" ({rp['missing']} not shipped)" if rp["missing"] else "") +
                         f" | {ms(a['p99'])} | {ms(w['p99'])} | {w['p99'] / a['p99']:.2f} | {ms(a['max'])} / {ms(w['max'])} | "
                         f"{max(fa, 0):.0f} / {max(fw, 0):.0f} ({max(fw, 0) / CHECKPOINT_PAGES:.2f}×) | {w['cpu']:.2f} | "
                         f"{w['rss'] / MIB:.1f} | {w['objects']} | {w['gaps']} |")
        lines.append("")

    s3rows = [r for r in rows if r["with"].get("s3")]
    if s3rows:
        lines += ["### Requests to S3: offsite against Litestream 0.5", "",
                  "Counted by the proxy from the start of the writer phase until a few seconds after it "
                  "(offsite: until the last commit was shipped), scaled to an hour of this workload. "
                  "Within a 60 s phase the later compactions do not appear (offsite compacts once the "
                  "changes reach a quarter of the database; Litestream compacts its levels every 30 s, 5 min and 1 h). "
                  "Litestream's first level-1 compaction (and the level-2 one at the next 5-minute mark) copies its "
                  "initial snapshot, which it also keeps as a level-0 object, once more: requests for objects whose "
                  "transaction range starts at 1 are left out of the figures and their MiB shown apart, as a one-off "
                  "of the start, not of the workload.",
                  "",
                  "| db | tool | pair | PUT /h | other requests /h | MiB uploaded /h | MiB downloaded /h | CPU s | peak RSS MiB "
                  "| left out: initial-snapshot objects up / down MiB (one-off) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in s3rows:
            s = r["with"]["s3"]
            scale = 3600 / r["with"]["seconds"]
            puts = s["counts"].get("PUT", 0)
            others = ", ".join(f"{k} {v * scale:.0f}" for k, v in sorted(s["counts"].items()) if k != "PUT") or "0"
            tool = "offsite (continuous, 1 s)" if r["kind"] == "continuous" else f"litestream replicate ({INTERVAL} sync)"
            lines.append(f"| {r['db']} | {tool} | {r['repeat']} | {puts * scale:.0f} | {others} | "
                         f"{s['sent'] * scale / MIB:.1f} | {s['received'] * scale / MIB:.1f} | {r['with']['cpu']:.2f} | "
                         f"{r['with']['rss'] / MIB:.1f} | "
                         + (f"{s['startup_sent'] / MIB:.1f} / {s['startup_received'] / MIB:.1f} |" if "startup_sent" in s else " |"))
        lines.append("")
        lite = [r for r in rows if r["kind"] == "litestream"]
        if lite:
            lines += ["Litestream beside the same writer:", "",
                      "| db | pair | alone p99 ms | with p99 ms | p99 ratio | alone / with max ms | WAL peak alone / with (frames) |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for r in lite:
                a, w = r["alone"], r["with"]
                frame = r["page_size"] + 24
                lines.append(f"| {r['db']} | {r['repeat']} | {ms(a['p99'])} | {ms(w['p99'])} | {w['p99'] / a['p99']:.2f} | "
                             f"{ms(a['max'])} / {ms(w['max'])} | {max((a['wal_peak'] - 32) / frame, 0):.0f} / "
                             f"{max((w['wal_peak'] - 32) / frame, 0):.0f} |")
            lines.append("")

    idles = [r for r in rows if r["with"].get("idle")]
    if idles:
        lines += ["### An idle database", "",
                  "After a continuous S3 phase, once everything was shipped, no writes for a while:", "",
                  "| db | seconds | requests (goal 0) | bytes sent | agent CPU s |", "| --- | --- | --- | --- | --- |"]
        for r in idles:
            i = r["with"]["idle"]
            lines.append(f"| {r['db']} | {i['seconds']} | {sum(i['counts'].values())} "
                         f"{json.dumps(i['counts']) if i['counts'] else ''} | {i['sent']} | {i['cpu']:.2f} |")
        lines.append("")
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_report(text, output):
    output = Path(output)
    old = output.read_text() if output.exists() else ""
    if MARK_BEGIN in old and MARK_END in old:
        head, rest = old.split(MARK_BEGIN, 1)
        new = head + text.rstrip("\n") + rest.split(MARK_END, 1)[1]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text
    output.write_text(new)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small databases and short phases (< 2 min)")
    parser.add_argument("--only", help="comma-separated scenarios: idle-agent, folder, s3, litestream, corpus")
    parser.add_argument("--output", help="Markdown file to write the section into (default docs/BENCHMARKS.md; "
                                         "bench/work/agent/BENCHMARKS.md with --quick)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the previous run's results (bench/work/agent/results.json) of the scenarios not run this time")
    parser.add_argument("--writer", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--proxy", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        db, rate, seconds, rows, row_bytes, out = args.writer
        writer_main(db, float(rate), float(seconds), int(rows), int(row_bytes), out)
        return
    if args.proxy:
        proxy_main(int(args.proxy[0]), int(args.proxy[1]), args.proxy[2])
        return
    if args.quick:
        globals().update(QUICK)
    for tool in ("strace", "rclone", "litestream", "sqlite3"):
        if not shutil.which(tool):
            raise SystemExit(f"error: {tool} is not on PATH")
    for binary in (OFFSITE, CRM):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"error: {binary} is missing\nhint: run `swift build -c release` first (or set BENCH_BIN)")
    WORK.mkdir(parents=True, exist_ok=True)
    only = set((args.only or "idle-agent,folder,s3,litestream,corpus").split(","))
    started = datetime.datetime.now(datetime.timezone.utc)
    bench = Bench(args)
    previous = json.loads((WORK / "results.json").read_text()) if args.merge and (WORK / "results.json").exists() else None
    bench.prepare()
    try:
        if "idle-agent" in only:
            bench.scenario("idle-crm", "crm", "idle-agent")
        if "folder" in only:
            bench.scenario("cont-folder-crm", "crm", "continuous", "folder")
        if "s3" in only:
            bench.scenario("cont-s3-crm", "crm", "continuous", "s3")
        if "litestream" in only:
            bench.scenario("litestream-crm", "crm", "litestream", "s3")
        if "corpus" in only:
            bench.scenario(f"idle-{CORPUS_KIND}", CORPUS_KIND, "idle-agent", repeats=1)
            bench.scenario(f"cont-s3-{CORPUS_KIND}", CORPUS_KIND, "continuous", "s3", repeats=1)
    finally:
        bench.s3.stop()
    finished = datetime.datetime.now(datetime.timezone.utc)
    if previous:
        ran = {r["scenario"] for r in bench.results}
        kept = [r for r in previous["results"] if r["scenario"] not in ran]
        bench.results = kept + bench.results
        bench.loads = [l for l in previous["loads"] if l[0].rsplit(" ", 2)[0] not in ran] + bench.loads
        bench.merged = sorted(ran)
        (WORK / "results.json").write_text(json.dumps({"results": bench.results, "loads": bench.loads}, indent=1))
    text = report(bench, started, finished)
    print(text)
    output = args.output or (WORK / "BENCHMARKS.md" if args.quick else ROOT / "docs" / "BENCHMARKS.md")
    write_report(text, output)
    log(f"wrote {output}")


if __name__ == "__main__":
    try:
        main()
    except BenchFailure as failure:
        log(f"error: {failure}")
        sys.exit(1)

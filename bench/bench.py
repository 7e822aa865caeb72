#!/usr/bin/env python3
"""The benchmark behind bench/run.sh (standard library only).

Measures, on generated CRM databases and against an S3 server (rclone serve s3) on 127.0.0.1:
offsite backup (levels 6 and 1) and restore, the hand-written shell pipeline, restic, Litestream,
and gzip/pigz alone; then the application writer's commit latency with and without offsite backups
running. Then the corpus: `offsite backup` at level 6 against `gzip -6` and `pigz -6` of the same
snapshot, on databases of other kinds (bench/corpus.py makes four; the fifth is a public one that
a Debian package ships). Prints the tables and writes a Markdown report (docs/BENCHMARKS.md by
default).

Every tool's output is checked: decompressed or restored, it must be a database that passes
`PRAGMA integrity_check` (first run of each tool; `quick_check` on later runs) or be byte-identical
to the source. A failed check or a failed command makes the script exit 1; the performance targets
are reported as met or not met and never change the exit status.
"""

import ctypes
import datetime
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def env_int(name, default):
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "8" if QUICK else "200 1024").replace(",", " ").split()]
RUNS = env_int("BENCH_RUNS", 1 if QUICK else 3)
WRITER_SECONDS = env_int("BENCH_WRITER_SECONDS", 5 if QUICK else 60)
WRITER_RUNS = env_int("BENCH_WRITER_RUNS", 1)
WRITER_RATE = 50
SLOW_COMMIT_MS = 2.0
WORK = Path(os.environ.get("BENCH_WORK", ROOT / "bench" / "work")).resolve()
OUTPUT = Path(os.environ.get("BENCH_OUTPUT") or (WORK / "BENCHMARKS.md" if QUICK else ROOT / "docs" / "BENCHMARKS.md"))
KEEP_WORK = os.environ.get("BENCH_KEEP_WORK", "") not in ("", "0")
BIN = Path(os.environ.get("BENCH_BIN", ROOT / ".build" / "release"))
OFFSITE = str(BIN / "offsite")
CRM = str(BIN / "offsite-crm")
BUCKET = "bench"
SEED = 1
CORPUS = os.environ.get("BENCH_CORPUS", "1") not in ("", "0")
CORPUS_MIB = env_int("BENCH_CORPUS_MIB", 4 if QUICK else 200)
CORPUS_RUNS = env_int("BENCH_CORPUS_RUNS", RUNS)
# The public database: PROJ's coordinate reference system database, from the Debian package proj-data.
PROJ_DB = Path("/usr/share/proj/proj.db")
# The corpus: (name, what it is). The first four are made by bench/corpus.py --kind NAME.
CORPUS_KINDS = [
    ("text", "text-heavy: a knowledge base, articles and comments of real prose (passages of the man pages of "
             "Debian's manpages, manpages-dev and git-man; one in six in German, French, Spanish, Russian, Japanese "
             "or Chinese from the manpages-* translations), WAL"),
    ("blobs", "BLOB-heavy: uploads kept in the database, by bytes half photos (JPEG drawn by ImageMagick), scanned "
              "pages (greyscale JPEG of a man page set in DejaVu Sans, in a PDF), groff-typeset PDFs, screenshots "
              "(PNG), .docx files and CSV/JSON/text files, WAL"),
    ("indexes", "index-heavy: web analytics, one narrow table of page views (timestamps, visitor UUIDs, paths, "
                "referrers) under eight secondary indexes filled in arrival order, WAL"),
    ("deletes", "after heavy deletes: a mailbox (prose bodies, headers, some attachments) after a retention purge "
                "and user deletes, then some new mail; secure_delete off (SQLite's default), so the free pages "
                "still hold the deleted messages; rollback journal"),
    ("proj", "public: PROJ's coordinate reference system database `proj.db` as Debian's package proj-data ships it "
             "(tables of CRS definitions, names, extents and their indexes; used as shipped, whatever its size)"),
]

# The hand-written pipeline, exactly as run (with `set -o pipefail`); its inputs come from the
# environment so that the command text below is what the report shows.
PIPELINE = ('sqlite3 "$DB" ".backup \'$SNAP\'" && {COMPRESS} -c "$SNAP" | age -r "$RECIPIENT" '
            '| aws s3 cp - "$URL" --endpoint-url "$ENDPOINT" --only-show-errors && rm -f "$SNAP"')
DECRYPT = 'age -d -i "$IDENTITY" "$OBJECT" | gunzip > "$OUT"'


class BenchFailure(Exception):
    """A command failed or an output did not verify: the benchmark exits 1."""


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Running and timing commands


class Timing:
    """Wall time (monotonic clock around the command), user+sys CPU and peak RSS (GNU time -v)."""

    def __init__(self, wall, cpu, rss_kib):
        self.wall, self.cpu, self.rss_kib = wall, cpu, rss_kib


def parse_gnu_time(text):
    def field(label):
        match = re.search(r"^\s*" + re.escape(label) + r": (.+)$", text, re.M)
        if not match:
            raise BenchFailure(f"/usr/bin/time -v output has no '{label}'")
        return match.group(1).strip()
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return cpu, int(field("Maximum resident set size (kbytes)"))


def run(cmd, *, env=None, stdin=None, stdout=None, label=None, check=True, timeout=None):
    """Runs a command untimed; returns its CompletedProcess (stdout captured unless redirected)."""
    proc = subprocess.run(cmd, env=env, stdin=stdin, stdout=stdout if stdout is not None else subprocess.PIPE,
                          stderr=subprocess.PIPE, text=stdout is None, timeout=timeout)
    if check and proc.returncode != 0:
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
        raise BenchFailure(f"{label or cmd[0]} failed ({proc.returncode}): {err.strip()[-800:]}")
    return proc


def timed(cmd, *, env, label, stdout=None):
    """Runs a command under /usr/bin/time -v; raises BenchFailure when it fails."""
    time_file = WORK / "time.txt"
    full = ["/usr/bin/time", "-v", "-o", str(time_file)] + cmd
    with open(WORK / "logs" / f"{label}.log", "ab") as log_file:
        log_file.write(f"\n== {datetime.datetime.now().isoformat()} {label}\n".encode())
        log_file.flush()
        started = time.monotonic()
        proc = subprocess.run(full, env=env, stdout=stdout if stdout is not None else log_file, stderr=log_file)
        wall = time.monotonic() - started
    if proc.returncode != 0:
        raise BenchFailure(f"{label} failed with status {proc.returncode}; see {WORK / 'logs' / (label + '.log')}")
    cpu, rss = parse_gnu_time(time_file.read_text())
    return Timing(wall, cpu, rss)


def sqlite_pragma(path, pragma):
    proc = run(["sqlite3", "-readonly", str(path), f"PRAGMA {pragma};"], label=f"sqlite3 {pragma}", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else f"error: {proc.stderr.strip()}"


def verify_database(path, what, full):
    """Fails unless PATH is a SQLite database passing integrity_check (full) or quick_check."""
    pragma = "integrity_check" if full else "quick_check"
    result = sqlite_pragma(path, pragma)
    if result != "ok":
        raise BenchFailure(f"{what}: {pragma} of the restored database says {result[:300]!r}")


def verify_identical(path, source, what):
    if run(["cmp", "-s", str(path), str(source)], check=False).returncode != 0:
        raise BenchFailure(f"{what}: the decompressed/restored file differs from the source database")


def remove(*paths):
    for path in paths:
        path = Path(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def tree_bytes(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# The S3 server


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent():
    """preexec_fn: the server gets SIGTERM if this script dies without cleaning up."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class S3Server:
    """`rclone serve s3` on 127.0.0.1 over a data folder in the work folder, with throwaway keys."""

    def __init__(self, data):
        self.data = data
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.access_key = "bench" + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(20)
        self.process = None

    def start(self):
        remove(self.data)
        (self.data / BUCKET).mkdir(parents=True)
        env = dict(os.environ, RCLONE_AUTH_KEY=f'"{self.access_key},{self.secret_key}"')
        self.log = open(WORK / "logs" / "rclone.log", "ab")
        self.process = subprocess.Popen(
            ["rclone", "serve", "s3", "--addr", f"127.0.0.1:{self.port}", "--log-level", "ERROR", str(self.data)],
            env=env, stdout=self.log, stderr=self.log, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchFailure(f"rclone serve s3 exited with {self.process.returncode}; see {WORK / 'logs' / 'rclone.log'}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # it answers (403 without a signature): it is up
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise BenchFailure("rclone serve s3 did not answer within 30 s")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def client_env(self):
        """The environment every S3 client gets: standard AWS variables, never command-line keys."""
        env = dict(os.environ)
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key,
                   AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL_S3=self.endpoint,
                   AWS_EC2_METADATA_DISABLED="true",
                   LITESTREAM_ACCESS_KEY_ID=self.access_key, LITESTREAM_SECRET_ACCESS_KEY=self.secret_key)
        # AWS_CA_BUNDLE (set on some machines) makes Litestream's AWS SDK fail before it connects
        # ("unable to add custom RootCAs"); the server is plain HTTP on loopback anyway.
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE"):
            env.pop(name, None)
        return env

    def prefix_path(self, prefix):
        return self.data / BUCKET / prefix

    def stored_bytes(self, prefix):
        return tree_bytes(self.prefix_path(prefix))

    def delete_prefix(self, prefix):
        remove(self.prefix_path(prefix))

    def empty_bucket(self):
        for child in (self.data / BUCKET).iterdir():
            remove(child)


def s3_data_folder():
    """Where the S3 server keeps its objects: in memory (/dev/shm) when there is room, because it
    stands for a remote server whose disk writes are not the host's; else in the work folder."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 8 * 1024 * MIB:
            return shm / f"offsite-bench-s3-{os.getpid()}", "in memory (tmpfs /dev/shm)"
    except OSError:
        pass
    return WORK / "s3data", "on the same disk"


# ---------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self):
        self.results = {}      # (size, tool) -> list of measurement dicts
        self.writer = {}       # size -> {"alone": [...], "with": [...]}
        self.commands = {}     # tool -> command text shown in the report
        self.notes = []
        self.loads = []        # (moment, 1/5/15-minute load averages): other work on the machine

    def record(self, size, tool, timing=None, stored=None, **extra):
        entry = dict(extra)
        if timing:
            entry.update(wall=timing.wall, cpu=timing.cpu, rss=timing.rss_kib * 1024)
        if stored is not None:
            entry["stored"] = stored
        self.results.setdefault((size, tool), []).append(entry)
        shown = f"{timing.wall:7.2f} s wall {timing.cpu:7.2f} s cpu {timing.rss_kib / 1024:7.1f} MiB rss" if timing else ""
        if stored is not None:
            shown += f" {stored / MIB:8.1f} MiB stored"
        log(f"  {tool:<28} {shown}")

    # -- setup --------------------------------------------------------------------------------

    def prepare(self):
        for sub in ("logs", "tmp", "out"):
            (WORK / sub).mkdir(parents=True, exist_ok=True)
        for old in (WORK / "logs").glob("*.log"):
            old.unlink()
        self.identity = WORK / "identity.txt"
        remove(self.identity)
        self.recipient = run([OFFSITE, "keygen", "--output", str(self.identity)], label="offsite keygen").stdout.strip()
        if not self.recipient.startswith("age1"):
            raise BenchFailure("offsite keygen printed no recipient")
        self.s3_folder, self.s3_where = s3_data_folder()
        self.server = S3Server(self.s3_folder)
        self.server.start()
        self.env = self.server.client_env()
        self.env["TMPDIR"] = str(WORK / "tmp")  # offsite's snapshot goes to the temporary folder: same disk
        self.env["RESTIC_PASSWORD"] = "bench-" + secrets.token_hex(8)
        self.env["RESTIC_CACHE_DIR"] = str(WORK / "restic-cache")

    def database(self, size):
        folder = WORK / f"db-{size}"
        db = folder / "crm.db"
        stamp = folder / "generated.json"
        wanted = {"size_mib": size, "seed": SEED}
        if db.exists() and stamp.exists() and json.loads(stamp.read_text()) == wanted \
                and not Path(str(db) + "-wal").exists():
            log(f"== {size} MiB: reusing {db}")
            return db
        remove(folder)
        folder.mkdir(parents=True)
        log(f"== {size} MiB: generating the CRM database")
        started = time.monotonic()
        run([CRM, "generate", "--out", str(db), "--size-mib", str(size), "--seed", str(SEED)], label="offsite-crm generate")
        log(f"   generated in {time.monotonic() - started:.1f} s")
        verify_database(db, "the generated database", full=True)
        stamp.write_text(json.dumps(wanted))
        return db

    def offsite_config(self, level, prefix, db):
        path = WORK / f"offsite-l{level}.json"
        config = {
            "databases": [{"path": str(db)}],
            "compression": {"level": level},
            "encryption": {"recipients": [self.recipient], "identityFile": str(self.identity)},
            "targets": [{"name": "bench", "url": f"s3://{BUCKET}/{prefix}"}],
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    def warm(self, path):
        """Reads the file once so every tool starts from the page cache alike."""
        with open(path, "rb") as handle:
            while handle.read(8 * MIB):
                pass

    # -- one tool, one run --------------------------------------------------------------------

    def offsite_backup(self, size, db, run_index, level, snapshot=None):
        """One `offsite backup`; its object, decrypted and decompressed with age and gunzip, must be a
        sound database and, when SNAPSHOT is given, byte for byte that snapshot of DB."""
        tool = f"offsite backup level {level}"
        prefix = f"offsite-l{level}-{size}-r{run_index}"
        self.server.delete_prefix(prefix)
        config = self.offsite_config(level, prefix, db)
        cmd = [OFFSITE, "backup", "--config", str(config), "--db", str(db), "--target", "bench"]
        self.commands[tool] = (f"offsite backup --config offsite-l{level}.json --db crm.db --target bench   "
                               f"# config: compression.level {level}, one age recipient, target s3://{BUCKET}/PREFIX; "
                               "endpoint and keys from AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION")
        self.warm(db)
        timing = timed(cmd, env=self.env, label=f"offsite-backup-l{level}")
        objects = [p for p in self.server.prefix_path(prefix).rglob("*.age") if p.is_file()]
        if len(objects) != 1:
            raise BenchFailure(f"{tool}: expected one object under {prefix}, found {len(objects)}")
        self.record(size, tool, timing, stored=self.server.stored_bytes(prefix))
        # Correctness: the object, decrypted and decompressed with standard tools, is the database.
        out = WORK / "out" / f"l{level}.db"
        remove(out)
        env = dict(self.env, IDENTITY=str(self.identity), OBJECT=str(objects[0]), OUT=str(out))
        run(["bash", "-c", "set -o pipefail; " + DECRYPT], env=env, label="age -d | gunzip")
        verify_database(out, tool, full=run_index == 1)
        if snapshot is not None:
            verify_identical(out, snapshot, f"{tool} of {db.name}")
        remove(out)
        return prefix, objects[0]

    def offsite_restore(self, size, db, run_index, prefix, obj, snapshot=None):
        """`offsite restore` of the level-6 object, checked; then (for the CRM database, SNAPSHOT None)
        the baseline `age -d | gunzip` of the same object. With SNAPSHOT the restored file must be
        byte for byte that snapshot."""
        tool = "offsite restore"
        config = self.offsite_config(6, prefix, db)
        out = WORK / "out" / "restored.db"
        remove(out, str(out) + "-wal", str(out) + "-shm")
        cmd = [OFFSITE, "restore", "--config", str(config), "--target", "bench", "--db", Path(db).stem,
               "--identity", str(self.identity), "--output", str(out)]
        self.commands[tool] = ("offsite restore --config offsite-l6.json --target bench --db crm "
                               "--identity identity.txt --output restored.db   # includes its PRAGMA quick_check")
        timing = timed(cmd, env=self.env, label="offsite-restore")
        self.record(size, tool, timing)
        verify_database(out, tool, full=run_index == 1)
        if snapshot is not None:
            verify_identical(out, snapshot, f"{tool} of {Path(db).name}")
            remove(out)
            return
        remove(out)
        # The baseline: the same object, already downloaded, through age -d | gunzip.
        tool = "age -d | gunzip (same object)"
        self.commands[tool] = DECRYPT
        env = dict(self.env, IDENTITY=str(self.identity), OBJECT=str(obj), OUT=str(out))
        timing = timed(["bash", "-c", "set -o pipefail; " + DECRYPT], env=env, label="decrypt-baseline")
        self.record(size, tool, timing)
        remove(out)

    def pipeline(self, size, db, run_index, compressor):
        tool = f"shell pipeline ({compressor})"
        prefix = f"pipeline-{compressor.split()[0]}-{size}-r{run_index}"
        self.server.delete_prefix(prefix)
        text = PIPELINE.replace("{COMPRESS}", compressor)
        self.commands[tool] = text
        snap = WORK / "tmp" / "snap.db"
        remove(snap)
        env = dict(self.env, DB=str(db), SNAP=str(snap), RECIPIENT=self.recipient,
                   URL=f"s3://{BUCKET}/{prefix}/crm.sqlite3.gz.age", ENDPOINT=self.server.endpoint)
        self.warm(db)
        timing = timed(["bash", "-c", "set -o pipefail; " + text], env=env, label="pipeline-" + compressor.split()[0])
        self.record(size, tool, timing, stored=self.server.stored_bytes(prefix))
        out = WORK / "out" / "pipeline.db"
        obj = self.server.prefix_path(prefix) / "crm.sqlite3.gz.age"
        run(["bash", "-c", "set -o pipefail; " + DECRYPT],
            env=dict(self.env, IDENTITY=str(self.identity), OBJECT=str(obj), OUT=str(out)), label="pipeline decrypt")
        verify_database(out, tool, full=run_index == 1)
        remove(out)
        self.server.delete_prefix(prefix)

    def restic_repo(self, size, run_index):
        return f"s3:{self.server.endpoint}/{BUCKET}/restic-{size}-r{run_index}", f"restic-{size}-r{run_index}"

    def restic_backup(self, size, db, run_index):
        tool = "restic backup"
        repo, prefix = self.restic_repo(size, run_index)
        self.server.delete_prefix(prefix)
        remove(WORK / "restic-cache")
        env = dict(self.env, RESTIC_REPOSITORY=repo)
        # A new repository for every run: a second backup of the same file into one repository
        # stores nothing new and (with a parent snapshot) does not even read the file.
        run(["restic", "init", "--repository-version", "2"], env=env, label="restic init")
        self.commands["restic init (untimed, once per run)"] = "restic init --repository-version 2   # RESTIC_REPOSITORY=s3:http://127.0.0.1:PORT/bench/restic-…"
        cmd = ["restic", "backup", "--compression", "auto", "--quiet", str(db)]
        self.commands[tool] = "restic backup --compression auto --quiet crm.db"
        self.warm(db)
        timing = timed(cmd, env=env, label="restic-backup")
        self.record(size, tool, timing, stored=self.server.stored_bytes(prefix))

    def restic_restore(self, size, db, run_index):
        tool = "restic restore"
        repo, prefix = self.restic_repo(size, run_index)
        target = WORK / "out" / "restic"
        remove(target)
        env = dict(self.env, RESTIC_REPOSITORY=repo)
        self.commands[tool] = "restic restore latest --target DIR"
        timing = timed(["restic", "restore", "latest", "--target", str(target)], env=env, label="restic-restore")
        self.record(size, tool, timing)
        restored = target / str(db).lstrip("/")
        verify_identical(restored, db, tool)
        if run_index == 1:
            verify_database(restored, tool, full=True)
        remove(target)
        self.server.delete_prefix(prefix)

    def litestream_config(self, size, run_index, db_copy):
        prefix = f"litestream-{size}-r{run_index}"
        config = WORK / "litestream.yml"
        config.write_text(
            "dbs:\n"
            f"  - path: {db_copy}\n"
            "    replica:\n"
            "      type: s3\n"
            f"      bucket: {BUCKET}\n"
            f"      path: {prefix}\n"
            f"      endpoint: {self.server.endpoint}\n"
            "      region: us-east-1\n"
            "      force-path-style: true\n")
        return config, prefix

    def litestream_copy(self, size):
        return WORK / f"db-{size}" / "litestream" / "crm.db"

    def litestream_backup(self, size, db, run_index):
        tool = "litestream replicate -once"
        copy = self.litestream_copy(size)
        remove(copy.parent)
        copy.parent.mkdir(parents=True)
        # Litestream writes into the database it replicates (its own tables, checkpoints) and keeps
        # state beside it: it gets a fresh copy each run (untimed), and a fresh replica path.
        shutil.copyfile(db, copy)
        config, prefix = self.litestream_config(size, run_index, copy)
        self.server.delete_prefix(prefix)
        cmd = ["litestream", "replicate", "-config", str(config), "-once"]
        self.commands[tool] = ("litestream replicate -config litestream.yml -once   # s3 replica: endpoint http://127.0.0.1:PORT, "
                               "force-path-style, keys from LITESTREAM_ACCESS_KEY_ID/_SECRET_ACCESS_KEY; fresh copy and replica path each run")
        self.warm(copy)
        timing = timed(cmd, env=self.env, label="litestream-replicate")
        self.record(size, tool, timing, stored=self.server.stored_bytes(prefix))

    def litestream_restore(self, size, db, run_index):
        tool = "litestream restore"
        copy = self.litestream_copy(size)
        config, prefix = self.litestream_config(size, run_index, copy)
        out = WORK / "out" / "litestream.db"
        remove(out)
        self.commands[tool] = "litestream restore -config litestream.yml -o restored.db crm.db"
        timing = timed(["litestream", "restore", "-config", str(config), "-o", str(out), str(copy)],
                       env=self.env, label="litestream-restore")
        self.record(size, tool, timing)
        verify_database(out, tool, full=run_index == 1)
        remove(out, copy.parent)
        self.server.delete_prefix(prefix)

    def compressor_alone(self, size, db, run_index, cmd_words):
        tool = " ".join(cmd_words) + " (file to file)"
        out = WORK / "out" / "alone.gz"
        remove(out)
        self.commands[tool] = " ".join(cmd_words) + " -c crm.db > crm.db.gz"
        self.warm(db)
        with open(out, "wb") as handle:
            timing = timed(cmd_words + ["-c", str(db)], env=self.env, label=cmd_words[0] + cmd_words[1], stdout=handle)
        self.record(size, tool, timing, stored=out.stat().st_size)
        restored = WORK / "out" / "alone.db"
        with open(restored, "wb") as handle:
            run(["gunzip", "-c", str(out)], stdout=handle, label="gunzip")
        verify_identical(restored, db, tool)
        remove(out, restored)

    def snapshot_alone(self, size, db, run_index):
        tool = "sqlite3 .backup (copy alone)"
        snap = WORK / "tmp" / "snap-alone.db"
        remove(snap)
        self.commands[tool] = "sqlite3 crm.db \".backup 'snap.db'\""
        self.warm(db)
        timing = timed(["sqlite3", str(db), f".backup '{snap}'"], env=self.env, label="sqlite3-backup")
        self.record(size, tool, timing)
        tool = "PRAGMA quick_check (snapshot)"
        self.commands[tool] = "sqlite3 snap.db 'PRAGMA quick_check;'"
        timing = timed(["sqlite3", str(snap), "PRAGMA quick_check;"], env=self.env, label="quick-check")
        self.record(size, tool, timing)
        remove(snap)

    # -- the writer -----------------------------------------------------------------------------

    def writer_run(self, size, db, with_backups, run_index):
        writer_db = WORK / f"db-{size}" / "writer" / "crm.db"
        remove(writer_db.parent)
        writer_db.parent.mkdir(parents=True)
        shutil.copyfile(db, writer_db)
        # The copy's dirty pages must reach the disk before the writer starts, or their writeback
        # stalls the writer's first fsyncs and is counted against it.
        os.sync()
        time.sleep(2)
        self.warm(writer_db)
        trace = WORK / "out" / "writer-trace.txt"
        remove(trace)
        writer_cmd = [CRM, "write", "--db", str(writer_db), "--rate", str(WRITER_RATE),
                      "--duration", str(WRITER_SECONDS), "--json", "--trace", str(trace)]
        self.commands["writer"] = f"offsite-crm write --db crm.db --rate {WRITER_RATE} --duration {WRITER_SECONDS} --json"
        prefix = f"writer-{size}-r{run_index}"
        self.server.delete_prefix(prefix)
        config = self.offsite_config(6, prefix, writer_db)
        backups = []
        writer = subprocess.Popen(writer_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        if with_backups:
            self.commands["writer + backups"] = ("while the writer runs: offsite backup --config offsite-l6.json "
                                                 "--db crm.db --target bench, back to back")
            while writer.poll() is None:
                timing = timed([OFFSITE, "backup", "--config", str(config), "--db", str(writer_db), "--target", "bench"],
                               env=self.env, label="writer-backups")
                backups.append(timing.wall)
        out, err = writer.communicate()
        try:
            report = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchFailure(f"offsite-crm write printed no report (status {writer.returncode}): {err.strip()[-400:]}")
        if with_backups:
            objects = sorted(p for p in self.server.prefix_path(prefix).rglob("*.age") if p.is_file())
            if len(objects) != len(backups) or not objects:
                raise BenchFailure(f"writer test: {len(backups)} backups ran but {len(objects)} objects are stored")
            restored = WORK / "out" / "writer.db"
            remove(restored)
            run(["bash", "-c", "set -o pipefail; " + DECRYPT],
                env=dict(self.env, IDENTITY=str(self.identity), OBJECT=str(objects[-1]), OUT=str(restored)),
                label="writer backup decrypt")
            verify_database(restored, "backup taken under the writer", full=False)
            check = run([CRM, "check", "--db", str(restored)], label="offsite-crm check", check=False)
            if check.returncode != 0:
                raise BenchFailure(f"backup taken under the writer is not consistent: {check.stdout.strip()[:300]}")
            remove(restored)
        self.server.delete_prefix(prefix)
        remove(writer_db.parent)
        # The slow commits, counted: the writer's own checkpoints (two fsyncs each) are about 1% of
        # its commits, so p99 swings on how many more a run has.
        slow = sum(1 for line in trace.read_text().splitlines() if float(line.split()[1]) > SLOW_COMMIT_MS)
        remove(trace)
        entry = {"slow": slow, "p50": report["latencyP50Milliseconds"], "p99": report["latencyP99Milliseconds"],
                 "max": report["latencyMaxMilliseconds"], "stall": report["longestStallMilliseconds"],
                 "busy": report["busyErrors"], "other": report["otherErrors"], "committed": report["committed"],
                 "rate": report["achievedRate"], "backups": backups}
        self.writer.setdefault(size, {}).setdefault("with" if with_backups else "alone", []).append(entry)
        log(f"  writer {'with backups' if with_backups else 'alone':<13} p99 {entry['p99']:.1f} ms, max {entry['max']:.1f} ms, "
            f"{slow} commits over {SLOW_COMMIT_MS:g} ms, "
            f"stall {entry['stall']:.1f} ms, busy {entry['busy']}, other errors {entry['other']}"
            + (f", {len(backups)} backups" if with_backups else ""))

    # -- the whole run ----------------------------------------------------------------------------

    def measure_checksum(self, size, db):
        """The CRC-32 a backup takes of its checked copy (issue 13), from the page cache: offsite's
        own code (offsite-crm checksum calls PlaintextChecksum.of), 3 runs; CPU from GNU time."""
        with open(db, "rb") as warm:  # into the page cache
            while warm.read(1 << 24):
                pass
        figures = []
        for _ in range(3):
            done = run(["/usr/bin/time", "-f", "cpu %U %S", CRM, "checksum", "--file", str(db)], label="offsite-crm checksum")
            seconds = float(re.search(r"seconds ([0-9.]+)", done.stdout).group(1))
            user, system = map(float, re.search(r"cpu ([0-9.]+) ([0-9.]+)", done.stderr).groups())
            figures.append((seconds, user + system))
        self.checksums = getattr(self, "checksums", {})
        self.checksums[size] = figures

    def measure(self, size):
        db = self.database(size)
        self.loads.append((f"{size} MiB start", os.getloadavg()))
        source = db.stat().st_size
        self.sources = getattr(self, "sources", {})
        self.sources[size] = source
        verify_database(db, "the source database", full=False)
        self.measure_checksum(size, db)
        backups = [
            ("gzip -6", lambda r: self.compressor_alone(size, db, r, ["gzip", "-6"])),
            ("gzip -1", lambda r: self.compressor_alone(size, db, r, ["gzip", "-1"])),
            ("pigz -6", lambda r: self.compressor_alone(size, db, r, ["pigz", "-6"])),
            ("snapshot", lambda r: self.snapshot_alone(size, db, r)),
            ("offsite 6", lambda r: self.restore_inputs.__setitem__(r, self.offsite_backup(size, db, r, 6))),
            ("offsite 1", lambda r: self.server.delete_prefix(self.offsite_backup(size, db, r, 1)[0])),
            ("pipeline gzip", lambda r: self.pipeline(size, db, r, "gzip -6")),
            ("pipeline pigz", lambda r: self.pipeline(size, db, r, "pigz -6")),
            ("restic", lambda r: self.restic_backup(size, db, r)),
            ("litestream", lambda r: self.litestream_backup(size, db, r)),
        ]
        restores = [
            ("offsite restore", lambda r: self.offsite_restore(size, db, r, *self.restore_inputs[r])),
            ("restic restore", lambda r: self.restic_restore(size, db, r)),
            ("litestream restore", lambda r: self.litestream_restore(size, db, r)),
        ]
        self.restore_inputs = {}
        for r in range(1, RUNS + 1):
            log(f"== {size} MiB: run {r} of {RUNS}")
            # Alternate: each run starts at a different tool, so no tool always goes first.
            shift = (r - 1) % len(backups)
            for _, step in backups[shift:] + backups[:shift]:
                step(r)
            shift = (r - 1) % len(restores)
            for _, step in restores[shift:] + restores[:shift]:
                step(r)
            self.server.delete_prefix(self.restore_inputs[r][0])
            self.server.empty_bucket()
        for w in range(1, WRITER_RUNS + 1):
            log(f"== {size} MiB: the writer, {WRITER_SECONDS} s at {WRITER_RATE} tx/s ({w} of {WRITER_RUNS})")
            self.writer_run(size, db, False, w)
            self.writer_run(size, db, True, w)
        self.loads.append((f"{size} MiB end", os.getloadavg()))

    # -- the corpus ---------------------------------------------------------------------------------

    def corpus_database(self, kind):
        """The corpus database KIND in the work folder, made (or copied) unless the one there was made
        alike; returns its path and what was made."""
        folder = WORK / "corpus"
        folder.mkdir(parents=True, exist_ok=True)
        db, stamp = folder / f"{kind}.db", folder / f"{kind}.json"
        if kind == "proj":
            if not PROJ_DB.exists():
                raise BenchFailure(f"{PROJ_DB} is missing: install the Debian package proj-data")
            wanted = {"source": str(PROJ_DB), "version": package_version("proj-data")}
        else:
            generator = hashlib.sha256((ROOT / "bench" / "corpus.py").read_bytes()).hexdigest()[:16]
            wanted = {"size_mib": CORPUS_MIB, "seed": SEED, "generator": generator}
        try:
            kept = json.loads(stamp.read_text()) if db.exists() else None
        except (OSError, ValueError):
            kept = None
        if kept and kept.get("wanted") == wanted and not Path(str(db) + "-wal").exists():
            log(f"== corpus: reusing {db}")
            return db, kept["summary"]
        remove(db, str(db) + "-wal", str(db) + "-shm", str(db) + "-journal", stamp)
        started = time.monotonic()
        if kind == "proj":
            shutil.copyfile(PROJ_DB, db)
            summary = f"proj-data {wanted['version']}"
        else:
            log(f"== corpus: making the {kind} database ({CORPUS_MIB} MiB)")
            proc = run([sys.executable, str(ROOT / "bench" / "corpus.py"), "--kind", kind, "--out", str(db),
                        "--size-mib", str(CORPUS_MIB), "--seed", str(SEED), "--scratch", str(WORK / "tmp" / f"corpus-{kind}")],
                       label=f"bench/corpus.py --kind {kind}")
            summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
            log(f"   made in {time.monotonic() - started:.1f} s: {summary}")
        verify_database(db, f"the corpus database {kind}", full=True)
        stamp.write_text(json.dumps({"wanted": wanted, "summary": summary}))
        return db, summary

    def measure_corpus(self):
        """Level 6 against gzip -6 and pigz -6 of the same snapshot on every corpus database: runs
        alternate, each run goes through every database, the three tools back to back per database
        (starting at a different one each time). The first run also restores each object with
        `offsite restore`. Every output must be byte for byte the snapshot."""
        self.corpus = []
        for kind, _ in CORPUS_KINDS:
            db, summary = self.corpus_database(kind)
            snapshot = WORK / "corpus" / f"{kind}.snapshot.db"
            remove(snapshot)
            run(["sqlite3", str(db), f".backup '{snapshot}'"], label=f"sqlite3 .backup of {db.name}")
            verify_database(db, f"the corpus database {kind}", full=False)
            facts = run(["sqlite3", "-readonly", str(snapshot),
                         "SELECT (SELECT page_count FROM pragma_page_count), (SELECT freelist_count FROM pragma_freelist_count), "
                         "(SELECT count(*) FROM sqlite_master WHERE type = 'table'), "
                         "(SELECT count(*) FROM sqlite_master WHERE type = 'index');"], label="sqlite3 facts").stdout
            pages, free, tables, indexes = (int(v) for v in facts.strip().split("|"))
            self.corpus.append({"kind": kind, "db": db, "snapshot": snapshot, "bytes": snapshot.stat().st_size,
                                "free": free / pages, "tables": tables, "indexes": indexes, "summary": summary})
        self.loads.append(("corpus start", os.getloadavg()))
        for r in range(1, CORPUS_RUNS + 1):
            log(f"== corpus: run {r} of {CORPUS_RUNS}")
            for index, entry in enumerate(self.corpus):
                key, db, snapshot = "corpus:" + entry["kind"], entry["db"], entry["snapshot"]
                log(f"   {entry['kind']} ({entry['bytes'] / MIB:.1f} MiB)")
                made = {}
                steps = [
                    lambda: self.compressor_alone(key, snapshot, r, ["gzip", "-6"]),
                    lambda: self.compressor_alone(key, snapshot, r, ["pigz", "-6"]),
                    lambda: made.update(backup=self.offsite_backup(key, db, r, 6, snapshot=snapshot)),
                ]
                shift = (r - 1 + index) % len(steps)
                for step in steps[shift:] + steps[:shift]:
                    step()
                prefix, obj = made["backup"]
                if r == 1:
                    self.offsite_restore(key, db, r, prefix, obj, snapshot=snapshot)
                self.server.delete_prefix(prefix)
            self.server.empty_bucket()
            self.loads.append((f"corpus run {r} end", os.getloadavg()))
        for entry in self.corpus:
            remove(entry["snapshot"])

    def main(self):
        WORK.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.started_at = datetime.datetime.now(datetime.timezone.utc)
        try:
            self.prepare()
            for size in SIZES:
                self.measure(size)
            if CORPUS:
                self.measure_corpus()
        finally:
            if getattr(self, "server", None):
                self.server.stop()
                if str(self.s3_folder).startswith("/dev/shm/"):
                    remove(self.s3_folder)  # memory, not disk: never left behind
        self.elapsed = time.monotonic() - started
        report = Report(self).markdown()
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        # bench/agent.py and bench/torture.py have sections of their own in the same file, between
        # their markers: keep them.
        previous = OUTPUT.read_text() if OUTPUT.exists() else ""
        for name in ("torture", "agent-bench"):
            begin = next((line for line in previous.splitlines() if line.startswith(f"<!-- {name}:")), None)
            end = f"<!-- end {name} -->"
            if begin and end in previous:
                report = report.rstrip("\n") + "\n\n" + begin + previous.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
        OUTPUT.write_text(report)
        print(Report(self).tables_text())
        log(f"== wrote {OUTPUT} ({self.elapsed:.0f} s); every output verified")
        if not KEEP_WORK:
            for size in SIZES:
                remove(WORK / f"db-{size}")
            remove(WORK / "corpus")
        remove(self.s3_folder, WORK / "out", WORK / "tmp", WORK / "restic-cache", WORK / "identity.txt")


# ---------------------------------------------------------------------------------------------
# The report


def machine_facts():
    facts = {"cores (nproc)": str(os.cpu_count())}
    try:
        facts["cores (nproc)"] = run(["nproc"]).stdout.strip()
    except (OSError, BenchFailure):
        pass
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        facts["CPU"] = model.group(1).strip() if model else "unknown"
    except OSError:
        facts["CPU"] = "unknown"
    try:
        total = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        facts["memory"] = f"{int(total.group(1)) / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    facts["kernel"] = platform.release()
    try:
        os_release = Path("/etc/os-release").read_text()
        name = re.search(r'^PRETTY_NAME="?([^"\n]+)', os_release, re.M)
        if name:
            facts["OS"] = name.group(1)
    except OSError:
        pass
    facts["disk"] = disk_description(WORK)
    return facts


def disk_description(path):
    try:
        proc = run(["df", "--output=source,fstype", str(path)], check=False)
        source, fstype = proc.stdout.strip().splitlines()[-1].split()[:2]
        device = Path(source).name
        base = re.sub(r"p?\d+$", "", device) if not device.startswith("vd") else re.sub(r"\d+$", "", device)
        rotational = Path(f"/sys/block/{base}/queue/rotational")
        flag = rotational.read_text().strip() if rotational.exists() else "?"
        if base.startswith("vd"):
            kind = f"virtio block device (reports rotational={flag}; the host's storage behind it is unknown)"
        else:
            kind = {"1": "rotational disk", "0": "non-rotational (SSD)"}.get(flag, "unknown kind")
        model_file = Path(f"/sys/block/{base}/device/model")
        model = model_file.read_text().strip() if model_file.exists() else ""
        return f"{source} ({fstype}), {kind}{', ' + model if model else ''}; work folder and databases on it"
    except (OSError, ValueError, IndexError, BenchFailure):
        return "unknown"


def package_version(package):
    """The installed version of a Debian package, or "not installed"."""
    proc = run(["dpkg-query", "-W", "-f", "${Version}", package], check=False)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "not installed"


def tool_versions():
    def first_line(cmd):
        try:
            proc = run(cmd, check=False)
            text = (proc.stdout or "").strip() or (proc.stderr or "").strip()
            return text.splitlines()[0] if text else "unknown"
        except OSError:
            return "not installed"
    versions = {
        "offsite": " ".join(run([OFFSITE, "version"], check=False).stdout.split()),
        "restic": first_line(["restic", "version"]),
        "litestream": first_line(["litestream", "version"]),
        "rclone (S3 server)": first_line(["rclone", "version"]),
        "aws CLI": first_line(["aws", "--version"]),
        "age": first_line(["age", "--version"]),
        "gzip": first_line(["gzip", "--version"]),
        "pigz": first_line(["pigz", "--version"]),
        "sqlite3 CLI": first_line(["sqlite3", "--version"]).split(" 20")[0],
        "python3": platform.python_version(),
    }
    if CORPUS:
        versions["ImageMagick (corpus uploads)"] = first_line(["/usr/bin/convert", "-version"]).replace("Version: ", "")
        versions["groff (corpus PDFs)"] = first_line(["groff", "--version"])
        for package in ("proj-data", "manpages", "manpages-dev", "git-man"):
            versions[f"{package} (corpus)"] = package_version(package)
    return versions


def spread(values, scale=1.0, digits=2):
    values = [v / scale for v in values]
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


ORDER = [
    "offsite backup level 6", "offsite backup level 1", "shell pipeline (gzip -6)", "shell pipeline (pigz -6)",
    "restic backup", "litestream replicate -once", "gzip -6 (file to file)", "gzip -1 (file to file)",
    "pigz -6 (file to file)", "sqlite3 .backup (copy alone)", "PRAGMA quick_check (snapshot)",
    "offsite restore", "age -d | gunzip (same object)", "restic restore", "litestream restore",
]


class Report:
    def __init__(self, bench):
        self.bench = bench

    def median(self, size, tool, key):
        entries = self.bench.results.get((size, tool), [])
        values = [e[key] for e in entries if key in e]
        return statistics.median(values) if values else None

    def table_rows(self, size):
        rows = []
        source = self.bench.sources[size]
        for tool in ORDER:
            entries = self.bench.results.get((size, tool))
            if not entries:
                continue
            stored = [e["stored"] for e in entries if "stored" in e]
            rows.append([
                tool,
                spread([e["wall"] for e in entries]),
                spread([e["cpu"] for e in entries]),
                spread([e["rss"] for e in entries], MIB, 1),
                spread(stored, MIB, 1) if stored else "",
                f"{source / statistics.median(stored):.2f}×" if stored else "",
            ])
        return rows

    HEADER = ["tool", "wall s", "CPU s (user+sys)", "peak RSS MiB", "stored MiB", "smaller by"]

    def writer_rows(self, size):
        rows = []
        for key, label in (("alone", "writer alone"), ("with", "writer + offsite backups (level 6, back to back)")):
            entries = self.bench.writer.get(size, {}).get(key, [])
            if not entries:
                continue
            backups = [len(e["backups"]) for e in entries]
            walls = [w for e in entries for w in e["backups"]]
            rows.append([
                label,
                spread([e["p50"] for e in entries], digits=1),
                spread([e["p99"] for e in entries], digits=1),
                spread([e["max"] for e in entries], digits=1),
                str(sum(e["slow"] for e in entries)),
                spread([e["stall"] for e in entries], digits=1),
                str(sum(e["busy"] for e in entries)),
                str(sum(e["committed"] for e in entries)),
                (f"{sum(backups)} ({spread(walls)} s each)" if walls else "") if key == "with" else "",
            ])
        return rows

    WRITER_HEADER = ["", "p50 ms", "p99 ms", "max ms", f"commits over {SLOW_COMMIT_MS:g} ms", "longest stall ms",
                     "busy errors", "commits", "backups"]

    def ratios(self, size):
        m = lambda tool, key: self.median(size, tool, key)
        out = []

        def ratio(label, num, den, limit, note=""):
            if num is None or den is None or den == 0:
                out.append([label, "n/a", limit[0], "not measured"])
                return
            value = num / den
            met = value <= limit[1] if limit[2] == "le" else value < limit[1]
            out.append([label, f"{value:.2f}", limit[0], ("met" if met else "**not met**") + note])

        ratio("level 6 wall / pigz -6 wall", m("offsite backup level 6", "wall"), m("pigz -6 (file to file)", "wall"), ("≤ 1.3", 1.3, "le"))
        ratio("level 6 CPU / gzip -6 CPU", m("offsite backup level 6", "cpu"), m("gzip -6 (file to file)", "cpu"), ("≤ 1.25", 1.25, "le"))
        ratio("level 6 object / gzip -6 output", m("offsite backup level 6", "stored"), m("gzip -6 (file to file)", "stored"), ("≤ 1.01", 1.01, "le"))
        ratio("level 6 object / restic stored", m("offsite backup level 6", "stored"), m("restic backup", "stored"), ("< 1", 1.0, "lt"))
        ratio("level 1 wall / restic backup wall", m("offsite backup level 1", "wall"), m("restic backup", "wall"), ("< 1", 1.0, "lt"))
        ratio("level 1 wall / Litestream wall", m("offsite backup level 1", "wall"), m("litestream replicate -once", "wall"), ("< 1", 1.0, "lt"))
        ratio("restore wall / age -d | gunzip wall", m("offsite restore", "wall"), m("age -d | gunzip (same object)", "wall"), ("≤ 1.3", 1.3, "le"))
        ratio("restore wall / restic restore wall", m("offsite restore", "wall"), m("restic restore", "wall"), ("< 1", 1.0, "lt"))
        rss = [e["rss"] for t in ("offsite backup level 6", "offsite backup level 1", "offsite restore")
               for e in self.bench.results.get((size, t), [])]
        if rss:
            peak = max(rss) / MIB
            out.append(["offsite peak RSS (backup and restore, max of runs)", f"{peak:.1f} MiB", "≤ 64 MiB",
                        "met" if peak <= 64 else "**not met**"])
        writer = self.bench.writer.get(size, {})
        if writer.get("alone") and writer.get("with"):
            alone_p99 = statistics.median(e["p99"] for e in writer["alone"])
            with_p99 = statistics.median(e["p99"] for e in writer["with"])
            ratio("writer p99 with backups / alone", with_p99, alone_p99, ("≤ 1.5", 1.5, "le"))
            alone_stall = max(e["stall"] for e in writer["alone"])
            with_stall = max(e["stall"] for e in writer["with"])
            out.append(["writer longest stall with backups vs alone", f"{with_stall:.1f} ms vs {alone_stall:.1f} ms",
                        "≤ alone", "met" if with_stall <= alone_stall else "**not met**"])
            busy = sum(e["busy"] for e in writer["with"])
            out.append(["writer busy errors with backups", str(busy), "0", "met" if busy == 0 else "**not met**"])
        return out

    RATIO_HEADER = ["ratio (medians of this run)", "value", "target", ""]

    # -- the corpus --------------------------------------------------------------------------------

    LEVEL6, GZIP6, PIGZ6 = "offsite backup level 6", "gzip -6 (file to file)", "pigz -6 (file to file)"

    def corpus_figures(self, key):
        """Object size over gzip -6 output, and per run (the three tools back to back): level 6 CPU
        over gzip -6 CPU and level 6 wall over pigz -6 wall."""
        get = lambda tool: self.bench.results.get((key, tool), [])
        level6, gzip6, pigz6 = get(self.LEVEL6), get(self.GZIP6), get(self.PIGZ6)
        if not (level6 and gzip6 and pigz6):
            return None
        stored = statistics.median(e["stored"] for e in level6)
        gzipped = statistics.median(e["stored"] for e in gzip6)
        return {"stored": stored, "gzip": gzipped, "size": stored / gzipped,
                "cpu": [o["cpu"] / g["cpu"] for o, g in zip(level6, gzip6)],
                "wall": [o["wall"] / p["wall"] for o, p in zip(level6, pigz6)]}

    def corpus_rows(self):
        rows = []
        entries = [(e["kind"], "corpus:" + e["kind"], e) for e in getattr(self.bench, "corpus", [])]
        entries += [(f"CRM {size} MiB (offsite-crm, above)", size, None) for size in SIZES]
        for name, key, entry in entries:
            figures = self.corpus_figures(key)
            if not figures:
                continue
            if entry:
                source, free = entry["bytes"], f"{100 * entry['free']:.0f}%"
                schema = f"{entry['tables']} / {entry['indexes']}"
            else:
                source, free, schema = self.bench.sources[key], "", ""
            rows.append([name, f"{source / MIB:.1f}", free, schema, f"{figures['gzip'] / MIB:.2f}",
                         f"{figures['stored'] / MIB:.2f}", f"{figures['size']:.4f}", spread(figures["cpu"]),
                         spread(figures["wall"]), "yes" if figures["size"] <= 1.01 else "**no**"])
        return rows

    CORPUS_HEADER = ["database", "on disk MiB", "free pages", "tables / indexes", "gzip -6 MiB", "level 6 object MiB",
                     "object / gzip -6", "CPU / gzip -6", "wall / pigz -6", "object ≤ 1.01× gzip -6"]

    def corpus_detail_rows(self):
        rows = []
        for entry in getattr(self.bench, "corpus", []):
            key = "corpus:" + entry["kind"]
            for tool in (self.LEVEL6, self.GZIP6, self.PIGZ6, "offsite restore"):
                found = self.bench.results.get((key, tool))
                if found:
                    rows.append([entry["kind"], tool, spread([e["wall"] for e in found]), spread([e["cpu"] for e in found]),
                                 spread([e["rss"] for e in found], MIB, 1),
                                 spread([e["stored"] for e in found if "stored" in e], MIB, 2) if "stored" in found[0] else ""])
        return rows

    CORPUS_DETAIL_HEADER = ["database", "tool", "wall s", "CPU s (user+sys)", "peak RSS MiB", "stored MiB"]

    def corpus_verdict(self):
        """One sentence: whether level 6 held within 1.01x gzip -6 everywhere, naming where not."""
        failed = [(row[0], row[6]) for row in self.corpus_rows() if row[-1] != "yes"]
        if not failed:
            return "Level 6 stays within 1.01× the size of `gzip -6` on every database here."
        return ("**Level 6 is more than 1.01× the size of `gzip -6` on " + ", ".join(f"{name} ({ratio}×)" for name, ratio in failed)
                + ".**")

    @staticmethod
    def markdown_table(header, rows):
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)

    @staticmethod
    def text_table(header, rows):
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
        fmt = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
        return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])

    def tables_text(self):
        parts = []
        for size in SIZES:
            source = self.bench.sources[size] / MIB
            parts.append(f"\n{size} MiB CRM database ({source:.1f} MiB on disk), {RUNS} run(s): median (min–max)\n")
            parts.append(self.text_table(self.HEADER, self.table_rows(size)))
            if self.writer_rows(size):
                parts.append("\n" + self.text_table(self.WRITER_HEADER, self.writer_rows(size)))
            parts.append("\n" + self.text_table(self.RATIO_HEADER, [[c.replace("**", "") for c in r] for r in self.ratios(size)]))
        if getattr(self.bench, "corpus", None):
            parts.append(f"\nCorpus, {CORPUS_RUNS} run(s): level 6 against gzip -6 and pigz -6 of the same snapshot; "
                         "ratios per run, median (min–max)\n")
            parts.append(self.text_table(self.CORPUS_HEADER, [[c.replace("**", "") for c in r] for r in self.corpus_rows()]))
            parts.append(self.corpus_verdict().replace("**", "").replace("`", ""))
        return "\n".join(parts)

    def corpus_markdown(self):
        b = self.bench
        lines = [
            "", f"## Corpus: level 6 on other kinds of database", "",
            "Level 6 uses `deflateTune` settings chosen on the CRM database (see `Sources/OffsiteCore/Codec/Gzip.swift`); "
            "this checks them on databases that do not come from that generator. `bench/corpus.py` makes the first four "
            f"(about {CORPUS_MIB} MiB each, seed {SEED}); the last is a public database as a Debian package ships it.", "",
        ]
        lines += [f"- **{e['kind']}**: {dict(CORPUS_KINDS)[e['kind']]}. Made: {e['summary']}." for e in b.corpus]
        lines += [
            "",
            "How it is measured: for each database a snapshot is taken once with `sqlite3 DB \".backup SNAP\"` (untimed); "
            "`gzip -6` and `pigz -6` compress that snapshot file to file, and `offsite backup` (level 6, to the same S3 "
            "server as above) snapshots the database itself. The three run back to back, from the page cache, in a "
            "rotating order; every run goes through every database. Each offsite object is decrypted with `age -d` and "
            "decompressed with `gunzip`, and must be byte for byte the snapshot (and pass `PRAGMA integrity_check` in the "
            "first run); the gzip and pigz outputs must gunzip to the snapshot; in the first run each object is also "
            "restored with `offsite restore`, which must give the snapshot byte for byte. Object / gzip -6 compares the "
            "whole age object (header and tags included) with gzip's output. CPU / gzip -6 and wall / pigz -6 are "
            "taken per run (the tools ran seconds apart) and given as median (min–max) over the runs. "
            "The CRM rows repeat the figures of the sections above in the same form.",
            "",
            f"Median (min–max) over {CORPUS_RUNS} run(s):",
            "",
            self.markdown_table(self.CORPUS_HEADER, self.corpus_rows()),
            "",
            self.corpus_verdict(),
            "",
            "Each tool on each database:",
            "",
            self.markdown_table(self.CORPUS_DETAIL_HEADER, self.corpus_detail_rows()),
        ]
        return lines

    def markdown(self):
        b = self.bench
        took = f"{b.elapsed / 60:.0f} min" if b.elapsed >= 120 else f"{b.elapsed:.0f} s"
        quick = " (quick mode: correctness only, the figures mean nothing)" if QUICK else ""
        lines = [
            "# Benchmarks",
            "",
            f"Generated by `bash bench/run.sh`{quick} on {b.started_at.strftime('%Y-%m-%d %H:%M UTC')}, "
            f"in {took}. Do not edit by hand: run it again. "
            f"Sizes {', '.join(f'{s} MiB' for s in SIZES)}; {RUNS} run(s) of every tool, alternating; "
            f"writer test {WRITER_SECONDS} s at {WRITER_RATE} tx/s, {WRITER_RUNS} run(s)"
            + (f"; corpus of {len(b.corpus)} databases ({CORPUS_MIB} MiB each where made), {CORPUS_RUNS} run(s)."
               if getattr(b, "corpus", None) else "."),
            "",
            "## Machine",
            "",
        ]
        lines += [f"- {k}: {v}" for k, v in machine_facts().items()]
        if b.loads:
            lines.append("- load average (1/5/15 min; anything above 0 besides the benchmark is other work sharing "
                         "the cores): " + "; ".join(f"{m} {l[0]:.2f}/{l[1]:.2f}/{l[2]:.2f}" for m, l in b.loads))
        lines += ["", "## Versions", ""]
        lines += [f"- {k}: {v}" for k, v in tool_versions().items()]
        lines += [
            "",
            "## How it is measured",
            "",
            "- Every tool reads the same generated CRM database (WAL mode, idle while measured), from the page "
            "cache (each tool's input is read once right before it runs); outputs go to the same disk.",
            f"- S3 is `rclone serve s3` on 127.0.0.1 over a folder {self.bench.s3_where}: it stands for a remote "
            "server, whose own disk writes are not the host's (its CPU, on the same cores, is not counted for any "
            "tool); \"stored\" is the bytes under the tool's prefix in that folder.",
            "- Wall: monotonic clock around the command. CPU: user+sys and peak RSS from GNU `/usr/bin/time -v`. "
            "For the shell pipelines, `/usr/bin/time -v bash -c …`: CPU is the sum over all its processes, "
            "peak RSS the largest single process (the AWS CLI), not the sum.",
            "- Runs alternate: run N goes through every tool once, each run starting at a different tool; "
            "restores come after that run's backups.",
            "- offsite is built as the container ships it (`swift build -c release --static-swift-stdlib`).",
            "- offsite: one `offsite backup` process per run (snapshot with the backup API into $TMPDIR on the "
            "same disk, read and compressed while it is copied, quick_check, gzip, age, multipart upload), a fresh "
            "prefix each run. The configuration has no local rotation, so the snapshot is a scratch copy that is "
            "never flushed to disk (with a local rotation it is flushed in 8 MiB steps while it is copied). "
            "`offsite restore` downloads the level-6 object of the same run, inflates its gzip members on every "
            "core, and includes its quick_check (run while the restored file is fsynced). "
            "The baseline `age -d | gunzip` reads the same object already on disk (no download).",
            "- restic: a new repository (`restic init --repository-version 2`, untimed) for every run, since a "
            "second backup of the same file would store nothing new. Compression `auto` (zstd), encrypted. "
            "It reads the file as is: fine here because the database is idle, not a consistent snapshot under writes.",
            "- Litestream: `replicate -once` (present in this version) on a fresh copy of the database (untimed) "
            "to a fresh replica path each run, so every run is a first, full replication. LZ4, not encrypted.",
            "- gzip/pigz alone: file to file on the same disk; pigz uses every core.",
            "- Writer: `offsite-crm write` at the given rate on a copy of the database, alone, then again while "
            "`offsite backup` (level 6, to S3) runs back to back until the writer stops. The last backup taken "
            "under the writer is decrypted and checked with `quick_check` and `offsite-crm check`. "
            f"\"Commits over {SLOW_COMMIT_MS:g} ms\" counts the slow ones from the writer's trace: its own WAL "
            "checkpoints (about one every 2.4 s, each with two fsyncs) are most of them, and p99 of a 60 s run "
            "(3000 commits) is its 31st-slowest commit, so a few more slow commits move p99 from a normal "
            "commit's time to a checkpoint's.",
            "- Correctness: every backup is decrypted/decompressed or restored and must pass `PRAGMA integrity_check` "
            "(first run of each tool; `quick_check` on later runs) or be byte-identical to the source (gzip, pigz, "
            "restic). Any failure stops the benchmark with exit status 1.",
        ]
        lines += b.notes
        if os.environ.get("BENCH_NOTE", "").strip():
            lines.append("- Note from whoever ran it: " + os.environ["BENCH_NOTE"].strip())
        cores = os.cpu_count() or 1
        busiest = max((load[0] for _, load in b.loads), default=0.0)
        if busiest > cores + 0.5:
            lines.append(f"- **The machine was shared**: the 1-minute load average reached {busiest:.1f} on {cores} cores "
                         "while this ran (the benchmark alone stays near the core count). Other work took CPU time "
                         "between and during the measurements: wall times, and ratios of wall times, carry that noise; "
                         "CPU times less so; sizes none. offsite's compression threads run under SCHED_IDLE (only on "
                         "CPU time nobody else wants), so its wall time grows most when the cores are busy.")
        for size in SIZES:
            source = b.sources[size]
            lines += ["", f"## {size} MiB database ({source / MIB:.1f} MiB on disk)", "",
                      f"Median (min–max) of {RUNS} run(s).", "",
                      self.markdown_table(self.HEADER, self.table_rows(size))]
            if self.writer_rows(size):
                lines += ["", f"Writer at {WRITER_RATE} tx/s for {WRITER_SECONDS} s:", "",
                          self.markdown_table(self.WRITER_HEADER, self.writer_rows(size))]
            lines += ["", "Against the targets of issue 7:", "", self.markdown_table(self.RATIO_HEADER, self.ratios(size))]
            checks = getattr(b, "checksums", {}).get(size)
            if checks:
                walls = sorted(w for w, _ in checks)
                cpus = sorted(c for _, c in checks)
                lines += ["", f"CRC-32 of the checked copy (compared with the gzip members' CRCs of what was shipped, "
                          f"issue 13), from the page cache: {walls[len(walls) // 2]:.3f} s wall ({walls[0]:.3f}–{walls[-1]:.3f}), "
                          f"{cpus[len(cpus) // 2]:.2f} s CPU per run of {len(checks)}. It runs on a thread of its own while "
                          "quick_check reads the same copy, so it adds CPU time, not wall time, to a backup."]
        if getattr(b, "corpus", None):
            lines += self.corpus_markdown()
        lines += ["", "## Commands", "", "As run (paths shortened; S3 keys only ever in the environment):", ""]
        for tool in ORDER + [t for t in b.commands if t not in ORDER]:
            if tool in b.commands:
                lines.append(f"- {tool}: `{b.commands[tool]}`")
        lines += ["", "S3 server: `RCLONE_AUTH_KEY='\"KEY,SECRET\"' rclone serve s3 --addr 127.0.0.1:PORT DATA_FOLDER`; "
                  "pipelines run as `bash -c 'set -o pipefail; …'`.", ""]
        return "\n".join(lines)


def main():
    bench = Bench()

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    try:
        bench.main()
    except BenchFailure as error:
        log(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

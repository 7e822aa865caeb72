#!/usr/bin/env python3
"""What continuous protection keeps on a target over time, under `continuous.keep`.

    python3 bench/storage.py [--keep 60s] [--every 60s] [--minutes 6] [--size-mib 20] [--rate 50]

Time-compressed: `keep` and the full-backup schedule are minutes instead of a day, so that a run
of a few multiples of `keep` shows whether storage levels off (it must: change objects older than
`keep` go, and with them the bases no kept chain needs) and at how much, in units of what one
`keep` of changes and one base weigh. One `offsite run` (release build) with a folder target and
`continuous: {interval: 1s, keep: KEEP}`, `schedule.every: EVERY`, retention `{"last": 1}`
(so that only continuous protection's own rule keeps older bases), beside
`offsite-crm write --rate RATE` on a generated CRM database; every 10 s the target's bytes are
summed by kind (bases, change objects, compacted objects). Standard library only.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("BENCH_BIN", ROOT / ".build" / "release"))
CHANGE = re.compile(r"\.c\d{8}\.")
COMPACTED = re.compile(r"\.k\d{8}-\d{8}\.")


def seconds_of(text):
    match = re.fullmatch(r"(\d+)([smh])", text)
    if not match:
        raise SystemExit(f"error: {text} is not a duration like 60s, 5m or 1h")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def measure(remote):
    sizes = {"base": 0, "change": 0, "compacted": 0}
    counts = dict(sizes)
    for path in Path(remote).rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        kind = "compacted" if COMPACTED.search(path.name) else "change" if CHANGE.search(path.name) else "base"
        sizes[kind] += path.stat().st_size
        counts[kind] += 1
    return sizes, counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", default="60s")
    parser.add_argument("--every", default="60s")
    parser.add_argument("--minutes", type=float, default=6)
    parser.add_argument("--size-mib", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--work", default=str(ROOT / "bench" / "work" / "storage"))
    args = parser.parse_args()
    work = Path(args.work)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    data, local, remote = work / "data", work / "local", work / "remote"
    for folder in (data, local, remote):
        folder.mkdir(parents=True)
    database = data / "crm.db"
    subprocess.run([str(BIN / "offsite-crm"), "generate", "--out", str(database), "--size-mib", str(args.size_mib), "--seed", "3"],
                   check=True, capture_output=True)
    recipient = subprocess.run([str(BIN / "offsite"), "keygen", "--output", "identity.txt"], cwd=work,
                               capture_output=True, text=True, check=True).stdout.strip()
    config = work / "config.json"
    config.write_text(json.dumps({
        "watch": {"dir": str(data)},
        "local": {"dir": str(local)},
        "encryption": {"recipients": [recipient]},
        "schedule": {"every": args.every, "startup": True, "shutdown": False},
        "continuous": {"interval": "1s", "keep": args.keep},
        "targets": [{"name": "folder", "url": f"file://{remote}", "retention": {"last": 1}}],
        "log": {"format": "json", "level": "info"},
    }))
    log = open(work / "agent.log", "w")
    agent = subprocess.Popen([str(BIN / "offsite"), "run", "--config", str(config)], cwd=work, stdout=log, stderr=log)
    writer = None
    rows = []
    try:
        deadline = time.time() + 120
        while "changes.chain" not in (work / "agent.log").read_text():
            if time.time() > deadline or agent.poll() is not None:
                raise SystemExit("error: the agent took no base")
            time.sleep(0.5)
        writer = subprocess.Popen([str(BIN / "offsite-crm"), "write", "--db", str(database), "--rate", str(args.rate),
                                   "--duration", str(int(args.minutes * 60)), "--json"], stdout=subprocess.PIPE)
        started = time.time()
        while writer.poll() is None:
            time.sleep(10)
            sizes, counts = measure(remote)
            rows.append((time.time() - started, sizes, counts, database.stat().st_size))
            print(f"{rows[-1][0]:5.0f} s  bases {counts['base']} {sizes['base'] / 2**20:6.2f} MiB  "
                  f"changes {counts['change']} {sizes['change'] / 2**20:6.2f} MiB  "
                  f"compacted {counts['compacted']} {sizes['compacted'] / 2**20:6.2f} MiB", flush=True)
    finally:
        if writer and writer.poll() is None:
            writer.terminate()
        agent.terminate()
        agent.wait(timeout=60)
    keep = seconds_of(args.keep)
    later = [row for row in rows if row[0] >= 2 * keep]
    if later:
        peak = max(sum(row[1].values()) for row in later)
        last = rows[-1]
        print()
        print(f"after {2 * keep} s (twice keep): total on the target at most {peak / 2**20:.2f} MiB; "
              f"at the end ({last[0]:.0f} s) {sum(last[1].values()) / 2**20:.2f} MiB "
              f"({last[2]['base']} bases, {last[2]['change']} change and {last[2]['compacted']} compacted objects); "
              f"database {last[3] / 2**20:.1f} MiB")
    (work / "storage.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())

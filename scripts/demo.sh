#!/usr/bin/env bash
# The demo: builds offsite, generates a sample CRM database, and runs the main job on an embedded
# default configuration — a local folder as the off-site target, age encryption to a fresh key —
# then lists the backups, restores the newest into a new file and checks it with the sqlite3 CLI.
# Everything happens in a temporary folder (kept, and printed at the end; OFFSITE_DEMO_DIR overrides).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
swift build -c release --product offsite >/dev/null
swift build -c release --product offsite-crm >/dev/null
bin="$(swift build -c release --show-bin-path)"

demo="${OFFSITE_DEMO_DIR:-$(mktemp -d -t offsite-demo.XXXXXX)}"
mkdir -p "$demo/data" "$demo/config"
echo "== demo folder: $demo"

echo "== generating a 20 MiB sample CRM database"
rm -f "$demo/data/crm.db" "$demo/data/crm.db-wal" "$demo/data/crm.db-shm"
"$bin/offsite-crm" generate --out "$demo/data/crm.db" --size-mib 20 --seed 1

echo "== a new age identity (kept in the config folder; in production keep it off the host)"
rm -f "$demo/config/identity.txt"
recipient="$("$bin/offsite" keygen --output "$demo/config/identity.txt")"

cat > "$demo/config/offsite.json" <<JSON
{
  "watch": { "dir": "$demo/data" },
  "local": { "dir": "$demo/backups", "keep": { "hourly": 24 } },
  "encryption": { "recipients": ["$recipient"], "identityFile": "$demo/config/identity.txt" },
  "compression": { "level": 6 },
  "schedule": { "every": "1h", "onChange": { "minInterval": "5s" }, "startup": true, "shutdown": true },
  "targets": [{ "name": "offsite-folder", "url": "file://$demo/offsite", "retention": { "last": 10, "daily": 7 } }]
}
JSON
export OFFSITE_CONFIG="$demo/config/offsite.json"

echo "== the agent (offsite run) while the application writes (50 transactions/s for 8 s)"
"$bin/offsite" run &
agent=$!
sleep 2
"$bin/offsite-crm" write --db "$demo/data/crm.db" --rate 50 --duration 8
sleep 7
kill -TERM "$agent"
wait "$agent"

echo "== a manual backup, then status"
"$bin/offsite" backup
"$bin/offsite" status

echo "== list"
"$bin/offsite" list

echo "== restore the newest backup into a new file"
rm -f "$demo/restored.db"
"$bin/offsite" restore --target offsite-folder --db crm --output "$demo/restored.db"

echo "== check the restored database with the sqlite3 CLI"
check="$(sqlite3 "$demo/restored.db" 'PRAGMA integrity_check')"
echo "integrity_check: $check"
[ "$check" = "ok" ]
"$bin/offsite-crm" check --db "$demo/restored.db"
for table in users leads clients comments activity_logs; do
  echo "$table: $(sqlite3 "$demo/restored.db" "SELECT count(*) FROM $table") rows"
done
echo "== the same object with standard tools alone: age -d | gunzip"
object="$(ls "$demo"/offsite/crm/*.sqlite3.gz.age | tail -n 1)"
age -d -i "$demo/config/identity.txt" "$object" | gunzip > "$demo/by-hand.db"
echo "integrity_check: $(sqlite3 "$demo/by-hand.db" 'PRAGMA integrity_check')"
echo "== demo done: $demo"

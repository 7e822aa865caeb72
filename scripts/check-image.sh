#!/usr/bin/env bash
# Proves the container image's runtime stage without a Docker engine: builds the static-stdlib
# binary exactly as the Dockerfile's build stage does, makes a minimal Debian bookworm root with
# `debootstrap --variant=minbase`, runs the Dockerfile's runtime RUN steps in it (only its runtime
# packages, the offsite user, the volumes' folders), copies the binary in, and runs it there as
# the Dockerfile's USER through chroot: version, keygen, backup, list, restore, healthcheck, and
# run with its control endpoint answering on loopback. Any failure stops the script with a
# non-zero exit. Needs root (debootstrap, chroot, mount); installs debootstrap when missing.
# OFFSITE_IMAGE_KEEP=1 keeps the work folder.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "== check-image: $*"; }
fail() {
  echo "check-image: FAILED: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root: debootstrap, chroot and mount need it"
if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
for tool in sqlite3 curl python3 rclone; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing: run scripts/install-deps.sh"
done

# 1. The binary, as the Dockerfile's build stage makes it.
say "building the release binary (swift build -c release --static-swift-stdlib --product offsite)"
swift build -c release --static-swift-stdlib --product offsite
binary="$(swift build -c release --static-swift-stdlib --show-bin-path)/offsite"
[ -x "$binary" ] || fail "no binary at $binary"
say "binary: $(stat -c %s "$binary") bytes"

# 2. The runtime stage of the Dockerfile: its RUN steps (continuation lines joined) and its USER.
runtime_stage="$(awk '/^FROM /{stage=""} {stage = stage $0 "\n"} END {printf "%s", stage}' Dockerfile)"
joined="$(printf '%s' "$runtime_stage" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta')"
run_steps=()
image_user=""
while IFS= read -r line; do
  case "$line" in
    RUN\ *) run_steps+=("${line#RUN }") ;;
    USER\ *) image_user="${line#USER }" ;;
  esac
done <<<"$joined"
((${#run_steps[@]})) || fail "found no RUN step in the Dockerfile's runtime stage"
[ -n "$image_user" ] || fail "found no USER in the Dockerfile's runtime stage"

work="$(mktemp -d -t offsite-image.XXXXXX)"
root="$work/root"
agent_pid=""
rclone_pid=""
cleanup() {
  status=$?
  [ -n "$agent_pid" ] && kill -KILL "$agent_pid" 2>/dev/null || true
  [ -n "$rclone_pid" ] && kill -KILL "$rclone_pid" 2>/dev/null || true
  umount "$root/proc" 2>/dev/null || true
  if [ "${OFFSITE_IMAGE_KEEP:-0}" = 1 ]; then echo "work folder kept: $work"; else rm -rf "$work"; fi
  exit $status
}
trap cleanup EXIT

# The host's own Debian mirror when it names one; otherwise debootstrap's default.
mirror=""
for sources in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
  [ -r "$sources" ] || continue
  mirror="$(awk '/^URIs:/ {print $2; exit} /^deb / && $3 == "bookworm" {print $2; exit}' "$sources")"
  [ -n "$mirror" ] && break
done
say "debootstrap --variant=minbase bookworm"
debootstrap --variant=minbase bookworm "$root" ${mirror:+"$mirror"} >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap"; }
mount -t proc proc "$root/proc"

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
for step in "${run_steps[@]}"; do
  say "RUN ${step:0:100}…"
  in_root /bin/sh -c "$step" || fail "the Dockerfile's RUN step failed in the root: $step"
done
install -m 0755 "$binary" "$root/usr/local/bin/offsite"
uid="$(in_root id -u "$image_user")" || fail "USER $image_user does not exist in the root"
gid="$(in_root id -g "$image_user")"
[ "$uid" = 10001 ] || fail "USER $image_user has uid $uid, not 10001"
say "runtime root: $(du -sh --exclude=proc "$root" | cut -f1), user $image_user = $uid:$gid"

# The binary in the root as the image's user, with only the image's environment (chroot and env
# exec it: started in the background, its pid is the agent's own).
offsite_command=(chroot --userspec="$uid:$gid" --groups="$gid" "$root" /usr/bin/env -i HOME=/nonexistent
  PATH=/usr/local/bin:/usr/bin:/bin OFFSITE_CONFIG=/config/offsite.json /usr/local/bin/offsite)
offsite() { "${offsite_command[@]}" "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# 3. What a deployment mounts: the application's data, a "USB disk", the configuration and secrets.
say "fixtures: /data/crm.db, a folder target, an S3 target (rclone on loopback), secrets"
sqlite3 "$root/data/crm.db" "PRAGMA journal_mode=WAL;
  CREATE TABLE contacts(id INTEGER PRIMARY KEY, name TEXT, email TEXT);
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
  INSERT INTO contacts(name, email) SELECT 'contact ' || i, 'c' || i || '@example.com' FROM n;" >/dev/null
chown -R "$uid:$gid" "$root/data"
install -d -m 0700 -o "$uid" -g "$gid" "$root/target"
s3_port="$(free_port)"
mkdir -p "$work/s3/offsite-image"
rclone serve s3 --auth-key "imagecheck,image-check-secret-7f3a" --addr "127.0.0.1:$s3_port" --config /dev/null \
  "$work/s3" >"$work/rclone.log" 2>&1 &
rclone_pid=$!
disown "$rclone_pid"  # killed by cleanup without a job notice
http_port="$(free_port)"
token="$(head -c 32 /dev/urandom | base64 | tr -d '\n/+=')"
printf '%s\n' "$token" >"$root/config/token"
printf 'image-check-secret-7f3a\n' >"$root/config/s3-secret"
chown "0:$gid" "$root/config/token" "$root/config/s3-secret"
chmod 0440 "$root/config/token" "$root/config/s3-secret"
printf 'Authorization: Bearer %s\n' "$token" >"$work/auth-header"
chmod 0600 "$work/auth-header"

say "offsite version"
offsite version || fail "offsite version: the binary does not start in the runtime root"
say "offsite keygen"
recipient="$(offsite keygen --output /tmp/identity.txt)" || fail "keygen"
[[ "$recipient" == age1* ]] || fail "keygen printed no age1… recipient: $recipient"
[ "$(stat -c '%u %a' "$root/tmp/identity.txt")" = "$uid 600" ] || fail "the identity is not 0600 and owned by $uid"

cat >"$root/config/offsite.json" <<JSON
{
  "databases": [{ "path": "/data/crm.db" }],
  "local": { "dir": "/backups" },
  "encryption": { "recipients": ["$recipient"], "identityFile": "/tmp/identity.txt" },
  "schedule": { "every": "1h", "startup": true, "shutdown": false },
  "targets": [
    { "name": "usb", "url": "file:///target" },
    { "name": "s3", "url": "s3://offsite-image/backups", "endpoint": "http://127.0.0.1:$s3_port", "region": "us-east-1",
      "accessKeyId": "imagecheck", "secretAccessKeyFile": "/config/s3-secret" }
  ],
  "http": { "listen": "127.0.0.1:$http_port", "tokenFile": "/config/token" }
}
JSON
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$s3_port/" && break; sleep 0.2; done

say "offsite backup"
offsite backup || fail "backup"
say "offsite list"
listing="$(offsite list --db crm)" || fail "list"
echo "$listing"
for target in usb s3; do
  grep -Eq "^$target +crm +[0-9]{8}T[0-9]{6}Z-manual" <<<"$listing" || fail "list shows no manual backup on $target"
done
say "offsite restore"
offsite restore --target s3 --db crm --output /tmp/restored.db || fail "restore"
[ "$(sqlite3 "$root/tmp/restored.db" 'PRAGMA integrity_check')" = ok ] || fail "the restored database fails integrity_check"
[ "$(sqlite3 "$root/tmp/restored.db" 'SELECT count(*) FROM contacts')" = 5000 ] || fail "the restored database lost rows"

say "offsite run, with the control endpoint on 127.0.0.1:$http_port"
run_started="$(date +%s)"
"${offsite_command[@]}" run >"$work/agent.log" 2>&1 &
agent_pid=$!
endpoint="http://127.0.0.1:$http_port"
ready=""
for _ in $(seq 120); do
  kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log" >&2; fail "offsite run exited"; }
  # The startup backup's success on s3, newer than the agent's start (the state also counts the
  # backup by hand above).
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$endpoint/healthz")" = 200 ] &&
    awk -v since="$run_started" '$1 == "offsite_last_success_timestamp_seconds{database=\"crm\",target=\"s3\"}" && $2 >= since { found = 1 }
      END { exit !found }' <<<"$(curl -s "$endpoint/metrics")"; then
    ready=1
    break
  fi
  sleep 0.5
done
[ -n "$ready" ] || { cat "$work/agent.log" >&2; fail "the endpoint did not report the startup backup within 60 s"; }
curl -sf "$endpoint/metrics" >"$work/metrics.txt" || fail "GET /metrics"
if command -v promtool >/dev/null 2>&1; then promtool check metrics <"$work/metrics.txt" || fail "promtool check metrics"; fi
# (Captured first: with pipefail, grep -q closing the pipe early would fail curl.)
status_json="$(curl -sf "$endpoint/api/status")" || fail "GET /api/status"
grep -q '"name" : "crm"' <<<"$status_json" || fail "GET /api/status does not name crm"
page="$(curl -sf "$endpoint/")" || fail "GET / (the status page)"
grep -q 'id="db-crm"' <<<"$page" || fail "the status page does not show crm"
[ "$(curl -s -o /dev/null -w '%{http_code}' -d '{"db": "crm"}' "$endpoint/api/backup")" = 401 ] || fail "POST /api/backup without the token was not 401"
# 409 while the startup backup is still finishing (its outcome shows in /metrics a moment before
# it ends): asked again then, as the application would.
code=""
for _ in $(seq 20); do
  code="$(curl -s -o "$work/answer" -w '%{http_code}' -H "@$work/auth-header" -d '{"db": "crm", "reason": "image check"}' \
    "$endpoint/api/backup")" || true
  [ "$code" = 409 ] || break
  sleep 0.5
done
[ "$code" = 202 ] || { cat "$work/answer" "$work/agent.log" >&2; fail "POST /api/backup answered $code"; }
answer="$(cat "$work/answer")"
id="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])' <<<"$answer")" || fail "POST /api/backup answered $answer"
say "manual backup $id requested over HTTP"
shipped=""
for _ in $(seq 60); do
  if [ "$(grep -c "$id" <<<"$(offsite list --db crm)")" -ge 2 ]; then shipped=1; break; fi
  sleep 0.5
done
[ -n "$shipped" ] || { cat "$work/agent.log" >&2; fail "backup $id did not reach both targets"; }
# The reason comes from the agent's state file, written at most once a second after an outcome.
reason_shown=""
for _ in $(seq 20); do
  if grep "$id" <<<"$(offsite list --target usb --db crm)" | grep -q "image check"; then reason_shown=1; break; fi
  sleep 0.5
done
[ -n "$reason_shown" ] || fail "list does not show the reason of $id"
say "offsite healthcheck while the agent runs"
offsite healthcheck || fail "healthcheck"
[ "$(stat -c '%u %a' "$root/backups/.offsite-state.json")" = "$uid 600" ] || fail "the state file is not 0600 and owned by $uid"
! grep -q "$token" "$work/agent.log" || fail "the token appears in the agent's log"

say "SIGTERM"
kill -TERM "$agent_pid"
agent_status=0
wait "$agent_pid" || agent_status=$?
agent_pid=""
[ "$agent_status" = 0 ] || { cat "$work/agent.log" >&2; fail "offsite run exited $agent_status after SIGTERM"; }
if curl -s -o /dev/null "$endpoint/healthz"; then fail "the endpoint still answers after the agent stopped"; fi
say "passed: binary $(stat -c %s "$binary") bytes; keygen, backup, list, restore, healthcheck and run work as uid $uid"

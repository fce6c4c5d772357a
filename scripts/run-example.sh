#!/usr/bin/env bash
# Starts berthd on config.toml.example (scratch root under /var/tmp/berth-example) and shows what it serves.
set -euo pipefail
bin=${1:?usage: run-example.sh BIN_DIR}
scratch=/var/tmp/berth-example
socket=/run/berth-example/berthd.sock
mkdir -p "$scratch"
if [ -f "$scratch/berthd.pid" ] && kill -0 "$(cat "$scratch/berthd.pid")" 2>/dev/null; then
  kill "$(cat "$scratch/berthd.pid")"; sleep 1
fi
"$bin/berthd" --config config.toml.example >"$scratch/berthd.log" 2>&1 &
echo $! >"$scratch/berthd.pid"
for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || { echo "berthd did not start:"; cat "$scratch/berthd.log"; exit 1; }
export BERTH_ADDRESS=$socket
echo "== berth version"; "$bin/berth" version
echo; echo "== berth plugins ls"; "$bin/berth" plugins ls
echo; echo "== Debian's ctr against berthd"; ctr --address "$socket" plugins ls
"$bin/berth" namespaces create example greeting=hello 2>/dev/null || true
echo; echo "== berth namespaces ls"; "$bin/berth" namespaces ls
# A snapshot on the configured default snapshotter: the mounts berthd returns, then removed again.
"$bin/berth" snapshots rm example-snapshot >/dev/null 2>&1 || true
echo; echo "== berth snapshots prepare example-snapshot"; "$bin/berth" snapshots prepare example-snapshot
echo "== berth snapshots mounts"; "$bin/berth" snapshots mounts /tmp/example-target example-snapshot
"$bin/berth" snapshots rm example-snapshot
# The test image (busybox-static as a one-layer OCI archive), imported by the daemon through the Transfer API.
scripts/busybox-image.sh "$scratch/busybox.tar"
echo; echo "== berth import busybox.tar"; "$bin/berth" import "$scratch/busybox.tar"
# A registry on loopback (Debian's docker-registry): push the image there, drop it, and pull it back (the daemon
# downloads and unpacks while it reports progress).
if [ -f "$scratch/registry.pid" ]; then kill "$(cat "$scratch/registry.pid")" 2>/dev/null || true; fi
rm -rf "$scratch/registry"; mkdir -p "$scratch/registry"
cat >"$scratch/registry/config.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $scratch/registry/data
http:
  addr: 127.0.0.1:5117
YAML
docker-registry serve "$scratch/registry/config.yml" >"$scratch/registry/log" 2>&1 &
echo $! >"$scratch/registry.pid"
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/5117) 2>/dev/null && break; sleep 0.1; done
echo; echo "== berth push --plain-http 127.0.0.1:5117/example/busybox:latest"
"$bin/berth" images tag --force docker.io/library/busybox:latest 127.0.0.1:5117/example/busybox:latest >/dev/null
"$bin/berth" push --plain-http 127.0.0.1:5117/example/busybox:latest
"$bin/berth" images rm --sync 127.0.0.1:5117/example/busybox:latest docker.io/library/busybox:latest >/dev/null
echo; echo "== berth pull --plain-http 127.0.0.1:5117/example/busybox:latest"
"$bin/berth" pull --plain-http 127.0.0.1:5117/example/busybox:latest
kill "$(cat "$scratch/registry.pid")" 2>/dev/null || true; rm -f "$scratch/registry.pid"
"$bin/berth" images tag --force 127.0.0.1:5117/example/busybox:latest docker.io/library/busybox:latest >/dev/null
echo; echo "== berth run --rm busybox"
"$bin/berth" run --rm docker.io/library/busybox:latest sh -c 'echo "Hello from a Berth container: $(hostname), pid $$"'
echo
echo "berthd is running (pid $(cat "$scratch/berthd.pid"), log $scratch/berthd.log, socket $socket)."
echo "Try: $bin/berth --address $socket events   |   stop it with: make stop"

#!/usr/bin/env bash
# berth-runc vs runc on a busybox-static bundle running /bin/true, paired and alternating (A B A B ...):
#   1. `run` (foreground, container exit awaited)
#   2. `create` + `start` + `delete --force`
# Prints the median wall time of each and the ratio berth-runc / runc (goal: <= 0.5).
# berth-runc is built in release mode with the Swift runtime linked statically (how it would ship).
# Env: N rounds (default 30), WARM warm-up rounds (3), BERTH_RUNC binary (default: a release build), RUNC,
# HYPERFINE=0 to skip the hyperfine view. On a shared host, run it under `nice -n -15` (both runtimes alike).
set -euo pipefail
N=${N:-30}
WARM=${WARM:-3}
TOP=$(cd "$(dirname "$0")/../.." && pwd)
RUNC=${RUNC:-/usr/sbin/runc}
BR=${BERTH_RUNC:-}
if [ -z "$BR" ]; then
  BUILDLOG=$(mktemp /tmp/berth-runc-bench-build.XXXXXX)
  if ! (cd "$TOP" && swift build -c release --static-swift-stdlib --product berth-runc \
          --scratch-path .build-runc-release >"$BUILDLOG" 2>&1); then
    cat "$BUILDLOG" >&2; rm -f "$BUILDLOG"; exit 1
  fi
  rm -f "$BUILDLOG"
  BR="$TOP/.build-runc-release/release/berth-runc"
fi
[ "$(id -u)" = 0 ] || { echo "bench.sh: must run as root" >&2; exit 1; }

WORK=$(mktemp -d /tmp/berth-runc-bench.XXXXXX)
cleanup() {
  for rt in "$RUNC:$WORK/root-runc" "$BR:$WORK/root-berth"; do
    bin=${rt%%:*}; root=${rt#*:}
    [ -d "$root" ] && for id in $(ls "$root"); do "$bin" --root "$root" delete --force "$id" >/dev/null 2>&1 || true; done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

B=$WORK/bundle
mkdir -p "$B/rootfs/bin" "$B/rootfs/proc" "$B/rootfs/dev" "$B/rootfs/sys"
cp /bin/busybox "$B/rootfs/bin/busybox"
ln -s busybox "$B/rootfs/bin/true"
"$RUNC" spec --bundle "$B"
sed -i -e 's/"terminal": true/"terminal": false/' -e 's|^\t\t\t"sh"$|\t\t\t"/bin/true"|' "$B/config.json"
grep -q '"/bin/true"' "$B/config.json" || { echo "bench.sh: could not edit config.json" >&2; exit 1; }

# time_one BIN ROOT MODE ID -> microseconds on stdout. Time comes from bash's own clock ($EPOCHREALTIME, bash
# >= 5): no `date` process inside the timed span, whose fork+exec (1-2 ms on a loaded host) would add the same
# constant to both runtimes.
time_one() {
  local bin=$1 root=$2 mode=$3 id=$4 t0 t1
  t0=${EPOCHREALTIME/[.,]/}
  if [ "$mode" = run ]; then
    "$bin" --root "$root" run --bundle "$B" "$id" >/dev/null 2>&1
  else
    "$bin" --root "$root" create --bundle "$B" "$id" >/dev/null 2>&1
    "$bin" --root "$root" start "$id" >/dev/null 2>&1
    "$bin" --root "$root" delete --force "$id" >/dev/null 2>&1
  fi
  t1=${EPOCHREALTIME/[.,]/}
  echo $((t1 - t0))
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

for mode in run create-start-delete; do
  : >"$WORK/$mode.runc"; : >"$WORK/$mode.berth"
  for i in $(seq 1 $((WARM + N))); do
    r=$(time_one "$RUNC" "$WORK/root-runc" "$mode" "r$i")
    b=$(time_one "$BR" "$WORK/root-berth" "$mode" "b$i")
    if [ "$i" -gt "$WARM" ]; then echo "$r" >>"$WORK/$mode.runc"; echo "$b" >>"$WORK/$mode.berth"; fi
  done
  mr=$(median <"$WORK/$mode.runc"); mb=$(median <"$WORK/$mode.berth")
  awk -v m="$mode" -v r="$mr" -v b="$mb" -v n="$N" 'BEGIN {
    printf "%-20s runc %8.1f ms   berth-runc %8.1f ms   ratio %.2f   (median of %d, alternating)\n", m, r/1000, b/1000, b/r, n }'
done

# A second view of `run` with hyperfine (not alternating: each runtime's runs form one block), if installed.
if [ "${HYPERFINE:-1}" = 1 ] && command -v hyperfine >/dev/null; then
  hyperfine -N -w "$WARM" -r "$N" --export-json "$WORK/hf.json" \
    -n runc "$RUNC --root $WORK/root-runc run --bundle $B hf" \
    -n berth-runc "$BR --root $WORK/root-berth run --bundle $B hf" >/dev/null 2>&1 || true
  [ -s "$WORK/hf.json" ] && awk -v n="$N" '/"command"/ {c=$2; gsub(/[",]/, "", c)} /"median"/ {v=$2; gsub(/[",]/, "", v); m[c]=v}
    END { r=m["runc"]; b=m["berth-runc"]; if (r > 0) printf "run (hyperfine)      runc %8.1f ms   berth-runc %8.1f ms   ratio %.2f   (median of %d)\n", r*1000, b*1000, b/r, n }' \
    "$WORK/hf.json"
fi

#!/usr/bin/env bash
# Side-by-side benchmark: conn-attrib and tshark on the same generated capture.
# Usage: scripts/bench/vs-tshark.sh [CAPTURE]   (default: builds bench-data/bench.pcap)
# Prints wall time, MB/s, packets/s and peak RSS for each, and the ratios. The plain
# release build is timed, then the profile-guided one (scripts/pgo-build.sh; NO_PGO=1
# skips it, and it is skipped with a note where llvm-profdata cannot be had).
set -euo pipefail
cd "$(dirname "$0")/../.."
need=(); command -v tshark >/dev/null || need+=(tshark); command -v bc >/dev/null || need+=(bc)
if ((${#need[@]})); then apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
cap=${1:-bench-data/bench.pcap}
if [[ ! -f $cap ]]; then
  mkdir -p "$(dirname "$cap")"
  python3 scripts/bench/make-capture.py "$cap"
fi
cargo build --release --quiet
pgo=
if [[ -z ${NO_PGO:-} ]]; then
  pgo=$(scripts/pgo-build.sh 2>/dev/null) || { pgo=; echo "note: no PGO build (scripts/pgo-build.sh failed)"; }
fi
bytes=$(stat -c %s "$cap")
packets=$(capinfos -c -M "$cap" | awk -F: '/Number of packets/ {gsub(/ /,"",$2); print $2}')
tmp=$(mktemp -d)
run() { # name, command...
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$tmp/$name.time" "$@" > /dev/null 2> "$tmp/$name.err" || true
  # The last line: time(1) first says "Command exited with non-zero status 1" when a tool
  # exits 1 (conn-attrib does when its report has warnings).
  read -r secs kb < <(tail -n 1 "$tmp/$name.time")
  printf '%-36s %8.2f s %9.1f MB/s %11.0f pkt/s %8.0f MB peak RSS\n' "$name" "$secs" \
    "$(echo "$bytes / 1000000 / $secs" | bc -l)" "$(echo "$packets / $secs" | bc -l)" "$(echo "$kb / 1024" | bc -l)"
  echo "$secs $kb" > "$tmp/$name.res"
}
echo "capture: $cap, $((bytes / 1000000)) MB, $packets packets"
# Read the file once so that the first tool timed does not pay for a cold page cache.
cat "$cap" > /dev/null
# One thread each, as tshark reads on one; then conn-attrib's default on two cores.
run "conn-attrib (text report)" ./target/release/conn-attrib "$cap" --threads 1 -o /dev/null
run "conn-attrib (JSON report)" ./target/release/conn-attrib "$cap" --threads 1 -f json -o /dev/null
run "conn-attrib (text, --threads 2)" ./target/release/conn-attrib "$cap" --threads 2 -o /dev/null
if [[ -n $pgo ]]; then
  run "conn-attrib PGO build (text)" "$pgo" "$cap" --threads 1 -o /dev/null
  run "conn-attrib PGO build (--threads 2)" "$pgo" "$cap" --threads 2 -o /dev/null
fi
run "tshark -q -z conv,tcp" tshark -r "$cap" -q -z conv,tcp
run "tshark mongo opcodes" tshark -r "$cap" -d tcp.port==27017,mongo -T fields -e mongo.opcode
compare() { # conn-attrib row, tshark row
  read -r ca_s ca_kb < "$tmp/$1.res"
  read -r t_s t_kb < "$tmp/$2.res"
  printf '%s vs %s: %.1fx faster, %.1fx less memory\n' "$1" "$2" \
    "$(echo "$t_s / $ca_s" | bc -l)" "$(echo "$t_kb / $ca_kb" | bc -l)"
}
for t in "tshark -q -z conv,tcp" "tshark mongo opcodes"; do
  compare "conn-attrib (text report)" "$t"
  if [[ -n $pgo ]]; then compare "conn-attrib PGO build (text)" "$t"; fi
done
rm -rf "$tmp"

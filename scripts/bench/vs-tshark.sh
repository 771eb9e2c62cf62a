#!/usr/bin/env bash
# Side-by-side benchmark: conn-attrib and tshark on the same generated capture.
# Usage: scripts/bench/vs-tshark.sh [CAPTURE]   (default: builds bench-data/bench.pcap)
# Prints wall time, MB/s, packets/s and peak RSS for each, and the ratios.
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
bytes=$(stat -c %s "$cap")
packets=$(capinfos -c -M "$cap" | awk -F: '/Number of packets/ {gsub(/ /,"",$2); print $2}')
tmp=$(mktemp -d)
run() { # name, command...
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$tmp/$name.time" "$@" > /dev/null 2> "$tmp/$name.err" || true
  # The last line: time(1) first says "Command exited with non-zero status 1" when a tool
  # exits 1 (conn-attrib does when its report has warnings).
  read -r secs kb < <(tail -n 1 "$tmp/$name.time")
  printf '%-34s %8.2f s %9.1f MB/s %11.0f pkt/s %8.0f MB peak RSS\n' "$name" "$secs" \
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
run "tshark -q -z conv,tcp" tshark -r "$cap" -q -z conv,tcp
run "tshark mongo opcodes" tshark -r "$cap" -d tcp.port==27017,mongo -T fields -e mongo.opcode
read -r ca_s ca_kb < "$tmp/conn-attrib (text report).res"
for t in "tshark -q -z conv,tcp" "tshark mongo opcodes"; do
  read -r t_s t_kb < "$tmp/$t.res"
  printf 'vs %-31s %6.1fx faster, %6.1fx less memory\n' "$t:" "$(echo "$t_s / $ca_s" | bc -l)" "$(echo "$t_kb / $ca_kb" | bc -l)"
done
rm -rf "$tmp"

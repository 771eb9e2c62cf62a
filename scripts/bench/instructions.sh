#!/usr/bin/env bash
# Instructions per packet, by pipeline stage: a deterministic measure, for comparing two
# builds on a machine whose timings drift (this project's shared VM varies ±15% run to
# run). Runs conn-attrib under callgrind on the first N packets of a capture.
# Usage: scripts/bench/instructions.sh [CAPTURE] [PACKETS]
#   (defaults: bench-data/m469.pcap, 400000; `make-capture.py` builds the capture)
# Caveat: valgrind counts every iteration of a `rep movs`/`rep stos` as an instruction,
# so memcpy/memset of large blocks weigh far more here than in wall time.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v editcap >/dev/null || need+=(wireshark-common)
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cap=${1:-bench-data/m469.pcap}
packets=${2:-400000}
cargo build --release --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
editcap -r "$cap" "$tmp/head.pcapng" "1-$packets"
# The capture may hold fewer packets than asked for.
packets=$(capinfos -c -M "$tmp/head.pcapng" | awk -F: '/Number of packets/ {gsub(/ /, "", $2); print $2}')
valgrind --tool=callgrind --callgrind-out-file="$tmp/out" \
  ./target/release/conn-attrib "$tmp/head.pcapng" -o /dev/null >/dev/null 2>&1 || true
callgrind_annotate --inclusive=yes "$tmp/out" 2>/dev/null > "$tmp/inclusive"
total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$tmp/inclusive")
# The largest inclusive count of a function of ours whose name ends with the pattern
# (callgrind_annotate appends " [object]" to some entries only).
stage() { # label, end of the function's name
  local n
  n=$(awk -v want="$2" '
    { line = $0; sub(/ \[[^]]*\]$/, "", line) }
    line ~ /conn_attrib/ && substr(line, length(line) - length(want) + 1) == want {
      count = $1; gsub(",", "", count); if (count + 0 > best) best = count + 0
    }
    END { printf "%.0f", best }' "$tmp/inclusive")
  printf '%-44s %14s %7.1f%% %7.0f per packet\n' "$1" "${n:-0}" \
    "$(echo "${n:-0} * 100 / $total" | bc -l)" "$(echo "${n:-0} / $packets" | bc -l)"
}
echo "capture: $cap, its first $packets packets, $(git rev-parse --short HEAD)"
printf '%-44s %14s %7.1f%% %7.0f per packet\n' "whole run" "$total" 100 "$(echo "$total / $packets" | bc -l)"
stage "read records (capture)" "FileSource as conn_attrib::capture::PacketSource>::next_packet"
stage "per packet: slice + reassemble + observe" "analyzer::Analyzer::packet"
stage "  slicing (net)" "net::slice"
stage "  TLS records (keyless shapes, JA4)" "tls::TlsConn::data"
stage "  MongoDB messages (frame, parse, observe)" "observe::Observer::handle_frame"
stage "    parse (incl. decompression)" "wire::message::parse_message"
stage "    decompression" "wire::message::decompress"
stage "offline fold (bounded memory)" "analyze_path_bounded::{{closure}}"
stage "conclusion (classify, attribute, report)" "conclude_with_released"
stage "writing the report" "report::Report::write"

#!/usr/bin/env bash
# Quick start 1: set up, build, and analyse a bundled capture of real drivers.
# Usage: scripts/demo.sh [CAPTURE] [conn-attrib flags…]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
capture=${1:-testdata/lab/streaming-default/capture.pcap}
shift || true
cargo build --release --quiet
set +e
./target/release/conn-attrib "$capture" "$@"
status=$?
set -e
# 1 means "analysed, with warnings": the report is still complete enough to read.
[[ $status -le 1 ]] || exit $status

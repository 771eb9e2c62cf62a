#!/usr/bin/env bash
# Quick start 2: set up, then run the whole test suite: formatting, lints, unit tests,
# integration tests over the public and lab captures, doc tests, and a benchmark smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets --quiet
cargo test --doc --quiet
echo "== benchmark smoke run (each benchmark once, no timing)"
cargo bench --quiet --bench pipeline -- --test

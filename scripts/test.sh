#!/usr/bin/env bash
# Quick start 2: set up, then run the whole test suite: formatting, lints, unit tests,
# integration tests over the public and lab captures, doc tests, and a benchmark smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if [[ -z "${CONN_ATTRIB_SHARED:-}" && ! -d ../shared/pcaps/public ]]; then
  echo "NOTE: ../shared/pcaps/public is not beside this checkout: the tests over the shared public"
  echo "      captures (tests/public_captures.rs, tests/cli.rs) will report themselves skipped."
fi
# The live-capture test drives a real PyMongo client against the lab's test server.
if [[ ! -x scripts/lab/.venv/bin/python ]]; then
  echo "== installing the lab's PyMongo for the live-capture test"
  python3 -m venv scripts/lab/.venv && scripts/lab/.venv/bin/pip install -q "pymongo==4.20.1" \
    || echo "NOTE: could not install PyMongo: the live-capture test will report itself skipped"
fi
# The HTML report is checked in a real headless browser: Debian's chromium.
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium for the HTML report test"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "NOTE: could not install chromium: tests/html.rs will skip its browser checks"
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets --quiet
cargo test --doc --quiet
echo "== benchmark smoke run (each benchmark once, no timing)"
cargo bench --quiet --bench pipeline -- --test

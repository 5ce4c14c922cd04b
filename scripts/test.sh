#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and property tests of the pure core, integration tests against real
# sshd / etcd / kubectl on loopback, and end-to-end tests on the systemd-nspawn testbed (those need root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast "$@"

#!/usr/bin/env bash
# Side-by-side benchmark: EventDBX against a throwaway PostgreSQL 15 (default durable
# settings: fsync on, synchronous_commit on) with the baseline in shared/bench/, both driven
# by pgbench on loopback. Prints a Markdown table (medians of several runs, ratios from the
# same runs) and the disk's fdatasync rate from pg_test_fsync.
#
#   bench/run.sh [--runs N] [--seconds S] [--seed-events N] [--eventdbx-only] [--no-encryption]
#                [--bound]
#
# --seed-events sets the history stored before measuring (default 100,000); the scale runs
# in docs/BENCHMARKS.md use 1,000,000 and 10,000,000 with --eventdbx-only (PostgreSQL's outbox
# script draws positions over 100,000 events, so side-by-side runs keep the default). The
# runs start once each server is idle after seeding (its flushes and compactions done).
# --bound adds, per run, the rate an ideal server would reach at 32 clients (the cores over
# the CPU per append of pgbench, a bare protocol round trip and RocksDB's grouped synced
# write, measured by bench/src/bin/storage_floor.rs in the same run).
#
# Installs what it needs (Debian postgresql-15 for initdb, pg_ctl, pgbench, pg_test_fsync).

set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
ensure_build_packages
ensure_packages postgresql-15 postgresql-client
cargo build --manifest-path "$repo/Cargo.toml" -p dbx --locked >&2
for arg in "$@"; do
  if [[ "$arg" == "--bound" ]]; then
    cargo build --manifest-path "$repo/Cargo.toml" -p eventdbx-bench --bin storage_floor --locked >&2
  fi
done
exec python3 "$repo/bench/side_by_side.py" --dbx "$CARGO_TARGET_DIR/debug/dbx" --repo "$repo" "$@"

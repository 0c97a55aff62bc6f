#!/usr/bin/env bash
# The project's one test command (README "Run all tests"; `.ci/run` calls exactly this).
#
# On a fresh machine with Rust, gcc, Python 3.11 + pip and git it:
#   1. builds (or reuses) the pinned Python venv (pyiceberg, pyarrow, moto) — scripts/venv.sh —
#      and checks the Glue+S3 emulator launcher (the Rust tests start it themselves);
#   2. checks formatting and clippy (-D warnings, all targets, all features);
#   3. runs every unit, integration and doc test;
#   4. runs the quickstart on a scratch warehouse and has pyiceberg read the result.
# Build output is kept outside the clone so reruns are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sales-history/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Tests only ever talk to 127.0.0.1: never let an AWS client look for instance metadata, and
# keep the caller's AWS region out of the config-parsing tests.
export AWS_EC2_METADATA_DISABLED=true
unset AWS_REGION AWS_DEFAULT_REGION AWS_PROFILE
# Every scan in the tests decodes embeddings twice (this crate's decoder and parquet-rs's) and
# fails on any difference: each table the tests read checks the decoder.
export SALES_HISTORY_EMBEDDING_DECODE=verify
step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "python venv"
SALES_HISTORY_PYTHON="$(bash scripts/venv.sh | tail -n 1)"
export SALES_HISTORY_PYTHON
"$SALES_HISTORY_PYTHON" -c 'import pyiceberg, pyarrow; print("pyiceberg", pyiceberg.__version__, "pyarrow", pyarrow.__version__)'

step "emulator self-test (moto Glue+S3, VersionId compare-and-swap)"
"$SALES_HISTORY_PYTHON" python/moto_selftest.py
"$SALES_HISTORY_PYTHON" python/fault_proxy_selftest.py

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --all-targets --all-features -- -D warnings

step "cargo doc -D warnings (intra-doc links)"
RUSTDOCFLAGS="-D warnings" cargo doc --all-features --no-deps --quiet

step "cargo test (unit, integration, doc; with the python-tests feature)"
log="$(mktemp)"
cargo test --all-features 2>&1 | tee "$log"
# The suites behind the `python-tests` feature must have run, not been compiled out.
for t in glue::ensure_append_scan_reopen_on_glue interop::pyiceberg_reads_exactly_our_rows \
         adopt::athena_tables_on_the_local_catalog_are_adopted adopt::athena_tables_on_glue_are_adopted \
         soak::soak_with_random_faults_loses_and_duplicates_nothing sql_queries::the_twelve_queries_match_duckdb \
         faults::storage_faults_on_glue_and_s3 concurrency::eight_writers_on_glue \
         ingest::killed_mid_stream_and_restarted_every_event_lands_once_on_glue \
         ingest::killed_mid_stream_and_restarted_from_a_two_shard_kinesis_stream \
         service::replicas_starting_together_on_a_new_stage_all_succeed_on_glue \
         service::replicas_starting_together_on_a_new_stage_all_succeed_on_s3_tables \
         s3tables::ensure_append_scan_time_travel_verify_on_s3_tables s3tables::eight_writers_on_s3_tables \
         s3tables::the_emulator_refuses_a_stale_version_token s3tables::s3_tables_iam_policy_covers_exactly_what_the_crate_calls \
         s3tables::failed_writes_on_s3_tables_never_delete s3tables::the_tools_run_on_s3_tables \
         s3tables::compaction_and_delete_where_on_s3_tables \
         rewrite::pyiceberg_reads_and_appends_after_compaction_and_delete \
         rewrite::on_glue::compaction_and_delete_on_glue_keep_athena_fields_and_peers \
         rewrite::on_glue::appends_and_compactions_race_on_glue_without_losing_a_row \
         rewrite::on_glue::faults_at_each_step_of_the_rewrite_commit \
         rewrite::lost_append_races_leave_no_metadata_files_on_glue \
         tenant::scoped_sql_is_a_view_of_the_tenant_and_nothing_else \
         commit_faults::faults_below_the_swap_on_glue commit_faults::faults_below_the_swap_on_s3_tables \
         longevity::pyiceberg_reads_merged_manifests_and_appends_after_them \
         longevity::an_appender_and_the_maintainer_share_a_glue_table \
         longevity::an_adopted_pyiceberg_table_with_merging_disabled_keeps_one_manifest_per_commit; do
    grep -q "^test $t \.\.\. ok$" "$log" || { echo "gated suite did not run: $t" >&2; exit 1; }
done
echo "gated python-tests suites ran"
rm -f "$log"

step "quickstart on a scratch warehouse, read back by pyiceberg"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cargo run --quiet --all-features --example quickstart -- --warehouse "$scratch/warehouse" --rows 2000
"$SALES_HISTORY_PYTHON" python/pyiceberg_check.py read --warehouse "$scratch/warehouse" \
    --namespace pricing_intelligence_dev --no-rows > "$scratch/read.json"
"$SALES_HISTORY_PYTHON" - "$scratch/read.json" <<'PY'
import json, sys
got = json.load(open(sys.argv[1]))
assert got["row_count"] == 2000, got["row_count"]
assert got["codecs"] == ["SNAPPY"], got["codecs"]
assert [f["transform"] for f in got["partition_spec"]] == ["month"], got["partition_spec"]
assert [f["name"] for f in got["schema"]][:2] == ["product_id", "tenant_id"]
print("pyiceberg read the quickstart table: 2000 rows, month(sold_date), SNAPPY")
PY
step "done"

//! The seed's tools as example binaries, run on small data with their output checked: their
//! command lines (generated help, typed values, usage errors), readable errors, read-only tools
//! that create nothing, and (with the emulator) the tools on Glue and the IAM policy checked
//! against what the crate really calls (moto's request recorder).

use std::path::Path;
use std::process::{Command, Output};

use sales_history::{CatalogConfig, SalesHistory, TableOptions};

use crate::support::{sample, tree};

fn run(name: &str, args: &[&str]) -> (i32, String, String) {
    run_with_env(name, args, &[])
}

/// Runs an example binary with extra environment variables; (exit code, stdout, stderr).
fn run_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out: Output = Command::new(crate::support::example(name))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run example");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn create_load_verify_on_the_local_default() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let wh = wh.to_str().unwrap();

    // Dry run on nothing: says what it would do, creates nothing.
    let (code, out, err) = run(
        "create_schema",
        &["--dry-run", "--warehouse", wh, "--stage", "ex"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would create database pricing_intelligence_ex"),
        "{out}"
    );
    assert!(!Path::new(wh).exists(), "dry run created the warehouse");

    // Create twice: the second is a no-op.
    let (code, out, err) = run(
        "create_schema",
        &[
            "--warehouse",
            wh,
            "--stage",
            "ex",
            "--embedding-dimension",
            "8",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created"), "{out}");
    assert!(out.contains("Parquet + snappy"), "{out}");
    let price_line = out
        .lines()
        .find(|l| l.contains("sold_price"))
        .unwrap_or_default();
    assert!(
        price_line.contains("decimal(10,2)") && price_line.trim_end().ends_with("yes"),
        "{out}"
    );
    let before = tree(Path::new(wh));
    let (code, out, _) = run(
        "create_schema",
        &["--warehouse", wh, "--stage", "ex", "--codec", "zstd"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("exists (unchanged)"), "{out}");
    assert!(
        out.contains("exists with codec snappy; --codec zstd-3 applies to new tables only"),
        "{out}"
    );
    assert_eq!(tree(Path::new(wh)), before);

    // Load 300 rows in 3 batches, then again with the same commit id: nothing appended twice.
    let load = [
        "--warehouse",
        wh,
        "--stage",
        "ex",
        "--num-records",
        "300",
        "--batch-size",
        "100",
        "--commit-id",
        "sample-1",
        "--quiet",
    ];
    let (code, out, err) = run("load_sample_sales_data", &load);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("loaded 300 rows") && out.contains("3 snapshots"),
        "{out}"
    );
    let (code, out, _) = run("load_sample_sales_data", &load);
    assert_eq!(code, 0);
    assert!(
        out.contains("loaded 0 rows") && out.contains("300 rows already committed"),
        "{out}"
    );

    // Verify passes and reports the rows.
    let (code, out, err) = run(
        "verify_table",
        &["--warehouse", wh, "--stage", "ex", "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["rows"], 300);
    assert_eq!(report["passed"], true);
    let months: u64 = report["rows_per_month"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(months, 300);

    // Comparable sales of a stored sale.
    let (code, out, err) = run(
        "similar_sales",
        &[
            "--warehouse",
            wh,
            "--stage",
            "ex",
            "--k",
            "5",
            "--metric",
            "cosine",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("5 nearest sales to sale "), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("    ") || l.starts_with("  "))
            .count(),
        5,
        "{out}"
    );
    assert!(out.contains("comparable prices: median"), "{out}");

    // Remove one data file: verify fails with the data-files check.
    let victim = tree(Path::new(wh))
        .into_iter()
        .find(|(p, _)| p.ends_with(".parquet"))
        .expect("a data file");
    std::fs::remove_file(Path::new(wh).join(&victim.0)).unwrap();
    let (code, out, _) = run("verify_table", &["--warehouse", wh, "--stage", "ex"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.lines().any(|l| l.contains("✗ data files")), "{out}");
}

#[test]
fn iam_policy_prints_json_and_rejects_bad_input() {
    let (code, out, err) = run(
        "iam_policy",
        &[
            "--account",
            "123456789012",
            "--bucket",
            "analytics",
            "--prefix",
            "iceberg",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("policy JSON");
    assert_eq!(doc["Version"], "2012-10-17");
    let actions: Vec<&str> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["Action"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
        })
        .collect();
    assert!(
        actions
            .iter()
            .all(|a| a.starts_with("glue:") || a.starts_with("s3:"))
    );
    assert!(
        !actions
            .iter()
            .any(|a| a.contains('*') || a.starts_with("athena:"))
    );
    let (code, _, err) = run("iam_policy", &["--bucket", "analytics"]);
    assert_eq!(code, 2);
    assert!(err.contains("--account"), "{err}");
    let (code, _, err) = run("iam_policy", &["--account", "12", "--bucket", "analytics"]);
    assert_eq!(code, 2);
    assert!(err.contains("account"), "{err}");
}

/// Every tool with a `--help` generated from its flags; the catalog flags are the same in all
/// the tools that open the table.
#[test]
fn help_is_generated_and_lists_the_shared_flags() {
    let (code, out, err) = run("load_sample_sales_data", &["--help"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Usage: load_sample_sales_data [OPTIONS]"),
        "{out}"
    );
    for flag in [
        "--num-records <N>",
        "--batch-size <N>",
        "--tenants <N>",
        "--months <N>",
        "--seed <N>",
        "--commit-id <ID>",
        "--quiet",
        "--warehouse <DIR>",
        "--catalog <URI>",
        "--stage <STAGE>",
        "[default: dev]",
        "SALES_HISTORY_CATALOG",
    ] {
        assert!(out.contains(flag), "{flag} missing from:\n{out}");
    }

    let mut with_catalog = vec![
        "create_schema",
        "load_sample_sales_data",
        "quickstart",
        "verify_table",
        "similar_sales",
        "maintain",
        "bench_similar",
    ];
    if cfg!(feature = "sql") {
        with_catalog.push("run_queries");
    }
    for tool in with_catalog {
        let (code, out, err) = run(tool, &["--help"]);
        assert_eq!(code, 0, "{tool}: {err}");
        assert!(out.contains(&format!("Usage: {tool}")), "{tool}: {out}");
        for flag in ["--warehouse <DIR>", "--catalog <URI>", "--stage <STAGE>"] {
            assert!(out.contains(flag), "{tool}: {flag} missing from:\n{out}");
        }
    }
    for tool in [
        "iam_policy",
        "bench_scan",
        "bench_write",
        "bench_scan_memory",
        "bench_vector",
    ] {
        let (code, out, err) = run(tool, &["--help"]);
        assert_eq!(code, 0, "{tool}: {err}");
        assert!(out.contains(&format!("Usage: {tool}")), "{tool}: {out}");
    }
}

/// Examples Cargo builds only with a feature (`required-features` in Cargo.toml): whether this
/// build has it.
const EXAMPLE_FEATURES: &[(&str, bool)] = &[("run_queries", cfg!(feature = "sql"))];

/// The example binaries Cargo discovers: `examples/NAME.rs` and `examples/NAME/main.rs`.
fn example_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("read examples/")
        .map(|e| e.expect("examples/ entry").path())
        .filter_map(|p| {
            let single = p.extension().is_some_and(|x| x == "rs");
            let directory = p.join("main.rs").is_file();
            (single || directory)
                .then(|| p.file_stem()?.to_str().map(String::from))
                .flatten()
        })
        .collect();
    names.sort();
    names
}

/// `--help` of every example: exit 0, the usage on stdout, nothing on stderr, and nothing run:
/// no file appears in the working directory or in `$TMPDIR` (both empty scratch directories).
#[test]
fn every_example_prints_help_and_runs_nothing() {
    let names = example_names();
    for expected in ["bench_pages", "bench_stream", "quickstart", "iam_policy"] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    let scratch = tempfile::tempdir().unwrap();
    let (cwd, tmp) = (scratch.path().join("cwd"), scratch.path().join("tmp"));
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    for name in &names {
        let built = EXAMPLE_FEATURES
            .iter()
            .find(|(n, _)| n == name)
            .is_none_or(|(_, on)| *on);
        if !built {
            continue;
        }
        let out = Command::new(crate::support::example(name))
            .arg("--help")
            .current_dir(&cwd)
            .env("TMPDIR", &tmp)
            .output()
            .expect("run example");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name} --help: {stdout}{stderr}"
        );
        assert!(
            stdout.contains(&format!("Usage: {name}")),
            "{name} --help:\n{stdout}"
        );
        assert!(
            stderr.is_empty(),
            "{name} --help wrote to stderr:\n{stderr}"
        );
        for d in [&cwd, &tmp] {
            let left: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            assert!(left.is_empty(), "{name} --help created {left:?}");
        }
    }
}

/// A bad value is a usage error: exit status 2 and a message naming the flag, before anything
/// is touched.
#[test]
fn bad_values_are_usage_errors_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let wh = wh.to_str().unwrap();
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "load_sample_sales_data",
            &["--num-records", "abc"],
            &["--num-records", "`abc` is not a whole number"],
        ),
        (
            "load_sample_sales_data",
            &["--batch-size", "0"],
            &["--batch-size", "at least 1"],
        ),
        ("quickstart", &["--rows", "-5"], &["-5"]),
        (
            "maintain",
            &["--expire-older-than", "5x"],
            &["--expire-older-than", "`x` in `5x` is not a unit"],
        ),
        (
            "maintain",
            &["--remove-orphans", "--orphans-older-than", "90"],
            &["--orphans-older-than", "`90` has no unit"],
        ),
        (
            "maintain",
            &["--dry-run"],
            &["--expire-older-than", "--keep-last", "--remove-orphans"],
        ),
        (
            "similar_sales",
            &["--metric", "cosin"],
            &["--metric", "cosine"],
        ),
        (
            "similar_sales",
            &["--month", "2025-13"],
            &["--month", "YYYY-MM"],
        ),
        (
            "verify_table",
            &["--stage", "Prod"],
            &["--stage", "lowercase"],
        ),
        (
            "create_schema",
            &["--catalog", "file:///tmp/x"],
            &["--warehouse", "--catalog", "cannot be used with"],
        ),
        ("verify_table", &["--jsn"], &["--jsn"]),
        (
            "create_schema",
            &["--partitioning", "bucket0-month"],
            &["--partitioning", "bucket count 0"],
        ),
        (
            "create_schema",
            &["--codec", "zstd-30"],
            &["--codec", "zstd level 30 is not within 1..=22"],
        ),
        (
            "maintain",
            &["--evolve-to", "tenant-first"],
            &["--evolve-to", "unknown layout"],
        ),
        (
            "maintain",
            &["--migrate-month", "2024-13"],
            &["--migrate-month", "YYYY-MM"],
        ),
        (
            "iam_policy",
            &["--account", "12", "--bucket", "analytics"],
            &["account", "12-digit"],
        ),
        (
            "bench_scan",
            &["--embedding-encoding", "rle"],
            &["--embedding-encoding", "`rle` is not an embedding encoding"],
        ),
        (
            "bench_write",
            &["--embedding-encoding", "delta"],
            &[
                "--embedding-encoding",
                "`delta` is not an embedding encoding",
            ],
        ),
    ];
    for (tool, extra, expected) in cases {
        let mut args = vec!["--warehouse", wh];
        args.extend_from_slice(extra);
        if matches!(*tool, "iam_policy" | "bench_scan" | "bench_write") {
            args.drain(..2);
        }
        let (code, out, err) = run(tool, &args);
        assert_eq!(code, 2, "{tool} {args:?}: {out}{err}");
        assert!(err.starts_with("error: "), "{tool} {args:?}: {err}");
        for e in *expected {
            assert!(
                err.contains(e),
                "{tool} {args:?}: `{e}` missing from:\n{err}"
            );
        }
        assert!(out.is_empty(), "{tool} {args:?}: {out}");
        assert!(!Path::new(wh).exists(), "{tool} {args:?} created {wh}");
    }
    // The catalog string from the environment is read only when no flag names the catalog,
    // and a malformed one is a usage error too.
    let (code, _, err) = run_with_env(
        "verify_table",
        &["--warehouse", wh],
        &[("SALES_HISTORY_CATALOG", "nosuch://x")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("SALES_HISTORY_CATALOG"), "{err}");
    assert!(!Path::new(wh).exists());
    let (code, _, err) = run_with_env(
        "verify_table",
        &[],
        &[("SALES_HISTORY_CATALOG", "nosuch://x")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("SALES_HISTORY_CATALOG") && err.contains("unknown scheme"),
        "{err}"
    );
}

/// Pointed at a mistyped warehouse, the tools that only read say there is no catalog there, in
/// one readable line (no Debug dump, no backtrace even when asked for), exit 1, and leave the
/// disk as it was. So does `--catalog` and `SALES_HISTORY_CATALOG` naming a local directory.
#[test]
fn read_only_tools_create_nothing_and_fail_readably() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("warehuose");
    let typo_s = typo.to_str().unwrap();
    let backtraces = [("RUST_BACKTRACE", "1"), ("RUST_LIB_BACKTRACE", "1")];
    let mut runs: Vec<(&str, Vec<&str>)> = vec![
        ("verify_table", vec!["--warehouse", typo_s]),
        ("verify_table", vec!["--warehouse", typo_s, "--json"]),
        ("verify_table", vec!["--catalog", typo_s, "--stage", "prod"]),
        ("similar_sales", vec!["--warehouse", typo_s, "--k", "3"]),
        ("maintain", vec!["--warehouse", typo_s, "--keep-last", "1"]),
        (
            "maintain",
            vec!["--warehouse", typo_s, "--remove-orphans", "--dry-run"],
        ),
    ];
    if cfg!(feature = "sql") {
        runs.push(("run_queries", vec!["--warehouse", typo_s, "1"]));
    }
    for (tool, args) in &runs {
        let (code, out, err) = run_with_env(tool, args, &backtraces);
        assert_eq!(code, 1, "{tool} {args:?}: {out}{err}");
        assert_readable(tool, &err);
        assert!(
            err.contains(typo_s),
            "{tool}: the message names the directory: {err}"
        );
        assert!(!typo.exists(), "{tool} {args:?} created {typo_s}");
    }
    // The same through the environment, and with the flag winning over the environment.
    let env_typo = dir.path().join("from-env");
    let env_s = env_typo.to_str().unwrap();
    let (code, _, err) = run_with_env("verify_table", &[], &[("SALES_HISTORY_CATALOG", env_s)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(env_s), "{err}");
    let (code, _, err) = run_with_env(
        "verify_table",
        &["--warehouse", typo_s],
        &[("SALES_HISTORY_CATALOG", env_s)],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(typo_s) && !err.contains(env_s), "{err}");
    assert!(!typo.exists() && !env_typo.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `error: <message>` then one `  caused by: …` line per source: no Debug of our error or of
/// iceberg's types, no backtrace, no panic.
fn assert_readable(tool: &str, err: &str) {
    assert!(err.starts_with("error: "), "{tool}: {err}");
    for line in err.lines().skip(1) {
        assert!(line.starts_with("  caused by: "), "{tool}: {err}");
    }
    for dump in [
        "Error {",
        "TableIdent {",
        "NamespaceIdent",
        "Backtrace",
        "stack backtrace",
        "panicked",
        "Config {",
    ] {
        assert!(!err.contains(dump), "{tool}: `{dump}` in:\n{err}");
    }
}

/// The quickstart as `scripts/test.sh` runs it.
#[test]
fn quickstart_on_a_fresh_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("warehouse");
    let (code, out, err) = run(
        "quickstart",
        &["--warehouse", wh.to_str().unwrap(), "--rows", "300"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("table     pricing_intelligence_dev.sales_history at file://"),
        "{out}"
    );
    assert!(out.contains("appended  300 rows"), "{out}");
    assert!(out.contains("table holds 300 rows, 1 snapshots"), "{out}");
}

/// `maintain`: expiry by count and age, orphan removal guarded by age, dry runs that change
/// nothing; and a runtime error with a cause, printed as a chain.
#[tokio::test]
async fn maintain_expires_snapshots_and_removes_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let config = CatalogConfig::local(&wh);
    let table = SalesHistory::ensure_with(
        &config,
        "mx",
        TableOptions::default().embedding_dimension(8),
    )
    .await
    .expect("create");
    for seed in 1..=3 {
        table.append(sample(50, 8, seed)).await.expect("append");
    }
    drop(table);
    let wh_s = wh.to_str().unwrap();
    let maintain = |extra: &[&str]| {
        let mut args = vec!["--warehouse", wh_s, "--stage", "mx"];
        args.extend_from_slice(extra);
        run("maintain", &args)
    };

    // Dry runs: say what they would do, change nothing.
    let data_dir = wh.join("pricing_intelligence_mx.db/sales_history/data");
    let orphan = data_dir.join("left-by-a-crash.parquet");
    std::fs::write(&orphan, b"not referenced by any snapshot").unwrap();
    let before = tree(&wh);
    let (code, out, err) = maintain(&["--keep-last", "1", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("table     pricing_intelligence_mx.sales_history"),
        "{out}"
    );
    assert!(
        out.contains("snapshots would expire 2 of 3 (keeping the last 1)"),
        "{out}"
    );
    let (code, out, err) = maintain(&[
        "--expire-older-than",
        "1h30m",
        "--remove-orphans",
        "--orphans-older-than",
        "0s",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would expire 0 of 3 (older than 90m, keeping the last 1)"),
        "{out}"
    );
    assert!(
        out.contains("orphans   would delete 1 file older than 0s"),
        "{out}"
    );
    assert!(out.contains("left-by-a-crash.parquet"), "{out}");
    assert_eq!(tree(&wh), before);

    // The default age (1d) protects a fresh file: it may belong to an append in flight.
    let (code, out, err) = maintain(&["--remove-orphans"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("orphans   deleted 0 files older than 1d"),
        "{out}"
    );
    assert!(orphan.exists());

    // For real.
    let (code, out, err) = maintain(&[
        "--keep-last",
        "1",
        "--remove-orphans",
        "--orphans-older-than",
        "0s",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("snapshots expired 2 of 3 (keeping the last 1), deleted"),
        "{out}"
    );
    assert!(
        out.contains("orphans   deleted 1 file older than 0s"),
        "{out}"
    );
    assert!(!orphan.exists());
    let (code, out, err) = run(
        "verify_table",
        &["--warehouse", wh_s, "--stage", "mx", "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["rows"], 150);

    // A runtime error with a cause: the chain, one line each, exit 1.
    let missing = dir.path().join("query.json");
    let (code, out, err) = run(
        "similar_sales",
        &[
            "--warehouse",
            wh_s,
            "--stage",
            "mx",
            "--vector-file",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_readable("similar_sales", &err);
    assert!(
        err.starts_with(&format!(
            "error: cannot read --vector-file {}\n  caused by: ",
            missing.display()
        )),
        "{err}"
    );
}

/// The tools and the IAM policy on the Glue + S3 emulator.
#[cfg(all(feature = "python-tests", feature = "glue"))]
mod on_glue {
    use std::collections::BTreeSet;

    use sales_history::iam::{GLUE_ACTIONS, PolicyScope, S3_ACTIONS, S3_BUCKET_ACTIONS, policy};
    use sales_history::{CatalogConfig, SalesHistory};

    use super::run_with_env;
    use crate::moto::Moto;
    use crate::support::sample;

    /// The whole workflow on the emulator (create, load, scan, verify, expire, look for orphans)
    /// with moto's request recorder on: every AWS action called is in the policy, and every action
    /// in the policy is called.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn iam_policy_covers_exactly_what_the_crate_calls() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("requests.jsonl");
        let moto = Moto::start(&["--record", record.to_str().unwrap()]);
        moto.create_bucket("iam-bucket");
        let setup_lines = std::fs::read_to_string(&record)
            .unwrap_or_default()
            .lines()
            .count();

        let config: CatalogConfig = moto.glue_config("iam-bucket").into();
        let table = SalesHistory::ensure_with(
            &config,
            "iam",
            sales_history::TableOptions::default().embedding_dimension(8),
        )
        .await
        .expect("create");
        table.append(sample(50, 8, 1)).await.expect("load");
        assert_eq!(
            table
                .scan()
                .tenant("tenant-001")
                .to_records()
                .await
                .expect("scan")
                .len() as u64,
            table.scan().tenant("tenant-001").count().await.unwrap()
        );
        table.append(sample(10, 8, 2)).await.expect("second load");
        let report = SalesHistory::verify(&config, "iam").await.expect("verify");
        assert!(report.passed(), "{report}");
        // Maintenance: expire the first snapshot (deletes its manifest list), look for orphans.
        let expired = table
            .expire_snapshots()
            .retain_last(1)
            .any_age()
            .await
            .expect("expire");
        assert_eq!(expired.expired_snapshots.len(), 1);
        assert!(!expired.deleted_files.is_empty());
        let orphans = table
            .remove_orphan_files()
            .older_than(chrono::Utc::now())
            .dry_run()
            .await
            .expect("orphans");
        assert!(
            orphans.deleted_files.is_empty(),
            "{:?}",
            orphans.deleted_files
        );

        let text = std::fs::read_to_string(&record).expect("recorded requests");
        let called: BTreeSet<String> = text
            .lines()
            .skip(setup_lines)
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["action"].as_str().map(str::to_string))
            .collect();
        let doc = policy(&PolicyScope::new(
            "iam",
            crate::moto::REGION,
            "123456789012",
            "iam-bucket",
            "warehouse",
        ))
        .unwrap();
        let granted: BTreeSet<String> = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| {
                s["Action"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
            })
            .collect();
        let not_granted: Vec<&String> = called.difference(&granted).collect();
        assert!(
            not_granted.is_empty(),
            "called but not in the policy: {not_granted:?}"
        );
        let unused: Vec<&String> = granted.difference(&called).collect();
        assert!(
            unused.is_empty(),
            "in the policy but never called: {unused:?}"
        );
        assert_eq!(
            granted.len(),
            GLUE_ACTIONS.len() + S3_ACTIONS.len() + S3_BUCKET_ACTIONS.len()
        );
        println!("AWS actions called by the workflow: {called:?}");
    }

    /// The tools on Glue + S3, each in a fresh process with credentials from the standard AWS chain
    /// (environment variables): create, load, reopen and verify (including the Athena fields).
    #[test]
    fn tools_on_glue_in_fresh_processes() {
        let moto = crate::moto::moto();
        moto.create_bucket("tools-bucket");
        let uri = format!(
            "glue://?region={}&warehouse=s3://tools-bucket/wh&glue_endpoint={}&s3_endpoint={}",
            crate::moto::REGION,
            moto.endpoint(),
            moto.endpoint()
        );
        // Credentials from the standard AWS chain: environment variables.
        let env = [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret-key"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        let call = |name: &str, extra: &[&str]| {
            let mut args = vec!["--catalog", uri.as_str(), "--stage", "tools"];
            args.extend_from_slice(extra);
            run_with_env(name, &args, &env)
        };

        let (code, out, err) = call("create_schema", &["--embedding-dimension", "8"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("created")
                && out.contains("s3://tools-bucket/wh/pricing_intelligence_tools.db/sales_history"),
            "{out}"
        );
        let (code, out, err) = call(
            "load_sample_sales_data",
            &["--num-records", "120", "--batch-size", "60", "--quiet"],
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("loaded 120 rows") && out.contains("2 snapshots"),
            "{out}"
        );
        let (code, out, err) = call("verify_table", &["--json"]);
        assert_eq!(code, 0, "{out}{err}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(report["rows"], 120);
        let names: Vec<&str> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"glue/athena"), "{names:?}");
        assert_eq!(report["passed"], true, "{out}");
    }
}

/// `maintain --compact` and `--delete-tenant` (the erasure with expiry and orphan removal):
/// dry runs change nothing, the real runs print what they did, no file keeps the tenant.
#[tokio::test]
async fn maintain_compacts_and_erases_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let config = CatalogConfig::local(&wh);
    let table = SalesHistory::ensure_with(
        &config,
        "mc",
        TableOptions::default().embedding_dimension(8),
    )
    .await
    .expect("create");
    for seed in 1..=6 {
        table.append(sample(20, 8, seed)).await.expect("append");
    }
    let tenant = table.scan().to_records().await.unwrap()[0]
        .tenant_id
        .clone();
    let of_tenant = table.scan().tenant(tenant.clone()).count().await.unwrap();
    assert!(of_tenant > 0);
    let wh_s = wh.to_str().unwrap();
    let maintain = |extra: &[&str]| {
        let mut args = vec!["--warehouse", wh_s, "--stage", "mc"];
        args.extend_from_slice(extra);
        run("maintain", &args)
    };

    let before = tree(&wh);
    let (code, out, err) = maintain(&["--compact", "--delete-tenant", &tenant, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "tenant    would delete {of_tenant} rows of `{tenant}`"
        )),
        "{out}"
    );
    assert!(out.contains("compact   would rewrite"), "{out}");
    assert_eq!(tree(&wh), before, "dry runs change nothing");

    let (code, out, err) = maintain(&["--compact"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("rows,") && out.contains("`replace` snapshot"),
        "{out}"
    );

    let (code, out, err) = maintain(&[
        "--delete-tenant",
        &tenant,
        "--expire-older-than",
        "0s",
        "--remove-orphans",
        "--orphans-older-than",
        "0s",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("tenant    deleted {of_tenant} rows of `{tenant}`")),
        "{out}"
    );
    assert!(out.contains("snapshots expired"), "{out}");
    table.refresh().await.unwrap();
    assert_eq!(table.scan().count().await.unwrap(), 120 - of_tenant);
    // Every Parquet file left is read: none holds the tenant.
    for (rel, _) in tree(&wh) {
        if !rel.ends_with(".parquet") {
            continue;
        }
        let file = std::fs::File::open(wh.join(&rel)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col = batch.column_by_name("tenant_id").unwrap();
            let col = arrow_cast::cast(col, &arrow_schema::DataType::Utf8).unwrap();
            use arrow_array::cast::AsArray;
            assert!(
                col.as_string::<i32>().iter().flatten().all(|t| t != tenant),
                "{rel} still holds `{tenant}`"
            );
        }
    }
}

/// `bench_soak`, small: our merging and non-merging variants side by side (merging from 10
/// manifests on), JSON rows at every checkpoint, fewer manifests with merging, and nothing
/// left in `--dir`.
#[test]
fn bench_soak_merges_manifests_and_prints_json_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(
        "bench_soak",
        &[
            "--commits",
            "60",
            "--every",
            "30",
            "--variants",
            "merge,nomerge",
            "--min-count-to-merge",
            "10",
            "--dim",
            "16",
            "--reps",
            "1",
            "--json",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    let rows = doc["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4, "{out}");
    let last = |variant: &str| {
        rows.iter()
            .find(|r| r["variant"] == variant && r["commits"] == 60)
            .unwrap_or_else(|| panic!("no row of {variant} at 60 commits: {out}"))
    };
    let (merge, nomerge) = (last("merge"), last("nomerge"));
    assert_eq!(nomerge["manifests"], 60, "{out}");
    assert!(
        merge["manifests"].as_u64().unwrap() < 60,
        "merging left as many manifests: {out}"
    );
    for r in [merge, nomerge] {
        assert_eq!(r["live_data_files"], 60, "{out}");
        assert!(r["metadata_json_bytes"].as_u64().unwrap() > 0, "{out}");
        // The first plan (manifests from storage) and the median of the rest, both timed.
        assert!(r["plan_first_ms"].as_f64().unwrap() > 0.0, "{out}");
        assert!(r["plan_ms"].as_f64().unwrap() > 0.0, "{out}");
    }
    let targets = doc["targets"].as_array().expect("targets");
    for name in ["merge: plan", "merge: first plan"] {
        assert!(
            targets.iter().any(
                |t| t["target"].as_str().unwrap().starts_with(name) && t["verdict"].is_string()
            ),
            "no `{name}` target: {out}"
        );
    }
    assert!(
        doc["filesystem"].as_str().is_some_and(|f| !f.is_empty()),
        "{out}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The short soak of `.ci/run`: 1,500 commits with the maintenance task beside the writer
/// (small embeddings, a tight snapshot cap) next to a merging-off variant stopped at 300. The
/// task's table stays bounded — snapshots at the cap, few live files and manifests, a
/// metadata directory far below the merging-off table's at a fifth of the commits — its
/// maintainer rarely lost a run to the writer, and the same rows are counted in both tables where both ran.
#[test]
fn bench_soak_short_soak_keeps_the_task_table_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(
        "bench_soak",
        &[
            "--commits",
            "1500",
            "--every",
            "300",
            "--variants",
            "task,nomerge",
            "--stop-after",
            "nomerge=300",
            "--rows",
            "5",
            "--dim",
            "16",
            "--reps",
            "1",
            "--maintain-every",
            "1s",
            "--maintain-after-commits",
            "100",
            "--max-snapshots",
            "50",
            "--orphans-older-than",
            "10s",
            "--orphans-every",
            "5s",
            "--json",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    let rows = doc["rows"].as_array().expect("rows");
    let row = |variant: &str, commits: u64| {
        rows.iter()
            .find(|r| r["variant"] == variant && r["commits"] == commits)
            .unwrap_or_else(|| panic!("no row of {variant} at {commits} commits: {out}"))
    };
    // --stop-after: the merging-off variant has one checkpoint, the task five.
    assert_eq!(
        rows.iter().filter(|r| r["variant"] == "nomerge").count(),
        1,
        "{out}"
    );
    assert_eq!(
        rows.iter().filter(|r| r["variant"] == "task").count(),
        5,
        "{out}"
    );
    let (task_300, nomerge_300) = (row("task", 300), row("nomerge", 300));
    assert_eq!(task_300["count_rows"], nomerge_300["count_rows"], "{out}");
    assert_eq!(nomerge_300["manifests"], 300, "{out}");
    let last = row("task", 1500);
    let n = |key: &str| last[key].as_u64().unwrap_or_else(|| panic!("{key}: {out}"));
    // At most the cap plus the commits of one `after_commits` period (a run may have been
    // under way when the checkpoint asked for one).
    assert!(
        n("snapshots") <= 50 + 100 + 20,
        "snapshots above the cap: {out}"
    );
    assert!(n("live_data_files") <= 100, "compaction fell behind: {out}");
    assert!(n("manifests") <= 200, "{out}");
    assert!(
        n("metadata_bytes") < nomerge_300["metadata_bytes"].as_u64().unwrap(),
        "the task's metadata after 1,500 commits outgrew the merging-off table's at 300: {out}"
    );
    let m = &last["maintainer"];
    // The writer commits back to back here (no pause, a debug build): a run may lose all its
    // retries to it and report the conflict; the next run makes the progress.
    let (runs, failed) = (
        m["runs"].as_u64().unwrap(),
        m["failed_runs"].as_u64().unwrap(),
    );
    assert!(failed * 4 <= runs, "{failed} of {runs} runs failed: {out}");
    assert!(m["compactions"].as_u64().unwrap() >= 5, "{out}");
    // Every commit's snapshot is either still in the table or was expired by the task.
    let expired = m["snapshots_expired"].as_u64().unwrap();
    assert!(expired + n("snapshots") >= 1500, "{out}");
    assert!(expired >= 1500 - (50 + 100 + 20), "{out}");
    // The commits of each checkpoint window are split by whether a maintenance run overlapped
    // them: runs happened, so some did, and never more than the window's 300.
    let during: u64 = rows
        .iter()
        .filter(|r| r["variant"] == "task")
        .map(|r| r["commits_during_runs"].as_u64().unwrap())
        .sum();
    assert!((1..=1500).contains(&during), "{out}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `bench_layout`, small: the three layouts return the same rows (the tool checks), a tenant
/// query on the tenant layout opens one file per month, and a tenant erasure rewrites nothing
/// on the tenant layout and on the migrated month table (but does on the month layout).
#[test]
fn bench_layout_compares_layouts_and_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(
        "bench_layout",
        &[
            "--rows",
            "2400",
            "--months",
            "4",
            "--tenants",
            "12",
            "--dim",
            "16",
            "--buckets",
            "4",
            "--reps",
            "1",
            "--fast-reps",
            "1",
            "--dir",
            dir.path().to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let layouts = v["layouts"].as_array().expect("layouts");
    let names: Vec<&str> = layouts
        .iter()
        .filter_map(|l| l["layout"].as_str())
        .collect();
    assert_eq!(names, ["month", "tenant-month", "bucket4-month"]);
    let q = |i: usize, query: &str, field: &str| layouts[i]["queries"][query][field].as_u64();
    assert_eq!(q(1, "tenant, all months", "files_read"), Some(4), "{v}");
    assert!(q(0, "full scan", "rows") == Some(2400), "{v}");
    assert_eq!(layouts[1]["erasure"]["bytes_rewritten"], 0, "{v}");
    assert!(
        layouts[0]["erasure"]["bytes_rewritten"].as_u64() > Some(0),
        "{v}"
    );
    assert_eq!(v["erasure_after_migration"]["bytes_rewritten"], 0, "{v}");
    assert!(
        v["erasure_after_migration"]["rows"].as_u64() > Some(0),
        "{v}"
    );
    assert!(v["migration"]["files"].as_u64() > Some(0), "{v}");
}

/// `bench_vector` on a small table: the index is built, its recall against the exact answers
/// the benchmark computes is high, and it scores a part of the entries; no peers.
#[test]
fn bench_vector_measures_the_index_against_the_exact_search() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(
        "bench_vector",
        &[
            "--rows",
            "4000",
            "--dim",
            "64",
            "--tenants",
            "8",
            "--queries",
            "10",
            "--probes",
            "8",
            "--refine",
            "4",
            "--exact-runs",
            "1",
            "--warehouse",
            dir.path().to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["rows"], 4000, "{v}");
    assert_eq!(v["index"]["lists"], 63, "{v}");
    let ours = &v["ours"][0];
    assert!(ours["recall"].as_f64() >= Some(0.9), "{v}");
    assert!(ours["tenant_recall"].as_f64() >= Some(0.9), "{v}");
    assert!(ours["entries_scored_mean"].as_f64() < Some(4000.0), "{v}");
}

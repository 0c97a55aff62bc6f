//! The seed's tools as example binaries, run on small data with their output checked, and the
//! IAM policy checked against what the crate really calls (moto's request recorder).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

use sales_history::iam::{GLUE_ACTIONS, PolicyScope, S3_ACTIONS, S3_BUCKET_ACTIONS, policy};
use sales_history::{CatalogConfig, SalesHistory};

use crate::moto::Moto;
use crate::support::sample;

/// Path of an example binary (`cargo test` builds the examples next to the test binary).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built: run through `cargo test`",
        path.display()
    );
    path
}

fn run(name: &str, args: &[&str]) -> (i32, String, String) {
    run_with_env(name, args, &[])
}

/// Runs an example binary with extra environment variables; (exit code, stdout, stderr).
fn run_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out: Output = Command::new(example(name))
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
    assert!(
        !std::path::Path::new(wh).exists(),
        "dry run created the warehouse"
    );

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
    let price_line = out
        .lines()
        .find(|l| l.contains("sold_price"))
        .unwrap_or_default();
    assert!(
        price_line.contains("decimal(10,2)") && price_line.trim_end().ends_with("yes"),
        "{out}"
    );
    let before = crate::support::tree(std::path::Path::new(wh));
    let (code, out, _) = run("create_schema", &["--warehouse", wh, "--stage", "ex"]);
    assert_eq!(code, 0);
    assert!(out.contains("exists (unchanged)"), "{out}");
    assert_eq!(crate::support::tree(std::path::Path::new(wh)), before);

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
    let victim = crate::support::tree(std::path::Path::new(wh))
        .into_iter()
        .find(|(p, _)| p.ends_with(".parquet"))
        .expect("a data file");
    std::fs::remove_file(std::path::Path::new(wh).join(&victim.0)).unwrap();
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
        .expire_snapshots(sales_history::ExpireSnapshots::retain_last(1))
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

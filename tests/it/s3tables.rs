//! AWS S3 Tables behind the same API, on moto's S3 Tables (the server the Glue tests start):
//! the emulator's version-token compare-and-swap proven first, then a round trip, concurrent
//! writers, a real peer reading what we wrote, what S3 Tables forbids, and bad configuration.

use std::time::Duration;

use aws_sdk_s3tables::Client;
use sales_history::{
    AwsCredentials, CatalogConfig, Error, S3TablesConfig, SalesHistory, ScanFilter, TableOptions,
};

use crate::moto::moto;
use crate::support::{DIM, pyiceberg, sample};

async fn client() -> Client {
    Client::new(&moto().sdk_config().await)
}

/// A new table bucket on the emulator and the catalog config pointing at it.
async fn fresh(name: &str) -> S3TablesConfig {
    let out = client()
        .await
        .create_table_bucket()
        .name(name)
        .send()
        .await
        .expect("create table bucket");
    S3TablesConfig::new(out.arn())
        .endpoint(moto().endpoint())
        .s3_endpoint(moto().endpoint())
        .credentials(AwsCredentials::new("testing", "testing-secret-key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_refuses_a_stale_version_token() {
    let config = fresh("token-check").await;
    let c = client().await;
    let arn = config.table_bucket_arn.clone();
    c.create_namespace()
        .table_bucket_arn(&arn)
        .namespace("ns")
        .send()
        .await
        .unwrap();
    c.create_table()
        .table_bucket_arn(&arn)
        .namespace("ns")
        .name("t")
        .format(aws_sdk_s3tables::types::OpenTableFormat::Iceberg)
        .send()
        .await
        .unwrap();
    let got = c
        .get_table_metadata_location()
        .table_bucket_arn(&arn)
        .namespace("ns")
        .name("t")
        .send()
        .await
        .unwrap();
    let token = got.version_token().to_string();
    let warehouse = got.warehouse_location().to_string();
    let update = |loc: String, token: String| {
        c.update_table_metadata_location()
            .table_bucket_arn(&arn)
            .namespace("ns")
            .name("t")
            .version_token(token)
            .metadata_location(loc)
            .send()
    };
    update(
        format!("{warehouse}/metadata/00001.metadata.json"),
        token.clone(),
    )
    .await
    .expect("the current token is accepted");
    let stale = update(format!("{warehouse}/metadata/00002.metadata.json"), token).await;
    let err = stale.expect_err("a stale token must be refused");
    assert!(
        format!("{err:?}").contains("Conflict"),
        "expected ConflictException, got {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_append_scan_time_travel_verify_on_s3_tables() {
    let config: CatalogConfig = fresh("round-trip").await.into();
    let options = TableOptions::default().embedding_dimension(DIM);
    let table = SalesHistory::ensure_with(&config, "s3t", options)
        .await
        .expect("ensure on S3 Tables");
    assert!(
        table.location().starts_with("s3://"),
        "S3 Tables assigns the location: {}",
        table.location()
    );
    let mut all = Vec::new();
    let mut first_snapshot = None;
    for seed in 1..=3 {
        let rows = sample(20, DIM, seed);
        let out = table.append(rows.clone()).await.expect("append");
        first_snapshot.get_or_insert(out.committed().unwrap().snapshot_id);
        all.extend(rows);
    }
    let again = SalesHistory::ensure(&config, "s3t")
        .await
        .expect("idempotent");
    assert_eq!(again.scan().count().await.unwrap(), 60);
    let tenant = all[0].tenant_id.clone();
    let want = all.iter().filter(|r| r.tenant_id == tenant).count() as u64;
    let got = again
        .scan()
        .filter(ScanFilter::new().tenant(tenant.as_str()))
        .count()
        .await
        .unwrap();
    assert_eq!(got, want);
    let old = again
        .scan()
        .snapshot_id(first_snapshot.unwrap())
        .count()
        .await
        .unwrap();
    assert_eq!(old, 20, "time travel");
    let report = SalesHistory::verify(&config, "s3t").await.expect("verify");
    assert!(report.passed(), "{report}");

    // What S3 Tables does itself is refused with a typed error naming the alternative.
    for result in [
        again
            .expire_snapshots()
            .retain_last(1)
            .any_age()
            .await
            .map(|_| ()),
        again.remove_orphan_files().dry_run().await.map(|_| ()),
    ] {
        match result {
            Err(e @ Error::Unsupported { .. }) => {
                assert!(!e.is_retryable());
                assert!(e.to_string().contains("managed by S3 Tables"), "{e}");
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    // A real peer reads the table from the metadata location S3 Tables reports.
    let location = again
        .iceberg_table()
        .metadata_location()
        .expect("metadata location")
        .to_string();
    let mut args =
        crate::moto::pyiceberg_glue_args("read", "s3://unused", "pricing_intelligence_s3t");
    args.extend([
        "--metadata-location".to_string(),
        location,
        "--no-rows".to_string(),
    ]);
    let got = pyiceberg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(got["row_count"], 60);
    assert_eq!(got["codecs"], serde_json::json!(["SNAPPY"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_on_s3_tables() {
    let config: CatalogConfig = fresh("race-s3t").await.into();
    let stats = crate::concurrency::race(&config, "race_s3t").await;
    println!(
        "S3 Tables on moto: {} commits, {} conflicts retried, {} throttled",
        stats.commits, stats.conflicts, stats.throttled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_s3_tables_config_is_a_typed_error() {
    let key = |r: Result<CatalogConfig, Error>| match r {
        Err(Error::Config { key, .. }) => key,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(key("s3tables://?region=us-east-1".parse()), "arn");
    assert_eq!(
        key("s3tables://?arn=arn:aws:s3:::plain-bucket".parse()),
        "arn"
    );
    assert_eq!(
        key("s3tables://?arn=arn:aws:s3tables:us-east-1:123456789012:bucket/pricing&region=eu-west-1".parse()),
        "region"
    );
    assert_eq!(
        key(
            "s3tables://?arn=arn:aws:s3tables:us-east-1:123456789012:bucket/pricing&colour=red"
                .parse()
        ),
        "colour"
    );
    let parsed: CatalogConfig =
        "s3tables://?arn=arn:aws:s3tables:us-east-1:123456789012:bucket/pricing&endpoint=http://127.0.0.1:9"
            .parse()
            .unwrap();
    assert_eq!(parsed.to_string().parse::<CatalogConfig>().unwrap(), parsed);
    // An endpoint nobody answers on: retryable, typed, within a few seconds.
    let unreachable: CatalogConfig =
        S3TablesConfig::new("arn:aws:s3tables:us-east-1:123456789012:bucket/nowhere")
            .endpoint("http://127.0.0.1:9")
            .credentials(AwsCredentials::new("testing", "testing-secret-key"))
            .into();
    let started = std::time::Instant::now();
    let err = SalesHistory::ensure(&unreachable, "x")
        .await
        .expect_err("unreachable");
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// The workflow on S3 Tables with moto's request recorder on: every S3 Tables action called is
/// in the policy and every one in the policy is called; the table's data is only read and
/// written (GetTableData/PutTableData), never deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_tables_iam_policy_covers_exactly_what_the_crate_calls() {
    use std::collections::BTreeSet;

    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("requests.jsonl");
    let recorded = crate::moto::Moto::start(&["--record", record.to_str().unwrap()]);
    let arn = Client::new(&recorded.sdk_config().await)
        .create_table_bucket()
        .name("iam-s3t")
        .send()
        .await
        .unwrap()
        .arn()
        .to_string();
    let setup_lines = std::fs::read_to_string(&record)
        .unwrap_or_default()
        .lines()
        .count();
    let config: CatalogConfig = S3TablesConfig::new(arn.clone())
        .endpoint(recorded.endpoint())
        .s3_endpoint(recorded.endpoint())
        .credentials(AwsCredentials::new("testing", "testing-secret-key"))
        .into();
    let options = TableOptions::default().embedding_dimension(DIM);
    let table = SalesHistory::ensure_with(&config, "iam", options)
        .await
        .unwrap();
    table.append(sample(30, DIM, 1)).await.unwrap();
    table.append(sample(10, DIM, 2)).await.unwrap();
    assert_eq!(table.scan().count().await.unwrap(), 40);
    table
        .scan()
        .tenant("tenant-001")
        .to_batches()
        .await
        .unwrap();
    let report = SalesHistory::verify(&config, "iam").await.unwrap();
    assert!(report.passed(), "{report}");

    let text = std::fs::read_to_string(&record).unwrap();
    let calls: Vec<serde_json::Value> = text
        .lines()
        .skip(setup_lines)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut called = BTreeSet::new();
    for c in &calls {
        let action = c["action"].as_str().unwrap_or_default();
        match c["service"].as_str() {
            Some("s3tables") => {
                called.insert(action.to_string());
            }
            // S3 requests on the table's warehouse location are authorised as table data.
            Some("s3") => {
                let data = match action {
                    "s3:GetObject" => "s3tables:GetTableData",
                    "s3:PutObject" => "s3tables:PutTableData",
                    other => panic!("the crate called {other} on a table bucket: {c}"),
                };
                called.insert(data.to_string());
            }
            other => panic!("unexpected service {other:?}: {c}"),
        }
    }
    let doc = sales_history::iam::s3tables_policy("iam", &arn).unwrap();
    let granted: BTreeSet<String> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(called, granted, "called vs granted");
    println!(
        "S3 Tables IAM: {} requests, actions {called:?}",
        calls.len()
    );
}

/// S3 Tables forbids clients deleting objects in a table bucket: when a write or a commit
/// fails, the crate leaves its files to the service (no DELETE is ever sent) and the table is
/// unchanged; the error is typed and retryable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_on_s3_tables_never_delete() {
    let base = fresh("no-deletes").await;
    let proxy = crate::moto::FaultProxy::start(&moto().endpoint());
    let config: CatalogConfig = base.s3_endpoint(proxy.endpoint()).into();
    let options = TableOptions::default().embedding_dimension(DIM);
    let table = SalesHistory::ensure_with(&config, "nodel", options)
        .await
        .unwrap();
    table.append(sample(10, DIM, 1)).await.expect("baseline");
    proxy.clear();
    for (what, regex) in [
        ("data file", r"/data/.*\.parquet"),
        ("manifest list", r"/metadata/snap-.*\.avro"),
    ] {
        proxy.set_rules(serde_json::json!([
            { "method": "PUT", "path_regex": regex, "times": -1, "action": "status", "status": 503 }
        ]));
        let err = table.append(sample(5, DIM, 2)).await.expect_err(what);
        let stats = proxy.stats();
        proxy.clear();
        assert!(err.is_retryable(), "{what}: {err:?}");
        let deletes: Vec<_> = stats["log"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["method"] == "DELETE")
            .collect();
        assert!(
            deletes.is_empty(),
            "{what}: the crate tried to delete: {deletes:?}"
        );
        assert_eq!(
            table.scan().count().await.unwrap(),
            10,
            "{what}: table unchanged"
        );
    }
}

/// The seed's tools on S3 Tables, in fresh processes, credentials from the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_run_on_s3_tables() {
    let base = fresh("tools-s3t").await;
    let uri = CatalogConfig::from(
        S3TablesConfig::new(base.table_bucket_arn.clone())
            .endpoint(moto().endpoint())
            .s3_endpoint(moto().endpoint()),
    )
    .to_string();
    let run = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new(crate::support::example(tool))
            .args(["--catalog", &uri, "--stage", "tools"])
            .args(args)
            .envs([
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing-secret-key"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ])
            .output()
            .expect("run tool");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{tool} {args:?} failed:\n{text}");
        text
    };
    let created = run("create_schema", &["--embedding-dimension", "16"]);
    assert!(created.contains("created"), "{created}");
    run(
        "load_sample_sales_data",
        &["--num-records", "300", "--quiet"],
    );
    let verified = run("verify_table", &[]);
    assert!(verified.contains("0 failed"), "{verified}");
    let dry = run("create_schema", &["--dry-run"]);
    assert!(dry.contains("nothing to do"), "{dry}");
}

/// Compaction and delete by filter on S3 Tables: our commit path swaps with the version token
/// (`UpdateTableMetadataLocation`); rows are kept (compaction) or gone (delete), a concurrent
/// append survives, and nothing is deleted by us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_delete_where_on_s3_tables() {
    let config: CatalogConfig = fresh("rewrites").await.into();
    let table = crate::support::ensure_test_table(&config, "s3rw").await;
    for seed in 0..6 {
        table
            .append(sample(10, DIM, 500 + seed))
            .await
            .expect("append");
    }
    let mut before = table.scan().to_records().await.unwrap();
    let key =
        |r: &sales_history::SaleRecord| (r.tenant_id.clone(), r.product_id.clone(), r.sold_date);
    before.sort_by_key(key);
    let files_before = table.scan().plan().await.unwrap().files.len();

    // A compaction racing an append from another handle.
    let other = SalesHistory::open(&config, "s3rw").await.expect("open");
    let (compacted, appended) = tokio::join!(
        table.compact().into_future(),
        other.append(sample(5, DIM, 600))
    );
    let compacted = compacted.expect("compact on S3 Tables");
    appended.expect("append during the compaction");
    assert!(
        compacted.files_removed > compacted.files_added,
        "{compacted:?}"
    );
    table.refresh().await.unwrap();
    assert_eq!(table.scan().count().await.unwrap(), 65);
    assert!(table.scan().plan().await.unwrap().files.len() < files_before + 5);
    let ops: Vec<String> = table
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.operation)
        .collect();
    assert!(ops.contains(&"replace".to_string()), "{ops:?}");

    let tenant = before[0].tenant_id.clone();
    let deleted = table
        .delete_where(ScanFilter::new().tenant(tenant.clone()))
        .await
        .expect("delete on S3 Tables");
    assert!(deleted.rows_deleted > 0);
    assert_eq!(table.scan().tenant(tenant).count().await.unwrap(), 0);
    assert_eq!(
        table.scan().count().await.unwrap(),
        65 - deleted.rows_deleted
    );
    // Another handle sees the same table (the catalog points at our metadata).
    let fresh_handle = SalesHistory::open(&config, "s3rw").await.expect("reopen");
    assert_eq!(
        fresh_handle.current_snapshot_id(),
        table.current_snapshot_id()
    );
}

/// A layout evolve on S3 Tables goes through the same staged commit (the version token
/// guards it): the spec changes, new files land under it, a migration moves the old ones and
/// pyiceberg-free counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_evolve_and_migration_on_s3_tables() {
    use sales_history::Layout;
    let config: CatalogConfig = fresh("layouts").await.into();
    let table = crate::support::ensure_test_table(&config, "s3layout").await;
    let first = sample(60, DIM, 900);
    table.append(first.clone()).await.expect("append");
    let evolved = table
        .evolve_layout(Layout::TenantMonth)
        .await
        .expect("evolve on S3 Tables");
    assert_eq!(evolved.to_spec_id, Some(1));
    let reopened = SalesHistory::open(&config, "s3layout").await.expect("open");
    assert_eq!(reopened.layout().unwrap(), Layout::TenantMonth);
    let second = sample(40, DIM, 901);
    table
        .append(second.clone())
        .await
        .expect("append after evolve");
    let specs: std::collections::BTreeSet<Option<i32>> = table
        .scan()
        .plan()
        .await
        .unwrap()
        .files
        .iter()
        .map(|f| f.partition_spec_id)
        .collect();
    assert_eq!(specs, [Some(0), Some(1)].into_iter().collect());
    let moved = table.compact().migrate().await.expect("migrate");
    assert!(moved.files_removed > 0, "{moved:?}");
    assert!(
        table
            .scan()
            .plan()
            .await
            .unwrap()
            .files
            .iter()
            .all(|f| f.partition_spec_id == Some(1))
    );
    let tenant = first[0].tenant_id.clone();
    let want = first
        .iter()
        .chain(&second)
        .filter(|r| r.tenant_id == tenant)
        .count() as u64;
    assert_eq!(table.scan().count().await.unwrap(), 100);
    assert_eq!(table.scan().tenant(tenant).count().await.unwrap(), want);
}

/// On S3 Tables, a refresh asks `GetTable` where the metadata is and reads it only when it
/// moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_on_s3_tables_reads_metadata_only_when_the_table_moved() {
    let config: CatalogConfig = fresh("refresh-probe").await.into();
    crate::support::refresh_reads_metadata_only_when_the_catalog_moved(&config, "probe").await;
}

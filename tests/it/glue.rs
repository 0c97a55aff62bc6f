//! Glue + S3 on the emulator: create, append, scan, reopen, the fields Athena reads, bad config.

use std::time::{Duration, Instant};

use sales_history::{
    AwsCredentials, CatalogConfig, Column, Error, GlueConfig, SalesHistory, TableOptions,
};

use crate::moto::{REGION, moto};
use crate::support::{DIM, pyiceberg, sample};

async fn glue_table(bucket: &str, stage: &str) -> (CatalogConfig, SalesHistory) {
    let config = moto().fresh(bucket);
    let table = SalesHistory::ensure_with(
        &config,
        stage,
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure on glue");
    (config, table)
}

/// What Glue holds for the table, checked against what Athena needs.
/// `previous`: the expected `previous_metadata_location` (`None`: not checked).
pub async fn check_athena_fields(table: &SalesHistory, previous: Option<Option<&str>>) {
    let client = moto().glue_client().await;
    let got = client
        .get_table()
        .database_name(table.namespace())
        .name("sales_history")
        .send()
        .await
        .expect("GetTable");
    let t = got.table().expect("table");
    let params = t.parameters().expect("parameters");
    assert_eq!(
        params.get("table_type").map(String::as_str),
        Some("ICEBERG")
    );
    assert_eq!(
        params.get("metadata_location").map(String::as_str),
        table.iceberg_table().metadata_location()
    );
    if let Some(previous) = previous {
        assert_eq!(
            params.get("previous_metadata_location").map(String::as_str),
            previous
        );
    }
    let sd = t.storage_descriptor().expect("storage descriptor");
    assert_eq!(sd.location(), Some(table.location().as_str()));
    let cols: Vec<(String, String)> = sd
        .columns()
        .iter()
        .map(|c| {
            (
                c.name().to_string(),
                c.r#type().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = Column::ALL
        .iter()
        .map(|c| (c.name().to_string(), c.athena_type().to_string()))
        .collect();
    assert_eq!(cols, want);
    let id = sd.columns()[5]
        .parameters()
        .and_then(|p| p.get("iceberg.field.id"))
        .cloned();
    assert_eq!(id.as_deref(), Some("6"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_append_scan_reopen_on_glue() {
    let (config, table) = glue_table("glue-basic", "basic").await;
    assert_eq!(
        table.location(),
        "s3://glue-basic/warehouse/pricing_intelligence_basic.db/sales_history"
    );
    check_athena_fields(&table, Some(None)).await;
    let created = table
        .iceberg_table()
        .metadata_location()
        .map(str::to_string);

    // Idempotent.
    let again = SalesHistory::ensure(&config, "basic")
        .await
        .expect("ensure again");
    assert_eq!(
        again
            .iceberg_table()
            .metadata_location()
            .map(str::to_string),
        created
    );

    let rows = sample(60, DIM, 4);
    let out = table.append(rows.clone()).await.expect("append");
    assert_eq!(out.committed().map(|s| s.rows), Some(60));
    check_athena_fields(&table, Some(created.as_deref())).await;
    let after_first = table
        .iceberg_table()
        .metadata_location()
        .map(str::to_string);
    table
        .append(sample(15, DIM, 5))
        .await
        .expect("second append");
    check_athena_fields(&table, Some(after_first.as_deref())).await;

    // A fresh handle (as another process would) reads everything back.
    let fresh = SalesHistory::open(&config, "basic").await.expect("open");
    assert_eq!(fresh.snapshots().await.unwrap().len(), 2);
    let mut back = fresh.scan().to_records().await.expect("scan");
    assert_eq!(back.len(), 75);
    back.retain(|r| rows.iter().any(|o| o.product_id == r.product_id));
    back.sort_by(|a, b| a.product_id.cmp(&b.product_id));
    let mut rows = rows;
    rows.sort_by(|a, b| a.product_id.cmp(&b.product_id));
    assert_eq!(back, rows);
    let march = fresh
        .scan()
        .tenant("tenant-001")
        .count()
        .await
        .expect("filtered");
    assert!(march > 0 && march < 75);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_refuses_a_stale_version_id() {
    let (_config, table) = glue_table("glue-stale", "stale").await;
    let client = moto().glue_client().await;
    let get = || {
        client
            .get_table()
            .database_name(table.namespace())
            .name("sales_history")
            .send()
    };
    let v1 = get()
        .await
        .unwrap()
        .table()
        .and_then(|t| t.version_id().map(str::to_string));
    assert!(v1.is_some(), "GetTable returns a VersionId");
    table.append(sample(3, DIM, 1)).await.expect("append");
    let current = get().await.unwrap();
    let t = current.table().unwrap();
    assert_ne!(
        t.version_id(),
        v1.as_deref(),
        "a commit bumps the VersionId"
    );
    let input = aws_sdk_glue::types::TableInput::builder()
        .name("sales_history")
        .set_parameters(t.parameters().cloned())
        .set_storage_descriptor(t.storage_descriptor().cloned())
        .table_type("EXTERNAL_TABLE")
        .build()
        .unwrap();
    let stale = client
        .update_table()
        .database_name(table.namespace())
        .table_input(input)
        .version_id(v1.unwrap())
        .send()
        .await;
    match stale {
        Err(e) => assert!(
            matches!(
                e.into_service_error(),
                aws_sdk_glue::operation::update_table::UpdateTableError::ConcurrentModificationException(_)
            ),
            "stale VersionId must be a ConcurrentModificationException"
        ),
        Ok(_) => panic!("an UpdateTable with a stale VersionId was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_glue_interop_both_ways() {
    let (config, table) = glue_table("glue-interop", "interop").await;
    let rows = sample(40, DIM, 8);
    table.append(rows).await.expect("our append");
    let glue_args = |cmd: &str| {
        crate::moto::pyiceberg_glue_args(
            cmd,
            "s3://glue-interop/warehouse",
            "pricing_intelligence_interop",
        )
    };
    let args = glue_args("read");
    let got = pyiceberg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(got["row_count"], 40);
    assert_eq!(got["codecs"], serde_json::json!(["SNAPPY"]));

    let mut args = glue_args("append");
    args.extend(["--rows", "12", "--tenant", "py-glue"].map(String::from));
    let out = pyiceberg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out["appended"], 12);

    // We read pyiceberg's rows and append after it.
    table.refresh().await.expect("refresh");
    assert_eq!(
        table.scan().tenant("py-glue").count().await.expect("count"),
        12
    );
    // pyiceberg's files have no offset index: over a 1-byte read budget their row groups are
    // read lazily, each piece fetched from S3 on the blocking pool, with the same rows.
    let key = |r: &sales_history::SaleRecord| (r.product_id.clone(), r.sold_date);
    let mut want = table.scan().to_records().await.expect("scan");
    want.sort_by_key(key);
    let (_, m) = table
        .scan()
        .read_buffer_bytes(1)
        .to_batches_with_metrics()
        .await
        .expect("lazy scan");
    // Only pyiceberg's files (no offset index) are read lazily: ours have their page index
    // (parsed with the footer) and are read as a page selection of the whole group.
    let (_, theirs) = table
        .scan()
        .tenant("py-glue")
        .read_buffer_bytes(1)
        .to_batches_with_metrics()
        .await
        .expect("their files, lazily");
    assert!(
        theirs.files_read > 0 && theirs.lazy_reads == theirs.row_groups_read,
        "{theirs:?}"
    );
    assert_eq!(m.lazy_reads, theirs.lazy_reads, "{m:?}");
    let mut lazy = table
        .scan()
        .read_buffer_bytes(1)
        .to_records()
        .await
        .expect("lazy rows");
    lazy.sort_by_key(key);
    assert_eq!(lazy, want);
    table
        .append(sample(8, DIM, 9))
        .await
        .expect("append after pyiceberg");
    check_athena_fields(&table, None).await;
    let fresh = SalesHistory::open(&config, "interop").await.expect("open");
    assert_eq!(fresh.scan().count().await.expect("count"), 60);
    let args = glue_args("read");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.push("--no-rows");
    let got = pyiceberg(&args);
    assert_eq!(got["row_count"], 60);
    assert_eq!(got["snapshots"].as_array().map(Vec::len), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_fails_fast_with_a_typed_error() {
    let moto = moto();
    let key = |r: Result<CatalogConfig, Error>| match r {
        Err(Error::Config { key, .. }) => key,
        other => panic!("expected a config error, got {other:?}"),
    };
    // (assumes AWS_REGION / AWS_DEFAULT_REGION are not set in the test environment)
    assert_eq!(key("glue://?warehouse=s3://bucket/x".parse()), "region");
    assert_eq!(key("glue://?region=eu-west-1".parse()), "warehouse");
    assert_eq!(
        key("glue://?region=eu-west-1&warehouse=/tmp/x".parse()),
        "warehouse"
    );
    assert_eq!(
        key("glue://?region=eu-west-1&warehouse=s3://b-1/x&colour=blue".parse()),
        "colour"
    );
    assert_eq!(
        key("glue://?region=eu-west-1&warehouse=s3://b-1/x&s3_path_style=maybe".parse()),
        "s3_path_style"
    );
    assert_eq!(key("ftp://x".parse()), "catalog");

    // Nothing listens on this port: a typed error, quickly.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = GlueConfig::new(REGION, "s3://nowhere/wh")
        .glue_endpoint(format!("http://127.0.0.1:{closed}"))
        .s3_endpoint(format!("http://127.0.0.1:{closed}"))
        .credentials(AwsCredentials::new("testing", "SECRET-never-shown"));
    let start = Instant::now();
    let err = SalesHistory::ensure(&dead.clone().into(), "dead")
        .await
        .expect_err("unreachable");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let shown = format!(
        "{err} {err:?} {:?} {}",
        dead,
        CatalogConfig::from(dead.clone())
    );
    assert!(!shown.contains("SECRET-never-shown"), "{shown}");

    // The bucket does not exist.
    let config: CatalogConfig = moto.glue_config("no-such-bucket").into();
    match SalesHistory::ensure(&config, "nobucket").await {
        Err(Error::Config { key, reason }) => {
            assert_eq!(key, "warehouse");
            assert!(reason.contains("no-such-bucket"), "{reason}");
        }
        other => panic!("expected a warehouse error, got {other:?}"),
    }

    // The database does not exist: open does not create it.
    let config = moto.fresh("glue-nodb");
    match SalesHistory::open(&config, "missing").await {
        Err(Error::TableNotFound { table }) => {
            assert_eq!(table, "pricing_intelligence_missing.sales_history")
        }
        other => panic!("expected TableNotFound, got {other:?}"),
    }
}

/// The vector index on Glue + S3: built and registered through Glue's compare-and-swap,
/// carried to the next snapshot, its Puffin files in S3 kept by orphan removal; Athena's
/// fields stay right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_index_on_glue_and_s3() {
    let (_config, table) = glue_table("glue-ann", "ann").await;
    table.append(sample(800, DIM, 61)).await.expect("append 1");
    table.append(sample(800, DIM, 62)).await.expect("append 2");
    let report = table.index_embeddings().await.expect("index on glue");
    assert_eq!(
        (report.rows_indexed, report.attempts),
        (1_600, 1),
        "{report:?}"
    );
    let q = sample(1, DIM, 63).remove(0).embedding.expect("embedding");
    let exact = table.similar_to(q.clone(), 5).exact().await.unwrap();
    let (got, m) = table
        .similar_to(q.clone(), 5)
        .refine(4)
        .with_metrics()
        .await
        .unwrap();
    assert!(
        m.used_index && m.files_exact == 0 && m.index_bytes_read > 0,
        "{m:?}"
    );
    assert_eq!(got.len(), 5);
    assert!(
        got.iter()
            .filter(|g| exact.iter().any(|e| e.record == g.record))
            .count()
            >= 4,
        "{got:?} vs {exact:?}"
    );
    // The next append carries the index; its file is searched exactly.
    table.append(sample(50, DIM, 64)).await.expect("append 3");
    let (_, m) = table.similar_to(q, 5).with_metrics().await.unwrap();
    assert!(m.used_index && m.files_exact > 0, "{m:?}");
    check_athena_fields(&table, None).await;
    let removed = table
        .remove_orphan_files()
        .older_than(chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .expect("orphans on s3");
    assert!(
        crate::support::puffins_deleted(&removed).is_empty(),
        "{:?}",
        removed.deleted_files
    );
}

/// On Glue, a refresh asks `GetTable` where the metadata is and reads it only when it moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_on_glue_reads_metadata_only_when_the_table_moved() {
    crate::support::refresh_reads_metadata_only_when_the_catalog_moved(
        &moto().fresh("refresh-probe"),
        "refreshprobe",
    )
    .await;
}

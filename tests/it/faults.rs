//! Failure behaviour of `append` at each step, on the local catalog and on Glue + S3: a typed
//! error and an unchanged table, or exactly one commit — never a lost or doubled append.

use std::sync::Arc;

use sales_history::{AppendOutcome, CatalogConfig, Error, SalesHistory, TableOptions};

use crate::faulty_catalog::{Fault, FaultyCatalog};
use crate::support::{DIM, sample};

/// A table whose catalog is the real one wrapped in a `FaultyCatalog`.
async fn faulty(
    real: &CatalogConfig,
    warehouse: &str,
    stage: &str,
    retries: u32,
) -> (Arc<FaultyCatalog>, SalesHistory) {
    let inner = crate::support::raw_catalog(real).await;
    let faulty = FaultyCatalog::new(inner);
    let config = CatalogConfig::Custom {
        catalog: faulty.clone(),
        warehouse: warehouse.to_string(),
    };
    let options = TableOptions::default()
        .embedding_dimension(DIM)
        .commit_retries(retries);
    let table = SalesHistory::ensure_with(&config, stage, options)
        .await
        .expect("ensure");
    (faulty, table)
}

/// Data files the table references vs. Parquet files in storage (orphans = difference).
async fn orphan_data_files(table: &SalesHistory) -> usize {
    let report = table
        .remove_orphan_files()
        .older_than(chrono::Utc::now() + chrono::Duration::seconds(5))
        .dry_run()
        .await
        .expect("orphan listing");
    report
        .deleted_files
        .iter()
        .filter(|f| f.ends_with(".parquet"))
        .count()
}

async fn check(table: &SalesHistory, rows: u64, snapshots: usize) {
    table.refresh().await.expect("refresh");
    let snaps = table.snapshots().await.unwrap();
    assert_eq!(snaps.len(), snapshots, "{snaps:#?}");
    assert_eq!(table.scan().count().await.expect("count"), rows);
}

/// Runs every catalog fault against one table and checks the outcome of each.
async fn catalog_faults(
    real: CatalogConfig,
    warehouse: &str,
    stage: &str,
    listing: Option<&SalesHistory>,
) {
    let (faults, table) = faulty(&real, warehouse, stage, 3).await;
    table
        .append(sample(10, DIM, 1))
        .await
        .expect("baseline append");
    let mut rows = 10u64;
    let mut snapshots = 1usize;

    // Throttled twice, then through: committed once, throttles counted.
    faults.push([Fault::Throttle, Fault::Throttle]);
    let out = table
        .append(sample(7, DIM, 2))
        .await
        .expect("throttled append");
    assert!(out.committed().is_some());
    (rows, snapshots) = (rows + 7, snapshots + 1);
    check(&table, rows, snapshots).await;
    assert!(table.commit_stats().throttled >= 2);

    // Access denied: typed, not retryable, nothing committed, files removed.
    faults.push([Fault::AccessDenied]);
    let err = table.append(sample(5, DIM, 3)).await.expect_err("denied");
    assert!(
        matches!(
            err,
            Error::Catalog {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable(), "{err:?}");
    assert!(format!("{err:?}").contains("AccessDenied"));
    check(&table, rows, snapshots).await;

    // Conflicts beyond the retry budget (3 retries = 4 attempts).
    faults.push([Fault::Conflict; 4]);
    match table.append(sample(5, DIM, 4)).await {
        Err(e @ Error::CommitConflict { .. }) => assert!(e.is_retryable()),
        other => panic!("expected CommitConflict, got {other:?}"),
    }
    check(&table, rows, snapshots).await;

    // The commit lands but its answer is lost: the append finds its commit id, reports success.
    faults.push([Fault::LostAnswer]);
    let out = table
        .append(sample(6, DIM, 5))
        .await
        .expect("lost answer is recovered");
    assert!(out.committed().is_some(), "{out:?}");
    (rows, snapshots) = (rows + 6, snapshots + 1);
    check(&table, rows, snapshots).await;

    // Lost answer and the table cannot be re-read: outcome unknown; the retry with the same
    // commit id finds it and appends nothing twice.
    faults.push([Fault::LostAnswerAndReload]);
    let batch = sample(4, DIM, 6);
    match table.append(batch.clone()).commit_id("retry-me").await {
        Err(e @ Error::CommitStateUnknown { .. }) => {
            assert!(e.is_retryable(), "retry with the same commit id: {e:?}");
            assert!(
                matches!(e, Error::CommitStateUnknown { ref commit_id, .. } if commit_id == "retry-me")
            );
        }
        other => panic!("expected CommitStateUnknown, got {other:?}"),
    }
    let again = table
        .append(batch)
        .commit_id("retry-me")
        .await
        .expect("retry");
    assert!(
        matches!(again, AppendOutcome::AlreadyCommitted { .. }),
        "{again:?}"
    );
    (rows, snapshots) = (rows + 4, snapshots + 1);
    check(&table, rows, snapshots).await;

    // The failed appends left no data files behind.
    assert_eq!(orphan_data_files(listing.unwrap_or(&table)).await, 0);
    // The lost answer + unreachable catalog fails 4 reads: the loop looks for its commit id 4 times.
    assert_eq!(faults.injected_total(), 2 + 1 + 4 + 1 + (1 + 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_faults_on_the_local_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let real = CatalogConfig::local(dir.path());
    let warehouse = format!(
        "file://{}",
        std::fs::canonicalize(dir.path()).unwrap().display()
    );
    // Orphan listing needs the real (listable) config: open a plain handle on the same table.
    let (_f, _t) = faulty(&real, &warehouse, "faults", 3).await;
    let plain = SalesHistory::open(&real, "faults")
        .await
        .expect("plain handle");
    catalog_faults(real, &warehouse, "faults", Some(&plain)).await;
}

#[cfg(all(feature = "python-tests", feature = "glue"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_faults_on_glue() {
    let moto = crate::moto::moto();
    let real = moto.fresh("faults-glue");
    let warehouse = "s3://faults-glue/warehouse";
    let (_f, _t) = faulty(&real, warehouse, "faults", 3).await;
    let plain = SalesHistory::open(&real, "faults")
        .await
        .expect("plain handle");
    catalog_faults(real, warehouse, "faults", Some(&plain)).await;
}

/// Storage faults through the proxy in front of the emulator's S3: data file, manifest and
/// metadata writes that fail, and slow answers.
#[cfg(all(feature = "python-tests", feature = "glue"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_faults_on_glue_and_s3() {
    use crate::moto::FaultProxy;
    let moto = crate::moto::moto();
    moto.create_bucket("faults-s3");
    let proxy = FaultProxy::start(&moto.endpoint());
    let config: CatalogConfig = moto
        .glue_config("faults-s3")
        .s3_endpoint(proxy.endpoint())
        .into();
    let table = SalesHistory::ensure_with(
        &config,
        "storage",
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    table.append(sample(10, DIM, 1)).await.expect("baseline");
    let mut rows = 10u64;

    for (what, regex) in [
        ("data file", r"/data/.*\.parquet"),
        ("manifest", r"/metadata/.*-m\d+\.avro"),
        ("manifest list", r"/metadata/snap-.*\.avro"),
        ("table metadata", r"/metadata/.*\.metadata\.json"),
    ] {
        proxy.set_rules(serde_json::json!([
            { "method": "PUT", "path_regex": regex, "times": -1, "action": "status", "status": 500 }
        ]));
        let result = table.append(sample(5, DIM, 2)).await;
        let injected = proxy.stats()["injected"].as_u64().unwrap_or(0);
        proxy.clear();
        let err = result.expect_err(what);
        assert!(injected > 0, "{what}: no fault was injected");
        // A 5xx from storage: a storage error, worth retrying.
        assert!(
            matches!(
                err,
                Error::Storage {
                    retryable: true,
                    ..
                }
            ),
            "{what}: {err:?}"
        );
        check(&table, rows, 1 + (rows as usize - 10) / 5).await;
        assert_eq!(
            orphan_data_files(&table).await,
            0,
            "{what}: data files left behind"
        );
    }

    // After open: storage faults on reads (scan) and writes (append), classified by status.
    for (what, method, regex, status, retryable) in [
        ("scan, 503", "GET", r"/data/.*\.parquet", 503, true),
        ("scan, 403", "GET", r"/data/.*\.parquet", 403, false),
        ("append, 503", "PUT", r"/data/.*\.parquet", 503, true),
        ("append, 403", "PUT", r"/data/.*\.parquet", 403, false),
    ] {
        proxy.set_rules(serde_json::json!([
            { "method": method, "path_regex": regex, "times": -1, "action": "status", "status": status }
        ]));
        let err = if method == "GET" {
            table.scan().to_batches().await.map(|_| ()).expect_err(what)
        } else {
            table
                .append(sample(5, DIM, 4))
                .await
                .map(|_| ())
                .expect_err(what)
        };
        proxy.clear();
        assert!(
            matches!(err, Error::Storage { .. }) && err.is_retryable() == retryable,
            "{what}: {err:?}"
        );
    }
    check(&table, rows, 1 + (rows as usize - 10) / 5).await;

    // A flaky store (every other PUT fails once) and slow reads: the append still lands once.
    proxy.set_rules(serde_json::json!([
        { "method": "PUT", "path_regex": r"\.parquet", "skip": 1, "times": 1, "action": "status", "status": 503 },
        { "method": "GET", "path_regex": r"\.metadata\.json", "times": 2, "action": "delay", "seconds": 1.0 }
    ]));
    let out = table
        .append(sample(5, DIM, 3))
        .await
        .expect("append through transient faults");
    proxy.clear();
    assert!(out.committed().is_some());
    rows += 5;
    check(&table, rows, 2).await;
}

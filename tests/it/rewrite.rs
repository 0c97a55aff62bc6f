//! Our own commit path: compaction (`replace`), delete by filter (`overwrite`/`delete`),
//! tenant erasure, conflicts with concurrent writers, peers.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;
use sales_history::{CatalogConfig, Error, SaleRecord, SalesHistory, ScanFilter, TableOptions};

use crate::support::{DIM, local_table, sample};

/// Every row of the table (or of a snapshot), sorted: equality is multiset equality over all
/// columns.
pub async fn rows(table: &SalesHistory, snapshot: Option<i64>) -> Vec<SaleRecord> {
    let mut scan = table.scan();
    if let Some(id) = snapshot {
        scan = scan.snapshot_id(id);
    }
    let mut rows = scan.to_records().await.expect("scan");
    sort(&mut rows);
    rows
}

fn sort(rows: &mut [SaleRecord]) {
    rows.sort_by(|a, b| {
        (&a.tenant_id, &a.product_id, a.sold_date).cmp(&(&b.tenant_id, &b.product_id, b.sold_date))
    });
}

async fn data_files(table: &SalesHistory) -> usize {
    table.scan().plan().await.expect("plan").files.len()
}

/// Many small appends: each of `appends` appends spreads `per` rows over the sample's months.
async fn small_appends(table: &SalesHistory, appends: u64, per: usize, seed: u64) {
    for i in 0..appends {
        table
            .append(sample(per, DIM, seed + i))
            .await
            .expect("small append");
    }
}

/// Every `.parquet` file under `dir` and the tenant ids it holds.
fn tenants_on_disk(dir: &Path) -> BTreeMap<String, Vec<String>> {
    use arrow_array::cast::AsArray;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut out = BTreeMap::new();
    for (rel, _) in crate::support::tree(dir) {
        if !rel.ends_with(".parquet") {
            continue;
        }
        let file = std::fs::File::open(dir.join(&rel)).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet footer")
            .build()
            .expect("reader");
        let mut tenants = Vec::new();
        for batch in reader {
            let batch = batch.expect("batch");
            let col = batch.column_by_name("tenant_id").expect("tenant_id");
            let col = arrow_cast::cast(col, &arrow_schema::DataType::Utf8).expect("utf8");
            tenants.extend(col.as_string::<i32>().iter().flatten().map(str::to_string));
        }
        out.insert(rel, tenants);
    }
    out
}

#[tokio::test]
async fn compaction_keeps_every_row_and_time_travel_still_works() {
    let t = local_table(DIM).await;
    small_appends(&t.table, 12, 12, 300).await;
    let before_rows = rows(&t.table, None).await;
    let before_files = data_files(&t.table).await;
    let before_snapshot = t.table.current_snapshot_id().expect("snapshot");

    let plan = t.table.compact().dry_run(true).await.expect("dry run");
    assert!(plan.dry_run && plan.snapshot_id.is_none());
    assert!(
        plan.files_removed > plan.months && plan.months > 0,
        "{plan:?}"
    );
    assert_eq!(plan.rows_rewritten as usize, before_rows.len());
    assert_eq!(t.table.current_snapshot_id(), Some(before_snapshot));
    assert_eq!(
        data_files(&t.table).await,
        before_files,
        "a dry run writes nothing"
    );

    let done = t.table.compact().await.expect("compact");
    assert_eq!(done.files_removed, plan.files_removed);
    assert_eq!(
        done.files_added, done.months,
        "one file per month below the target"
    );
    assert_eq!(done.months, plan.months);
    assert!(done.bytes_added > 0 && done.snapshot_id.is_some());
    let after_files = data_files(&t.table).await;
    assert_eq!(
        after_files,
        before_files - done.files_removed + done.files_added
    );
    assert!(
        after_files < before_files / 4,
        "{before_files} → {after_files}"
    );
    assert_eq!(rows(&t.table, None).await, before_rows, "same rows");
    assert_eq!(
        rows(&t.table, Some(before_snapshot)).await,
        before_rows,
        "time travel to the snapshot before the compaction"
    );

    let snaps = t.table.snapshots().await.expect("snapshots");
    let last = snaps.last().expect("last");
    assert_eq!(last.operation, "replace");
    assert_eq!(last.parent_id, Some(before_snapshot));
    assert!(
        last.commit_id
            .as_deref()
            .is_some_and(|c| c.starts_with("compact-"))
    );
    let summary = t
        .table
        .iceberg_table()
        .metadata()
        .current_snapshot()
        .expect("current")
        .summary()
        .additional_properties
        .clone();
    assert_eq!(summary["total-records"], before_rows.len().to_string());
    assert_eq!(summary["total-data-files"], after_files.to_string());
    assert_eq!(
        summary["deleted-data-files"],
        done.files_removed.to_string()
    );
    assert_eq!(summary["added-data-files"], done.files_added.to_string());

    // Nothing left to do; appends still work on top.
    let again = t.table.compact().await.expect("second compaction");
    assert_eq!((again.files_removed, again.snapshot_id), (0, None));
    t.table
        .append(sample(5, DIM, 999))
        .await
        .expect("append after");
    assert_eq!(rows(&t.table, None).await.len(), before_rows.len() + 5);
}

#[tokio::test]
async fn a_tenant_erasure_leaves_no_row_of_it_in_any_file() {
    let t = local_table(DIM).await;
    small_appends(&t.table, 3, 40, 400).await;
    // Files that hold only the erased tenant's rows (dropped from metadata alone) …
    let only: Vec<SaleRecord> = sample(30, DIM, 410)
        .into_iter()
        .map(|mut r| {
            r.tenant_id = "tenant-erase".into();
            r
        })
        .collect();
    t.table.append(only).await.expect("single-tenant append");
    // … and files where its rows sit next to others (rewritten).
    let mixed: Vec<SaleRecord> = sample(40, DIM, 420)
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            if i % 2 == 0 {
                r.tenant_id = "tenant-erase".into();
            }
            r
        })
        .collect();
    t.table.append(mixed).await.expect("mixed append");
    let all = rows(&t.table, None).await;
    let expected: Vec<SaleRecord> = all
        .iter()
        .filter(|r| r.tenant_id != "tenant-erase")
        .cloned()
        .collect();
    let erased = (all.len() - expected.len()) as u64;
    assert_eq!(erased, 50);
    let before_snapshot = t.table.current_snapshot_id();

    let gone = ScanFilter::new().tenant("tenant-erase");
    let plan = t
        .table
        .delete_where(gone.clone())
        .dry_run(true)
        .await
        .expect("dry run");
    assert_eq!(plan.rows_deleted, erased);
    assert_eq!(plan.operation.as_deref(), Some("overwrite"));
    assert_eq!(t.table.current_snapshot_id(), before_snapshot);

    let done = t.table.delete_where(gone.clone()).await.expect("delete");
    assert_eq!(done.rows_deleted, erased);
    assert!(done.files_dropped_by_metadata > 0, "{done:?}");
    assert!(done.files_rewritten > 0, "{done:?}");
    assert_eq!(done.operation.as_deref(), Some("overwrite"));
    assert_eq!(rows(&t.table, None).await, expected);
    assert_eq!(
        t.table.scan().filter(gone.clone()).count().await.unwrap(),
        0
    );
    let snaps = t.table.snapshots().await.unwrap();
    assert_eq!(snaps.last().unwrap().operation, "overwrite");
    // Before expiry, the old snapshot still reads the rows (and files still hold them).
    assert_eq!(rows(&t.table, before_snapshot).await, all);
    assert!(
        tenants_on_disk(t.dir.path())
            .values()
            .flatten()
            .any(|x| x == "tenant-erase")
    );

    // Nothing left to delete: no snapshot.
    let again = t.table.delete_where(gone).await.expect("again");
    assert_eq!((again.rows_deleted, again.snapshot_id), (0, None));

    // The erasure: expire every older snapshot, remove unreferenced files.
    t.table
        .expire_snapshots()
        .older_than(Utc::now())
        .await
        .expect("expire");
    t.table
        .remove_orphan_files()
        .older_than(Utc::now())
        .await
        .expect("orphans");
    let on_disk = tenants_on_disk(t.dir.path());
    let rows_on_disk: usize = on_disk.values().map(Vec::len).sum();
    assert_eq!(rows_on_disk, expected.len(), "every remaining file is live");
    assert!(
        on_disk.values().flatten().all(|x| x != "tenant-erase"),
        "a Parquet file still holds a row of the erased tenant"
    );
    assert_eq!(rows(&t.table, None).await, expected);
}

#[tokio::test]
async fn delete_where_refuses_an_empty_filter_and_keeps_the_table() {
    let t = local_table(DIM).await;
    t.table.append(sample(20, DIM, 1)).await.unwrap();
    let before = t.table.current_snapshot_id();
    let err = t
        .table
        .delete_where(ScanFilter::new())
        .await
        .expect_err("empty filter");
    assert!(
        matches!(err, Error::Config { ref key, .. } if key == "filter"),
        "{err:?}"
    );
    // Nor one that has no bound once resolved (an open price range).
    let err = t
        .table
        .delete_where(ScanFilter::new().price_range(..))
        .await
        .expect_err("unbounded filter");
    assert!(
        matches!(err, Error::Config { ref key, .. } if key == "filter"),
        "{err:?}"
    );
    assert_eq!(t.table.scan().count().await.unwrap(), 20);
    // A filter that matches nothing commits nothing.
    let none = t
        .table
        .delete_where(ScanFilter::new().tenant("nobody"))
        .await
        .expect("no match");
    assert_eq!((none.rows_deleted, none.snapshot_id), (0, None));
    assert_eq!(t.table.current_snapshot_id(), before);
}

/// Appenders and a compaction (and a delete) on one table for several rounds: every append
/// lands once, the compaction keeps the rows, conflicts are re-applied.
pub async fn race_rounds(config: &CatalogConfig, stage: &str, rounds: u64) -> (u64, u32) {
    let writer = SalesHistory::ensure_with(
        config,
        stage,
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    let maintainer = SalesHistory::open(config, stage).await.expect("open");
    small_appends(&writer, 4, 10, 500).await;
    let mut expected = 40u64;
    let mut compaction_attempts = 0u32;
    for round in 0..rounds {
        let appends = async {
            for i in 0..3 {
                writer
                    .append(sample(10, DIM, 600 + round * 10 + i))
                    .await
                    .expect("append during compaction");
            }
        };
        let compaction = maintainer.compact().into_future();
        let ((), compacted) = tokio::join!(appends, compaction);
        match compacted {
            Ok(report) => compaction_attempts = compaction_attempts.max(report.attempts),
            Err(Error::CommitConflict { .. }) => {}
            Err(e) => panic!("round {round}: compaction failed: {e:?}"),
        }
        expected += 30;
        maintainer.refresh().await.unwrap();
        let all = rows(&maintainer, None).await;
        assert_eq!(
            all.len() as u64,
            expected,
            "round {round}: rows lost or doubled"
        );
        let mut ids: Vec<_> = all
            .iter()
            .map(|r| (&r.tenant_id, &r.product_id, r.sold_date))
            .collect();
        ids.dedup();
        assert_eq!(ids.len() as u64, expected, "round {round}: duplicated rows");
    }
    (expected, compaction_attempts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_and_compactions_race_on_sqlite_without_losing_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let (rows, attempts) = race_rounds(&config, "race", 4).await;
    eprintln!("sqlite race: {rows} rows, max compaction attempts {attempts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_compactions_at_once_one_wins_the_other_leaves_nothing_behind() {
    let t = local_table(DIM).await;
    small_appends(&t.table, 6, 12, 700).await;
    let before = rows(&t.table, None).await;
    let other = SalesHistory::open(&t.config, "test").await.unwrap();
    let (a, b) = tokio::join!(
        t.table.compact().into_future(),
        other.compact().into_future()
    );
    let outcomes = [&a, &b];
    assert!(
        outcomes
            .iter()
            .any(|r| r.as_ref().is_ok_and(|r| r.snapshot_id.is_some()))
    );
    for r in outcomes {
        match r {
            Ok(_) => {}
            Err(Error::CommitConflict { .. }) => {}
            Err(e) => panic!("unexpected: {e:?}"),
        }
    }
    t.table.refresh().await.unwrap();
    assert_eq!(rows(&t.table, None).await, before);
    let replaces = t
        .table
        .snapshots()
        .await
        .unwrap()
        .iter()
        .filter(|s| s.operation == "replace")
        .count();
    assert_eq!(replaces, 1, "the files were compacted once");
    // The loser deleted what it wrote: nothing is unreferenced.
    let leftovers = t
        .table
        .remove_orphan_files()
        .older_than(Utc::now() + chrono::Duration::hours(1))
        .dry_run()
        .await
        .expect("orphan dry run");
    assert!(
        leftovers.deleted_files.is_empty(),
        "{:?}",
        leftovers.deleted_files
    );
}

/// A compaction dropped mid-way stops its bins' tasks (each bin is its own task): nothing is
/// written once it is gone, and the table is as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_compaction_stops_writing() {
    use sales_history::sample::{SampleConfig, SampleGenerator};
    const DIM: usize = 256;
    // One month: one bin of 6,000 rows, whose merge takes a while in a debug build.
    let t = local_table(DIM).await;
    let mut rows_in = SampleGenerator::new(
        SampleConfig::default()
            .seed(900)
            .months(1)
            .embedding_dimension(DIM),
    );
    for _ in 0..12 {
        t.table
            .append(rows_in.take_records(500))
            .await
            .expect("append");
    }
    let before = rows(&t.table, None).await;
    let snapshot = t.table.current_snapshot_id();
    // Dropped once the bin is being written: the planning takes what a dry run takes.
    let started = std::time::Instant::now();
    t.table.compact().dry_run(true).await.expect("dry run");
    let planning = started.elapsed();
    let run = tokio::time::timeout(
        planning + std::time::Duration::from_millis(150),
        t.table.compact().into_future(),
    )
    .await;
    assert!(
        run.is_err(),
        "the compaction finished before it was dropped"
    );
    let data = t.dir.path();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let settled = crate::support::tree(data);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        crate::support::tree(data),
        settled,
        "files were written after the compaction was dropped"
    );
    assert_eq!(t.table.current_snapshot_id(), snapshot);
    assert!(rows(&t.table, None).await == before);
    // And a compaction run to its end afterwards (reading through parquet-rs's decoder, the
    // benchmark's baseline) keeps every row.
    t.table
        .compact()
        .embedding_decoder(sales_history::EmbeddingDecoder::Parquet)
        .await
        .expect("compact");
    assert!(rows(&t.table, None).await == before);
}

#[tokio::test]
async fn a_custom_catalog_gets_a_clear_unsupported_error() {
    let t = local_table(DIM).await;
    t.table.append(sample(10, DIM, 1)).await.unwrap();
    let raw = crate::support::raw_catalog(&t.config).await;
    let custom = CatalogConfig::Custom {
        catalog: raw,
        warehouse: format!("file://{}", t.dir.path().canonicalize().unwrap().display()),
    };
    let table = SalesHistory::open(&custom, "test")
        .await
        .expect("open custom");
    let err = table.compact().await.expect_err("custom");
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let err = table
        .delete_where(ScanFilter::new().tenant("x"))
        .await
        .expect_err("custom");
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
}

/// pyiceberg (SQL catalog) reads what each operation left, sees the operation, appends after
/// it, and we read its append back.
#[cfg(feature = "python-tests")]
#[tokio::test]
async fn pyiceberg_reads_and_appends_after_compaction_and_delete() {
    use crate::support::pyiceberg;
    let t = local_table(DIM).await;
    small_appends(&t.table, 6, 10, 800).await;
    let wh = t.dir.path().to_str().unwrap().to_string();
    let read = |snapshot: Option<i64>| {
        let mut args = vec![
            "read".to_string(),
            "--warehouse".into(),
            wh.clone(),
            "--namespace".into(),
            "pricing_intelligence_test".into(),
        ];
        if let Some(id) = snapshot {
            args.push("--snapshot-id".into());
            args.push(id.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pyiceberg(&args)
    };
    let before = read(None);
    let compacted = t.table.compact().await.expect("compact");
    let after = read(None);
    assert_eq!(after["row_count"], before["row_count"]);
    assert_eq!(
        after["rows"], before["rows"],
        "pyiceberg reads the same rows"
    );
    let current = after["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["snapshot_id"] == compacted.snapshot_id.unwrap())
        .expect("pyiceberg sees the replace snapshot")
        .clone();
    assert_eq!(current["operation"], "replace");
    assert_eq!(current["summary"]["total-records"], "60");
    assert!(
        after["data_files"].as_array().unwrap().len()
            < before["data_files"].as_array().unwrap().len()
    );

    let tenant = rows(&t.table, None).await[0].tenant_id.clone();
    let deleted = t
        .table
        .delete_where(ScanFilter::new().tenant(tenant.clone()))
        .await
        .expect("delete");
    let after_delete = read(None);
    assert_eq!(
        after_delete["row_count"].as_u64().unwrap(),
        60 - deleted.rows_deleted
    );
    assert!(
        after_delete["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["tenant_id"] != tenant.as_str())
    );
    let op = after_delete["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["snapshot_id"] == deleted.snapshot_id.unwrap())
        .expect("pyiceberg sees the delete snapshot")["operation"]
        .clone();
    assert_eq!(op, deleted.operation.clone().unwrap().as_str());

    // pyiceberg appends on top; we read its rows.
    crate::support::pyiceberg_append(&wh, 7, "py-after-rewrite", 0);
    t.table.refresh().await.unwrap();
    let ours = rows(&t.table, None).await;
    assert_eq!(ours.len() as u64, 60 - deleted.rows_deleted + 7);
    assert_eq!(
        ours.iter()
            .filter(|r| r.tenant_id == "py-after-rewrite")
            .count(),
        7
    );
    // And we can compact pyiceberg's files with ours.
    t.table.compact().await.expect("compact after pyiceberg");
    assert_eq!(rows(&t.table, None).await, ours);
}

/// The same operations on Glue + S3 (the emulator): Athena's fields kept, peers, races,
/// faults at each step of the commit.
#[cfg(all(feature = "python-tests", feature = "glue"))]
mod on_glue {
    use super::*;
    use crate::moto::{FaultProxy, moto, pyiceberg_glue_args};
    use crate::support::pyiceberg;

    fn py(cmd: &str, table: &SalesHistory, bucket: &str, extra: &[&str]) -> serde_json::Value {
        let mut args =
            pyiceberg_glue_args(cmd, &format!("s3://{bucket}/warehouse"), &table.namespace());
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pyiceberg(&args)
    }

    fn operation_of(read: &serde_json::Value, snapshot_id: i64) -> String {
        read["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["snapshot_id"] == snapshot_id)
            .map(|s| s["operation"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_and_delete_on_glue_keep_athena_fields_and_peers() {
        let bucket = "rewrite-glue";
        let config = moto().fresh(bucket);
        let table = SalesHistory::ensure_with(
            &config,
            "rwglue",
            TableOptions::default().embedding_dimension(DIM),
        )
        .await
        .expect("ensure");
        small_appends(&table, 6, 10, 900).await;
        let before = rows(&table, None).await;
        let previous = table
            .iceberg_table()
            .metadata_location()
            .map(str::to_string);

        let done = table.compact().await.expect("compact on glue");
        assert!(done.files_removed > done.files_added && done.snapshot_id.is_some());
        crate::glue::check_athena_fields(&table, Some(previous.as_deref())).await;
        assert_eq!(rows(&table, None).await, before);
        let read = py("read", &table, bucket, &[]);
        assert_eq!(read["rows"].as_array().map(Vec::len), Some(before.len()));
        assert_eq!(operation_of(&read, done.snapshot_id.unwrap()), "replace");

        let tenant = before[0].tenant_id.clone();
        let previous = table
            .iceberg_table()
            .metadata_location()
            .map(str::to_string);
        let deleted = table
            .delete_where(ScanFilter::new().tenant(tenant.clone()))
            .await
            .expect("delete on glue");
        assert!(deleted.rows_deleted > 0);
        crate::glue::check_athena_fields(&table, Some(previous.as_deref())).await;
        let read = py("read", &table, bucket, &[]);
        assert_eq!(
            read["row_count"].as_u64(),
            Some(before.len() as u64 - deleted.rows_deleted)
        );
        assert_eq!(
            operation_of(&read, deleted.snapshot_id.unwrap()),
            deleted.operation.clone().unwrap()
        );

        py(
            "append",
            &table,
            bucket,
            &["--rows", "6", "--tenant", "py-glue"],
        );
        table.refresh().await.unwrap();
        let ours = rows(&table, None).await;
        assert_eq!(ours.iter().filter(|r| r.tenant_id == "py-glue").count(), 6);
        assert_eq!(
            ours.len() as u64,
            before.len() as u64 - deleted.rows_deleted + 6
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_and_compactions_race_on_glue_without_losing_a_row() {
        let config = moto().fresh("rewrite-race");
        let (rows, attempts) = race_rounds(&config, "rwrace", 3).await;
        eprintln!("glue race: {rows} rows, max compaction attempts {attempts}");
    }

    /// Storage faults while writing the manifests, the manifest list and the metadata file;
    /// a failing and a lost `UpdateTable` answer: the table is unchanged or committed once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn faults_at_each_step_of_the_rewrite_commit() {
        let bucket = "rewrite-faults";
        moto().create_bucket(bucket);
        let proxy = FaultProxy::start(&moto().endpoint());
        let config: CatalogConfig = moto()
            .glue_config(bucket)
            .s3_endpoint(proxy.endpoint())
            .glue_endpoint(proxy.endpoint())
            .into();
        let table = SalesHistory::ensure_with(
            &config,
            "rwfaults",
            TableOptions::default().embedding_dimension(DIM),
        )
        .await
        .expect("ensure");
        small_appends(&table, 4, 10, 950).await;
        let before = rows(&table, None).await;
        let unchanged = |table: SalesHistory, snapshot: Option<i64>, what: &'static str| async move {
            table.refresh().await.unwrap();
            assert_eq!(
                table.current_snapshot_id(),
                snapshot,
                "{what}: table changed"
            );
            let left = table
                .remove_orphan_files()
                .older_than(Utc::now() + chrono::Duration::hours(1))
                .dry_run()
                .await
                .expect("orphans");
            left.deleted_files
        };

        for (what, regex) in [
            ("data file", r"/data/.*\.parquet"),
            ("manifest", r"/metadata/.*-m\d+\.avro"),
            ("manifest list", r"/metadata/snap-.*\.avro"),
            ("table metadata", r"/metadata/.*\.metadata\.json"),
        ] {
            let snapshot = table.current_snapshot_id();
            proxy.set_rules(serde_json::json!([
                { "method": "PUT", "path_regex": regex, "times": -1, "action": "status", "status": 500 }
            ]));
            let err = table.compact().await.expect_err(what);
            let injected = proxy.stats()["injected"].as_u64().unwrap_or(0);
            proxy.clear();
            assert!(injected > 0, "{what}: no fault injected");
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
            let left = unchanged(table.clone(), snapshot, what).await;
            assert!(left.is_empty(), "{what}: files left behind: {left:?}");
        }
        assert_eq!(rows(&table, None).await, before);

        // The Glue requests of a run: those of the dry run (the refresh), then the swap's
        // GetTable and UpdateTable.
        proxy.clear();
        table.compact().dry_run(true).await.expect("dry run");
        let refresh_posts = proxy.stats()["log"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["method"] == "POST")
            .count();
        assert!(refresh_posts > 0);

        // UpdateTable answered 500 (and its SDK retries): refused, nothing changes.
        let snapshot = table.current_snapshot_id();
        proxy.set_rules(serde_json::json!([
            { "method": "POST", "path_regex": "", "skip": refresh_posts + 1, "times": 3, "action": "status", "status": 500 }
        ]));
        let err = table.compact().await.expect_err("UpdateTable fails");
        proxy.clear();
        assert!(err.is_retryable(), "{err:?}");
        table.refresh().await.unwrap();
        assert_eq!(
            table.current_snapshot_id(),
            snapshot,
            "a refused swap changed the table"
        );
        assert_eq!(rows(&table, None).await, before);

        // UpdateTable applied but its answer lost: committed once, found by its commit id.
        proxy.set_rules(serde_json::json!([
            { "method": "POST", "path_regex": "", "skip": refresh_posts + 1, "times": 1, "action": "drop_response" }
        ]));
        let done = table
            .compact()
            .await
            .expect("lost answer settles as committed");
        let injected = proxy.stats()["injected"].as_u64().unwrap_or(0);
        proxy.clear();
        assert_eq!(injected, 1);
        table.refresh().await.unwrap();
        assert_eq!(table.current_snapshot_id(), done.snapshot_id);
        let replaces = table
            .snapshots()
            .await
            .unwrap()
            .iter()
            .filter(|s| s.operation == "replace")
            .count();
        assert_eq!(replaces, 1);
        assert_eq!(rows(&table, None).await, before);
    }
}

/// 4 writers × 12 appends of 3 rows at once; the conflicts they retried.
async fn four_writers(writers: Vec<SalesHistory>, seed: u64) -> u64 {
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, table)| {
            tokio::spawn(async move {
                for i in 0..12u64 {
                    table
                        .append(sample(3, DIM, seed + w as u64 * 100 + i))
                        .await
                        .expect("append");
                }
                table.commit_stats().conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.expect("writer");
    }
    conflicts
}

/// Files nothing references (what lost races left behind).
async fn unreferenced(table: &SalesHistory) -> Vec<String> {
    table
        .remove_orphan_files()
        .older_than(Utc::now() + chrono::Duration::hours(1))
        .dry_run()
        .await
        .expect("orphans")
        .deleted_files
}

/// 4 writers × 12 appends on one table: every append lands once, and the attempts that lost a
/// race left nothing behind (iceberg's catalogs leave the metadata file of a refused
/// `update_table`; our path deletes what it staged).
pub async fn lost_races_leave_no_files(config: &CatalogConfig, stage: &str) -> (u64, u64) {
    let first = SalesHistory::ensure_with(
        config,
        stage,
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    let mut writers = Vec::new();
    for _ in 0..4 {
        writers.push(SalesHistory::open(config, stage).await.expect("open"));
    }
    let conflicts = four_writers(writers, 10_000).await;
    first.refresh().await.unwrap();
    assert_eq!(first.scan().count().await.unwrap(), 4 * 12 * 3);
    assert_eq!(
        first
            .snapshots()
            .await
            .unwrap()
            .iter()
            .filter(|s| s.operation == "append")
            .count(),
        48
    );
    (conflicts, unreferenced(&first).await.len() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_append_races_leave_no_metadata_files_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (conflicts, orphans) =
        lost_races_leave_no_files(&CatalogConfig::local(dir.path()), "races").await;
    eprintln!("sqlite: {conflicts} conflicts, {orphans} orphan files");
    assert!(conflicts > 0, "no race happened: the check proves nothing");
    assert_eq!(orphans, 0);
}

#[cfg(all(feature = "python-tests", feature = "glue"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_append_races_leave_no_metadata_files_on_glue() {
    let config = crate::moto::moto().fresh("rewrite-lost-races");
    let (conflicts, orphans) = lost_races_leave_no_files(&config, "rwraces").await;
    eprintln!("glue: {conflicts} conflicts, {orphans} orphan files");
    assert!(conflicts > 0, "no race happened: the check proves nothing");
    assert_eq!(orphans, 0);
}

/// The same 4 × 12 race through iceberg's own `Catalog::update_table` (a custom catalog keeps
/// iceberg's `fast_append`): what refused attempts wrote stays behind — the baseline for
/// `lost_append_races_leave_no_metadata_files_on_sqlite`, in the same test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iceberg_update_table_leaves_lost_race_metadata_files_ours_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let local = CatalogConfig::local(dir.path());
    let first = SalesHistory::ensure_with(
        &local,
        "races",
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    let warehouse = format!("file://{}", dir.path().canonicalize().unwrap().display());
    let mut writers = Vec::new();
    for _ in 0..4 {
        let custom = CatalogConfig::Custom {
            catalog: crate::support::raw_catalog(&local).await,
            warehouse: warehouse.clone(),
        };
        writers.push(SalesHistory::open(&custom, "races").await.expect("open"));
    }
    let conflicts = four_writers(writers, 20_000).await;
    first.refresh().await.unwrap();
    assert_eq!(first.scan().count().await.unwrap(), 4 * 12 * 3);
    let left = unreferenced(&first).await;
    let metadata_left = left
        .iter()
        .filter(|f| f.ends_with(".metadata.json"))
        .count();
    eprintln!(
        "iceberg update_table: {conflicts} conflicts, {metadata_left} orphan metadata files ({} orphan files)",
        left.len()
    );
    // Every refused attempt on iceberg's path wrote a manifest and a manifest list (and,
    // when the table moved between its load and its UPDATE, a metadata file) it never removes.
    if conflicts > 0 {
        assert!(
            left.len() as u64 >= conflicts,
            "{conflicts} refused attempts, {} files left",
            left.len()
        );
    }
}

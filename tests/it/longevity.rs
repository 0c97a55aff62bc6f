//! A table that stays fast for months: manifest merging on every commit (Java's MergeAppend
//! rules), metadata files deleted after commit, retention from table properties, and the
//! maintenance task beside a writer.

use std::time::Duration;

use iceberg::spec::{ManifestContentType, ManifestStatus};
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use sales_history::{CatalogConfig, SalesHistory};

use crate::support::{DIM, local_table, sample};

/// Sets table properties the way another engine (or an operator) would: through iceberg.
pub async fn set_properties(config: &CatalogConfig, table: &SalesHistory, props: &[(&str, &str)]) {
    let catalog = crate::support::raw_catalog(config).await;
    let current = catalog
        .load_table(table.iceberg_table().identifier())
        .await
        .expect("load");
    let tx = Transaction::new(&current);
    let action = props
        .iter()
        .fold(tx.update_table_properties(), |a, (k, v)| {
            a.set(k.to_string(), v.to_string())
        });
    let tx = action.apply(tx).expect("apply");
    tx.commit(catalog.as_ref()).await.expect("set properties");
    table.refresh().await.expect("refresh");
}

/// The data manifests of the current snapshot.
pub async fn manifests(table: &SalesHistory) -> Vec<iceberg::spec::ManifestFile> {
    let t = table.iceberg_table();
    let Some(current) = t.metadata().current_snapshot() else {
        return Vec::new();
    };
    t.manifest_list_reader(current)
        .load()
        .await
        .expect("manifest list")
        .consume_entries()
        .into_iter()
        .filter(|m| m.content == ManifestContentType::Data)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_merge_manifests_at_the_minimum_count_with_java_statuses() {
    let t = local_table(DIM).await;
    // Tables we create say so explicitly.
    let props = t.table.iceberg_table().metadata().properties().clone();
    for (k, v) in [
        ("commit.manifest-merge.enabled", "true"),
        ("commit.manifest.min-count-to-merge", "100"),
        ("commit.manifest.target-size-bytes", "8388608"),
        ("write.metadata.delete-after-commit.enabled", "true"),
        ("write.metadata.previous-versions-max", "100"),
    ] {
        assert_eq!(props.get(k).map(String::as_str), Some(v), "{k}");
    }
    set_properties(
        &t.config,
        &t.table,
        &[("commit.manifest.min-count-to-merge", "4")],
    )
    .await;
    let mut rows = 0u64;
    let mut counts = Vec::new();
    for seed in 0..9u64 {
        // One month per append: one new manifest per commit.
        let batch: Vec<_> = sample(40, DIM, seed)
            .into_iter()
            .filter(|r| r.sold_date.format("%Y-%m").to_string() == "2024-06")
            .collect();
        let batch = if batch.is_empty() {
            sample(3, DIM, seed)
        } else {
            batch
        };
        rows += batch.len() as u64;
        let out = t.table.append(batch).await.expect("append");
        let snapshot = out.committed().expect("committed").snapshot_id;
        let ms = manifests(&t.table).await;
        counts.push(ms.len());
        // Whatever was merged: every live file once, this snapshot's adds ADDED, the rest
        // EXISTING, no DELETED entry of an earlier snapshot.
        let mut live = 0u64;
        for m in &ms {
            let loaded = m
                .load_manifest(t.table.iceberg_table().file_io())
                .await
                .expect("load manifest");
            let merged_now = m.added_snapshot_id == snapshot;
            for e in loaded.entries() {
                if !merged_now {
                    // Kept as it was: written by an earlier commit, unmerged.
                    assert_ne!(e.status(), ManifestStatus::Deleted);
                    live += e.data_file().record_count();
                    continue;
                }
                match e.status() {
                    ManifestStatus::Added => {
                        assert_eq!(
                            e.snapshot_id(),
                            Some(snapshot),
                            "ADDED only by this snapshot"
                        )
                    }
                    ManifestStatus::Existing => {
                        assert_ne!(e.snapshot_id(), Some(snapshot));
                        assert!(e.sequence_number().is_some(), "sequence numbers kept");
                    }
                    ManifestStatus::Deleted => panic!("an earlier snapshot's DELETED entry kept"),
                }
                live += e.data_file().record_count();
            }
        }
        assert_eq!(live, rows, "every row's file listed once");
        assert_eq!(t.table.scan().count().await.unwrap(), rows);
    }
    // Below the minimum count nothing merges; at it, the bin holding the new manifest merges
    // into one: 1, 2, 3, then 4 → 1, 2, 3, 4 → 1, …
    assert_eq!(counts, vec![1, 2, 3, 1, 2, 3, 1, 2, 3], "{counts:?}");
    // Manifests merged away (including the ones a commit staged and merged at once) are
    // deleted: nothing is left unreferenced.
    let orphans = t
        .table
        .remove_orphan_files()
        .older_than(chrono::Utc::now() + chrono::Duration::seconds(5))
        .dry_run()
        .await
        .unwrap();
    assert!(
        orphans.deleted_files.is_empty(),
        "{:?}",
        orphans.deleted_files
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_disabled_keeps_one_manifest_per_commit() {
    let t = local_table(DIM).await;
    set_properties(
        &t.config,
        &t.table,
        &[
            ("commit.manifest-merge.enabled", "false"),
            ("commit.manifest.min-count-to-merge", "2"),
        ],
    )
    .await;
    for seed in 0..6u64 {
        t.table.append(sample(3, DIM, seed)).await.expect("append");
        assert_eq!(manifests(&t.table).await.len(), seed as usize + 1);
    }
    // A bad value is refused, naming the property, and nothing is written.
    set_properties(
        &t.config,
        &t.table,
        &[("commit.manifest-merge.enabled", "maybe")],
    )
    .await;
    let before = t.table.current_snapshot_id();
    let err = t
        .table
        .append(sample(3, DIM, 99))
        .await
        .expect_err("bad property");
    assert!(
        matches!(&err, sales_history::Error::Config { key, .. } if key == "commit.manifest-merge.enabled"),
        "{err:?}"
    );
    t.table.refresh().await.unwrap();
    assert_eq!(t.table.current_snapshot_id(), before);
    let orphans = t
        .table
        .remove_orphan_files()
        .older_than(chrono::Utc::now() + chrono::Duration::seconds(5))
        .dry_run()
        .await
        .unwrap();
    assert!(
        orphans.deleted_files.is_empty(),
        "{:?}",
        orphans.deleted_files
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_metadata_files_are_deleted_after_commit_but_never_one_the_log_names() {
    let t = local_table(DIM).await;
    set_properties(
        &t.config,
        &t.table,
        &[("write.metadata.previous-versions-max", "3")],
    )
    .await;
    let metadata_dir = std::path::PathBuf::from(
        t.table
            .location()
            .strip_prefix("file://")
            .unwrap()
            .to_string(),
    )
    .join("metadata");
    for seed in 0..8u64 {
        t.table.append(sample(3, DIM, seed)).await.expect("append");
        let current = t.table.iceberg_table();
        let log: Vec<String> = current
            .metadata()
            .metadata_log()
            .iter()
            .map(|l| l.metadata_file.clone())
            .collect();
        assert!(log.len() <= 3, "{log:?}");
        for f in &log {
            let path = f.strip_prefix("file://").unwrap_or(f);
            assert!(
                std::path::Path::new(path).exists(),
                "a file the metadata log names was deleted: {f}"
            );
        }
        let on_disk = std::fs::read_dir(&metadata_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".metadata.json")
            })
            .count();
        // The current file plus what the log names (the iceberg-written property change and
        // the creation are in the log or already gone).
        assert!(
            on_disk <= log.len() + 1,
            "commit {seed}: {on_disk} metadata files for a log of {}",
            log.len()
        );
    }
    // Readers still open it from the catalog.
    let again = SalesHistory::open(&t.config, "test").await.expect("open");
    assert_eq!(again.scan().count().await.unwrap(), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_properties_are_the_expiry_defaults() {
    let t = local_table(DIM).await;
    for seed in 0..6u64 {
        t.table.append(sample(3, DIM, seed)).await.expect("append");
    }
    // Defaults (no property): 5 days, keep 1 → nothing this young expires.
    let none = t.table.expire_snapshots().await.expect("expire");
    assert!(none.expired_snapshots.is_empty(), "{none:?}");
    set_properties(
        &t.config,
        &t.table,
        &[
            ("history.expire.max-snapshot-age-ms", "0"),
            ("history.expire.min-snapshots-to-keep", "3"),
        ],
    )
    .await;
    let done = t.table.expire_snapshots().await.expect("expire");
    assert_eq!(done.expired_snapshots.len(), 3, "{done:?}");
    assert_eq!(t.table.snapshots().await.unwrap().len(), 3);
    assert_eq!(t.table.scan().count().await.unwrap(), 18);
    // An explicit setting wins over the property.
    let more = t
        .table
        .expire_snapshots()
        .retain_last(1)
        .await
        .expect("expire");
    assert_eq!(more.expired_snapshots.len(), 2);
    // A bad property is a typed error naming it.
    set_properties(
        &t.config,
        &t.table,
        &[("history.expire.min-snapshots-to-keep", "lots")],
    )
    .await;
    let err = t.table.expire_snapshots().await.expect_err("bad property");
    assert!(
        matches!(&err, sales_history::Error::Config { key, .. } if key == "history.expire.min-snapshots-to-keep"),
        "{err:?}"
    );
}

/// The maintenance task beside a writer committing every ~50 ms: it compacts the month being
/// written (landing despite the writer's commits), never fails an append, and stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintainer_compacts_beside_a_writer_without_failing_it() {
    let t = local_table(DIM).await;
    let maintainer = t
        .table
        .maintainer()
        .every(Duration::from_millis(300))
        .after_commits(Some(10))
        .min_small_files(4)
        .orphans_older_than(None)
        .start()
        .expect("start");
    let writer = t.table.clone();
    let mut rows = 0u64;
    let mut watch = maintainer.watch();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut commits = 0u64;
    loop {
        let batch: Vec<_> = sample(4, DIM, 1000 + commits)
            .into_iter()
            .map(|mut r| {
                r.sold_date =
                    chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2025, 3, 10, 12, 0, 0)
                        .unwrap();
                r.season = None;
                r
            })
            .collect();
        writer.append(batch).await.expect("the writer never fails");
        rows += 4;
        commits += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = watch.borrow_and_update().clone();
        if (s.compactions >= 2 && commits >= 40) || std::time::Instant::now() > deadline {
            break;
        }
    }
    let stats = maintainer.stop().await;
    assert!(stats.compactions >= 2, "{stats:?}");
    assert_eq!(stats.failed_runs, 0, "{stats:?}");
    assert!(stats.files_compacted >= 8, "{stats:?}");
    t.table.refresh().await.unwrap();
    assert_eq!(t.table.scan().count().await.unwrap(), rows);
    let files = t.table.scan().plan().await.unwrap().files.len() as u64;
    assert!(files < commits, "{files} files after {commits} commits");
    let ops: Vec<String> = t
        .table
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.operation)
        .collect();
    assert!(ops.iter().any(|o| o == "replace"), "{ops:?}");
}

/// pyiceberg plans and reads a table whose manifests we merged, appends to it (its own fast
/// append adds a manifest), and we read its rows back; merging goes on after it.
#[cfg(feature = "python-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_reads_merged_manifests_and_appends_after_them() {
    use crate::support::pyiceberg;
    let t = local_table(DIM).await;
    set_properties(
        &t.config,
        &t.table,
        &[("commit.manifest.min-count-to-merge", "3")],
    )
    .await;
    for seed in 0..7u64 {
        t.table.append(sample(5, DIM, seed)).await.expect("append");
    }
    let merged = manifests(&t.table).await;
    assert!(merged.len() < 7, "merged: {}", merged.len());
    let wh = t.dir.path().to_str().unwrap().to_string();
    let read = || {
        pyiceberg(&[
            "read",
            "--warehouse",
            &wh,
            "--namespace",
            "pricing_intelligence_test",
        ])
    };
    let got = read();
    assert_eq!(got["row_count"], 35);
    let mut ours = t.table.scan().to_records().await.unwrap();
    assert_eq!(ours.len(), 35);
    assert_eq!(got["rows"].as_array().unwrap().len(), 35);
    crate::support::pyiceberg_append(&wh, 4, "peer", 7);
    t.table.refresh().await.unwrap();
    assert_eq!(t.table.scan().count().await.unwrap(), 39);
    for seed in 10..13u64 {
        t.table.append(sample(5, DIM, seed)).await.expect("append");
    }
    assert!(manifests(&t.table).await.len() < 11);
    ours = t.table.scan().to_records().await.unwrap();
    assert_eq!(ours.len(), 54);
    assert_eq!(read()["row_count"], 54);
}

/// An appender and the maintenance task on one Glue (moto) table: every row exactly once,
/// compactions landing beside the flushes, the conflicts retried counted. 400 commits in CI
/// (`LONGEVITY_GLUE_COMMITS` sets another number, e.g. 2000).
#[cfg(all(feature = "python-tests", feature = "glue"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appender_and_the_maintainer_share_a_glue_table() {
    use sales_history::TableOptions;
    let commits: u64 = std::env::var("LONGEVITY_GLUE_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let config = crate::moto::moto().fresh("longevity");
    let table = SalesHistory::ensure_with(
        &config,
        "longevity",
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    set_properties(
        &config,
        &table,
        &[("commit.manifest.min-count-to-merge", "20")],
    )
    .await;
    let maintainer = table
        .maintainer()
        .every(Duration::from_secs(2))
        .after_commits(Some(50))
        .min_small_files(8)
        .orphans_older_than(None)
        .start()
        .expect("maintainer");
    let appender = table
        .appender()
        .max_rows(2)
        .max_age(Duration::from_secs(60))
        .start()
        .expect("appender");
    let month = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2025, 5, 5, 0, 0, 0).unwrap();
    let mut pushed = 0u64;
    for i in 0..commits {
        for mut r in sample(2, DIM, 5000 + i) {
            r.sold_date = month + chrono::Duration::seconds(i as i64);
            r.season = None;
            r.product_id = format!("p-{i}-{pushed}");
            appender
                .push_at(
                    r,
                    sales_history::SourcePosition::new("glue-soak", (pushed + 1).to_string())
                        .unwrap(),
                )
                .await
                .expect("push");
            pushed += 1;
        }
        // One commit per two rows, about every 100 ms (a stream flushing often).
        appender.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = appender.close().await.expect("close");
    let stats = maintainer.stop().await;
    table.refresh().await.unwrap();
    let rows = table.scan().to_records().await.unwrap();
    assert_eq!(rows.len() as u64, pushed, "every row once");
    let mut ids: Vec<&str> = rows.iter().map(|r| r.product_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, pushed, "no duplicates");
    assert!(stats.compactions >= 2, "{stats:?}");
    // A run whose compaction lost every race to the writer is reported (and retried by the
    // next run), never passed on to the writer; most runs land.
    assert!(stats.failed_runs * 2 <= stats.runs, "{stats:?}");
    let files = table.scan().plan().await.unwrap().files.len() as u64;
    assert!(
        files < commits / 2,
        "{files} live files after {commits} commits: {stats:?}"
    );
    assert!(manifests(&table).await.len() <= 40);
    let commit_stats = table.commit_stats();
    println!(
        "Glue: {commits} appender commits + {} compactions ({} retried attempts, {} of {} runs failed); handle: {} commits, {} conflicts and {} throttles retried; {files} live files",
        stats.compactions,
        stats.compaction_retries,
        stats.failed_runs,
        stats.runs,
        commit_stats.commits,
        commit_stats.conflicts,
        commit_stats.throttled
    );
}

/// A table pyiceberg created (as Athena DDL would), adopted, with merging disabled by its own
/// property: each of our appends adds one manifest, none is merged.
#[cfg(feature = "python-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_pyiceberg_table_with_merging_disabled_keeps_one_manifest_per_commit() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().to_str().unwrap().to_string();
    let created = crate::support::pyiceberg(&[
        "create",
        "--warehouse",
        &wh,
        "--namespace",
        "pricing_intelligence_adoptmerge",
        "--codec",
        "snappy",
        "--rows",
        "10",
        "--tenant",
        "athena",
    ]);
    assert!(
        created["data_files"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    );
    let config = CatalogConfig::local(dir.path());
    let table = SalesHistory::open(&config, "adoptmerge")
        .await
        .expect("adopt");
    set_properties(
        &config,
        &table,
        &[
            ("commit.manifest-merge.enabled", "false"),
            ("commit.manifest.min-count-to-merge", "2"),
        ],
    )
    .await;
    let dim = table.embedding_dimension();
    let start = manifests(&table).await.len();
    for seed in 0..5u64 {
        table.append(sample(3, dim, seed)).await.expect("append");
        assert_eq!(manifests(&table).await.len(), start + seed as usize + 1);
    }
    assert_eq!(table.scan().count().await.unwrap(), 25);
    // Our own defaults were not imposed on it.
    let props = table.iceberg_table().metadata().properties().clone();
    assert_eq!(
        props
            .get("commit.manifest-merge.enabled")
            .map(String::as_str),
        Some("false")
    );
    assert!(!props.contains_key("write.metadata.delete-after-commit.enabled"));
}

/// The count cap: snapshots beyond the newest N expire whatever their age (the 5-day default
/// expires none of these), never below `retain_last`; the maintainer applies its
/// `max_snapshots` on every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_cap_expires_young_snapshots_and_the_maintainer_applies_it() {
    let t = local_table(DIM).await;
    for seed in 0..8u64 {
        t.table.append(sample(3, DIM, seed)).await.expect("append");
    }
    let plan = t
        .table
        .expire_snapshots()
        .keep_at_most(6)
        .dry_run()
        .await
        .expect("dry run");
    assert_eq!(plan.expired_snapshots.len(), 2, "{plan:?}");
    assert_eq!(t.table.snapshots().await.unwrap().len(), 8);
    // retain_last wins over a smaller cap.
    let done = t
        .table
        .expire_snapshots()
        .retain_last(5)
        .keep_at_most(2)
        .await
        .expect("expire");
    assert_eq!(done.expired_snapshots.len(), 3, "{done:?}");
    let left = t.table.snapshots().await.unwrap();
    assert_eq!(left.len(), 5);
    assert_eq!(t.table.scan().count().await.unwrap(), 24);
    // The oldest went: the survivors are the newest five.
    let mut ids: Vec<i64> = left.iter().map(|s| s.snapshot_id).collect();
    ids.sort();
    assert!(!done.expired_snapshots.iter().any(|id| ids.contains(id)));

    let maintainer = t
        .table
        .maintainer()
        .compact(false)
        .orphans_older_than(None)
        .max_snapshots(Some(2))
        .start()
        .expect("start");
    let mut watch = maintainer.watch();
    maintainer.run_now();
    tokio::time::timeout(Duration::from_secs(30), watch.wait_for(|s| s.runs >= 1))
        .await
        .expect("a run within 30 s")
        .expect("watch");
    let stats = maintainer.stop().await;
    assert_eq!(stats.failed_runs, 0, "{stats:?}");
    assert_eq!(stats.snapshots_expired, 3, "{stats:?}");
    assert_eq!(t.table.snapshots().await.unwrap().len(), 2);
    assert_eq!(t.table.scan().count().await.unwrap(), 24);
}

//! Expiry and orphan removal delete only unreferenced files; time travel to retained
//! snapshots and pyiceberg reads still work afterwards.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use sales_history::SalesHistory;

use crate::support::{DIM, local_table, sample, tree};

#[tokio::test]
async fn expiry_deletes_only_what_no_retained_snapshot_reads() {
    let t = local_table(DIM).await;
    for i in 0..5 {
        t.table
            .append(sample(20, DIM, 200 + i))
            .await
            .expect("append");
    }
    let snaps = t.table.snapshots().await.unwrap();
    let manifest_lists: Vec<String> = t
        .table
        .iceberg_table()
        .metadata()
        .snapshots()
        .map(|s| s.manifest_list().to_string())
        .collect();

    let plan = t
        .table
        .expire_snapshots()
        .retain_last(2)
        .any_age()
        .dry_run()
        .await
        .expect("dry run");
    assert_eq!(plan.expired_snapshots.len(), 3);
    assert!(!plan.deleted_files.is_empty());
    assert_eq!(
        t.table.snapshots().await.unwrap().len(),
        5,
        "a dry run changes nothing"
    );

    let done = t
        .table
        .expire_snapshots()
        .retain_last(2)
        .any_age()
        .await
        .expect("expire");
    assert_eq!(done.expired_snapshots, plan.expired_snapshots);
    assert_eq!(done.deleted_files, plan.deleted_files);
    // Append-only: every data file is still live, so only the expired manifest lists go.
    assert!(
        done.deleted_files
            .iter()
            .all(|f| f.ends_with(".avro") && f.contains("/metadata/snap-")),
        "{:?}",
        done.deleted_files
    );
    for f in &done.deleted_files {
        assert!(
            manifest_lists.contains(f)
                || manifest_lists
                    .iter()
                    .any(|m| m.ends_with(f.trim_start_matches("file://")))
        );
    }
    let left: BTreeSet<i64> = t
        .table
        .snapshots()
        .await
        .unwrap()
        .iter()
        .map(|s| s.snapshot_id)
        .collect();
    assert_eq!(left, snaps[3..].iter().map(|s| s.snapshot_id).collect());

    // Every row is still there, time travel to a retained snapshot works, files are intact.
    assert_eq!(t.table.scan().count().await.unwrap(), 100);
    assert_eq!(
        t.table
            .scan()
            .snapshot_id(snaps[3].snapshot_id)
            .count()
            .await
            .unwrap(),
        80
    );
    let report = SalesHistory::verify(&t.config, "test").await.unwrap();
    assert!(report.passed(), "{report}");
    #[cfg(feature = "python-tests")]
    {
        // A real peer still reads the table after the clean-up.
        let wh = t.dir.path().to_str().unwrap();
        let got = crate::support::pyiceberg(&[
            "read",
            "--warehouse",
            wh,
            "--namespace",
            "pricing_intelligence_test",
            "--no-rows",
        ]);
        assert_eq!(got["row_count"], 100);
        assert_eq!(got["snapshots"].as_array().map(Vec::len), Some(2));
    }

    // Nothing older than a day ago: nothing to do.
    let none = t
        .table
        .expire_snapshots()
        .older_than(Utc::now() - Duration::days(1))
        .await
        .unwrap();
    assert!(none.expired_snapshots.is_empty() && none.deleted_files.is_empty());
}

#[tokio::test]
async fn orphan_removal_deletes_only_unreferenced_old_files() {
    let t = local_table(DIM).await;
    t.table.append(sample(40, DIM, 1)).await.expect("append");
    t.table.append(sample(10, DIM, 2)).await.expect("append");
    let root = t
        .dir
        .path()
        .join("pricing_intelligence_test.db/sales_history");
    // A crashed writer's data file and manifest.
    let data_dir = root.join("data/sold_date_month=2025-01");
    std::fs::create_dir_all(&data_dir).unwrap();
    let stray_data = data_dir.join("00000-crashed-writer.parquet");
    std::fs::write(&stray_data, b"PAR1 not really").unwrap();
    let stray_manifest = root.join("metadata/crashed-m0.avro");
    std::fs::write(&stray_manifest, b"avro?").unwrap();
    let before = tree(t.dir.path());

    // Too recent: kept.
    let recent = t
        .table
        .remove_orphan_files()
        .older_than(Utc::now() - Duration::hours(1))
        .await
        .unwrap();
    assert!(
        recent.deleted_files.is_empty(),
        "{:?}",
        recent.deleted_files
    );

    let cutoff = Utc::now() + Duration::seconds(1);
    let plan = t
        .table
        .remove_orphan_files()
        .older_than(cutoff)
        .dry_run()
        .await
        .unwrap();
    let mut want = vec![
        format!(
            "file://{}",
            std::fs::canonicalize(&stray_manifest).unwrap().display()
        ),
        format!(
            "file://{}",
            std::fs::canonicalize(&stray_data).unwrap().display()
        ),
    ];
    want.sort();
    assert_eq!(plan.deleted_files, want);
    assert_eq!(tree(t.dir.path()), before, "a dry run deletes nothing");

    let done = t
        .table
        .remove_orphan_files()
        .older_than(cutoff)
        .await
        .unwrap();
    assert_eq!(done.deleted_files, want);
    assert!(!stray_data.exists() && !stray_manifest.exists());
    assert_eq!(tree(t.dir.path()).len(), before.len() - 2);
    assert_eq!(t.table.scan().count().await.unwrap(), 50);
    let first = t.table.snapshots().await.unwrap()[0].snapshot_id;
    assert_eq!(t.table.scan().snapshot_id(first).count().await.unwrap(), 40);
    let report = SalesHistory::verify(&t.config, "test").await.unwrap();
    assert!(report.passed(), "{report}");
}

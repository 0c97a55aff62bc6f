//! Many writers at once, each with its own catalog handle: every append lands exactly once.

use std::collections::BTreeSet;
use std::sync::Arc;

use sales_history::{CatalogConfig, CommitStats, SalesHistory, TableOptions};

use crate::support::{DIM, sample};

const WRITERS: usize = 8;
const APPENDS: usize = 10;
const ROWS: usize = 5;

/// Runs the writers; returns the summed commit stats.
pub async fn race(config: &CatalogConfig, stage: &str) -> CommitStats {
    let base = SalesHistory::ensure_with(
        config,
        stage,
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    let before = base.snapshots().await.unwrap().len();
    let config = Arc::new(config.clone());
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let config = config.clone();
        let stage = stage.to_string();
        handles.push(tokio::spawn(async move {
            let table = SalesHistory::open(&config, &stage).await.expect("open");
            for a in 0..APPENDS {
                let mut rows = sample(ROWS, DIM, (w * 1000 + a) as u64);
                for (r, row) in rows.iter_mut().enumerate() {
                    row.product_id = format!("w{w}-a{a}-r{r}");
                }
                let out = table.append(rows).await.expect("append");
                assert!(out.committed().is_some());
            }
            table.commit_stats()
        }));
    }
    let mut total = CommitStats::default();
    for h in handles {
        let s = h.await.expect("writer task");
        total.commits += s.commits;
        total.conflicts += s.conflicts;
        total.throttled += s.throttled;
    }
    let table = SalesHistory::open(&config, stage).await.expect("reopen");
    assert_eq!(
        table.snapshots().await.unwrap().len() - before,
        WRITERS * APPENDS,
        "one snapshot per append"
    );
    let batches = table
        .scan()
        .select([sales_history::Column::ProductId])
        .to_batches()
        .await
        .expect("scan");
    let mut seen = Vec::new();
    for b in &batches {
        let ids = arrow_array::cast::AsArray::as_string::<i32>(b.column(0));
        seen.extend(ids.iter().map(|s| s.unwrap_or_default().to_string()));
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        seen.len(),
        WRITERS * APPENDS * ROWS,
        "rows lost or duplicated"
    );
    assert_eq!(unique.len(), seen.len(), "duplicated rows");
    for w in 0..WRITERS {
        for a in 0..APPENDS {
            assert!(
                unique.contains(&format!("w{w}-a{a}-r0")),
                "append {w}/{a} lost"
            );
        }
    }
    assert_eq!(total.commits as usize, WRITERS * APPENDS);
    println!(
        "{stage}: {} appends by {WRITERS} writers, {} conflicts retried, {} throttled, rows lost 0",
        WRITERS * APPENDS,
        total.conflicts,
        total.throttled
    );
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    race(&CatalogConfig::local(dir.path()), "race").await;
}

#[cfg(all(feature = "python-tests", feature = "glue"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_on_glue() {
    let moto = crate::moto::moto();
    let stats = race(&moto.fresh("race-bucket"), "race_glue").await;
    // With 8 writers hammering one table, conflicts must have happened and been retried.
    assert!(
        stats.conflicts > 0,
        "no conflicts: is the VersionId patch active? {stats:?}"
    );
}

/// With no retry budget, losing writers get a typed, retryable `CommitConflict`; the table holds
/// exactly the appends reported successful, and the losers' data files are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicts_beyond_the_retry_budget_are_typed_and_clean() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let options = TableOptions::default()
        .embedding_dimension(DIM)
        .commit_retries(0);
    SalesHistory::ensure_with(&config, "budget", options)
        .await
        .expect("ensure");
    let mut handles = Vec::new();
    for w in 0..4 {
        let config = config.clone();
        handles.push(tokio::spawn(async move {
            let table = SalesHistory::open(&config, "budget").await.expect("open");
            let (mut ok, mut conflicts) = (0usize, 0usize);
            for a in 0..6 {
                match table.append(sample(ROWS, DIM, (w * 100 + a) as u64)).await {
                    Ok(out) => {
                        assert!(out.committed().is_some());
                        ok += 1;
                    }
                    Err(e @ sales_history::Error::CommitConflict { .. }) => {
                        assert!(e.is_retryable());
                        conflicts += 1;
                    }
                    Err(e) => panic!("unexpected error: {e:?}"),
                }
            }
            (ok, conflicts)
        }));
    }
    let (mut ok, mut conflicts) = (0, 0);
    for h in handles {
        let (o, c) = h.await.unwrap();
        ok += o;
        conflicts += c;
    }
    assert_eq!(ok + conflicts, 24);
    let table = SalesHistory::open(&config, "budget").await.expect("reopen");
    assert_eq!(table.snapshots().await.unwrap().len(), ok);
    assert_eq!(
        table.scan().count().await.expect("count") as usize,
        ok * ROWS
    );
    // Every Parquet file on disk is referenced by the table.
    let on_disk = crate::support::tree(dir.path())
        .into_iter()
        .filter(|(p, _)| p.ends_with(".parquet"))
        .count();
    let referenced: u64 = table
        .snapshots()
        .await
        .unwrap()
        .iter()
        .filter_map(|s| s.added_files)
        .sum();
    assert_eq!(
        on_disk as u64, referenced,
        "{conflicts} failed appends left data files behind"
    );
    println!("retry budget 0: {ok} appends committed, {conflicts} refused with CommitConflict");
}

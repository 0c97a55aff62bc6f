//! The streaming appender: flush triggers, positions (exactly-once resume), failures that keep
//! rows buffered, background errors reported, drop semantics, backpressure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sales_history::{CatalogConfig, Error, SalesHistory, SourcePosition, TableOptions};

use crate::faulty_catalog::{Fault, FaultyCatalog};
use crate::support::{DIM, local_table, position_of, push_alternating, sample};

const HOUR: Duration = Duration::from_secs(3600);

/// A table whose catalog is the real SQLite one wrapped in a `FaultyCatalog`.
async fn faulty_table(dir: &std::path::Path) -> (Arc<FaultyCatalog>, SalesHistory) {
    let real = CatalogConfig::local(dir);
    let faulty = FaultyCatalog::new(crate::support::raw_catalog(&real).await);
    let config = CatalogConfig::Custom {
        catalog: faulty.clone(),
        warehouse: format!("file://{}", std::fs::canonicalize(dir).unwrap().display()),
    };
    let options = TableOptions::default()
        .embedding_dimension(DIM)
        .commit_retries(2);
    let table = SalesHistory::ensure_with(&config, "stream", options)
        .await
        .unwrap();
    (faulty, table)
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_on_rows_and_on_age_one_snapshot_each() {
    let t = local_table(DIM).await;
    // By rows: max_rows 10 → each 10th row triggers a background flush; close flushes 5.
    let appender = t
        .table
        .appender()
        .max_rows(10)
        .max_age(HOUR)
        .start()
        .unwrap();
    let rows = sample(25, DIM, 1);
    for (i, chunk) in rows.chunks(10).take(2).enumerate() {
        for r in &chunk[..9] {
            appender.push(r.clone()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            appender.stats().commits,
            i as u64,
            "9 rows do not trigger a flush"
        );
        appender.push(chunk[9].clone()).await.unwrap();
        wait_for("a flush", async || appender.stats().commits == i as u64 + 1).await;
    }
    for r in &rows[20..] {
        appender.push(r.clone()).await.unwrap();
    }
    assert_eq!(appender.stats().buffered_rows, 5);
    let last = appender.close().await.unwrap().expect("a last commit");
    assert_eq!(last.rows, 5);
    let snaps = t.table.snapshots().await.unwrap();
    assert_eq!(snaps.len(), 3);
    assert_eq!(
        snaps
            .iter()
            .map(|s| s.added_rows.unwrap())
            .collect::<Vec<_>>(),
        vec![10, 10, 5]
    );
    // By age: 3 rows, flushed by the background task after max_age without any call.
    let appender = t
        .table
        .appender()
        .max_age(Duration::from_millis(200))
        .start()
        .unwrap();
    for r in sample(3, DIM, 2) {
        appender.push(r).await.unwrap();
    }
    assert_eq!(t.table.scan().count().await.unwrap(), 25);
    wait_for("the age flush", async || {
        t.table.scan().count().await.unwrap() == 28
    })
    .await;
    assert_eq!(appender.stats().commits, 1);
    assert_eq!(
        appender.close().await.unwrap(),
        None,
        "nothing left to flush"
    );
    assert_eq!(t.table.snapshots().await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_are_committed_with_the_rows_and_survive_expiry() {
    let t = local_table(DIM).await;
    assert_eq!(
        t.table.last_committed_position("stdin:a").await.unwrap(),
        None
    );
    let appender = t
        .table
        .appender()
        .max_rows(4)
        .max_age(HOUR)
        .start()
        .unwrap();
    let rows = sample(10, DIM, 3);
    push_alternating(&appender, rows, ("stdin:a", "stdin:b"), 100).await;
    appender.close().await.unwrap();
    let pos = |s| position_of(&t.table, s);
    assert_eq!(pos("stdin:a").await, Some(108));
    assert_eq!(pos("stdin:b").await, Some(109));
    // A plain append later carries them forward; expiring down to the last snapshot keeps them.
    t.table.append(sample(2, DIM, 4)).await.unwrap();
    let latest = t.table.snapshots().await.unwrap().pop().unwrap();
    assert_eq!(latest.operation, "append");
    let report = t
        .table
        .expire_snapshots()
        .retain_last(1)
        .any_age()
        .await
        .unwrap();
    assert!(!report.expired_snapshots.is_empty());
    assert_eq!(t.table.snapshots().await.unwrap().len(), 1);
    assert_eq!(pos("stdin:a").await, Some(108));
    assert_eq!(pos("stdin:b").await, Some(109));
    assert_eq!(t.table.scan().count().await.unwrap(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_refused_at_push_and_never_buffered() {
    let t = local_table(DIM).await;
    let appender = t.table.appender().max_age(HOUR).start().unwrap();
    let mut rows = sample(3, DIM, 5);
    appender.push(rows[0].clone()).await.unwrap();
    rows[1].embedding = Some(vec![0.0; DIM + 1]);
    match appender.push(rows[1].clone()).await {
        Err(Error::InvalidValue { column, .. }) => assert_eq!(column.name(), "embedding"),
        other => panic!("expected InvalidValue, got {other:?}"),
    }
    rows[2].product_id = String::new();
    assert!(matches!(
        appender.push(rows[2].clone()).await,
        Err(Error::InvalidValue { .. })
    ));
    assert_eq!(appender.stats().buffered_rows, 1);
    appender.close().await.unwrap();
    assert_eq!(t.table.scan().count().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_keeps_its_rows_and_commits_them_once_later() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, table) = faulty_table(dir.path()).await;
    let appender = table.appender().max_age(HOUR).start().unwrap();
    for (i, r) in sample(6, DIM, 6).into_iter().enumerate() {
        appender
            .push_at(r, SourcePosition::at("src", i as u64).unwrap())
            .await
            .unwrap();
    }
    // Refused: typed, not retryable; the rows stay buffered.
    faults.push([Fault::AccessDenied]);
    let err = appender.flush().await.expect_err("denied");
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(appender.stats().buffered_rows, 6);
    assert_eq!(table.scan().count().await.unwrap(), 0);
    // Lost answer and the table cannot be re-read: outcome unknown, rows still buffered; the
    // retry (same commit id) finds the snapshot and commits nothing twice.
    faults.push([Fault::LostAnswerAndReload]);
    let err = appender.flush().await.expect_err("unknown outcome");
    assert!(matches!(err, Error::CommitStateUnknown { .. }), "{err:?}");
    assert_eq!(appender.stats().buffered_rows, 6);
    appender.flush().await.expect("retry");
    assert_eq!(appender.stats().buffered_rows, 0);
    assert_eq!(table.scan().count().await.unwrap(), 6, "no row twice");
    assert_eq!(table.snapshots().await.unwrap().len(), 1);
    assert_eq!(
        table
            .last_committed_position("src")
            .await
            .unwrap()
            .and_then(|p| p.as_u64()),
        Some(5)
    );
    appender.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_failure_is_reported_on_the_next_push() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, table) = faulty_table(dir.path()).await;
    let appender = table.appender().max_rows(3).max_age(HOUR).start().unwrap();
    faults.push([Fault::AccessDenied]);
    let rows = sample(10, DIM, 7);
    for r in &rows[..3] {
        appender.push(r.clone()).await.unwrap();
    }
    // The background flush of those 3 fails; the next push says so and does not take its row.
    wait_for("the failed flush", async || {
        appender.stats().failed_flushes == 1
    })
    .await;
    let err = appender
        .push(rows[3].clone())
        .await
        .expect_err("the push after a failed flush reports it");
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(
        appender.stats().buffered_rows,
        3,
        "the failed rows stay, the new one was not taken"
    );
    let last = appender.close().await.unwrap();
    assert!(last.is_some());
    assert_eq!(table.scan().count().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_without_close_stops_the_task_and_commits_nothing() {
    let t = local_table(DIM).await;
    let appender = t
        .table
        .appender()
        .max_age(Duration::from_millis(100))
        .start()
        .unwrap();
    for r in sample(3, DIM, 8) {
        appender.push(r).await.unwrap();
    }
    drop(appender);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        t.table.scan().count().await.unwrap(),
        0,
        "the background task was stopped"
    );
    assert!(t.table.snapshots().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_catalog_makes_push_wait_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, table) = faulty_table(dir.path()).await;
    faults.stall_updates(Some(Duration::from_millis(700)));
    let limit = 64 * 1024;
    let appender = Arc::new(
        table
            .appender()
            .max_rows(40)
            .max_bytes(limit / 4)
            .max_buffered_bytes(limit)
            .max_age(Duration::from_millis(50))
            .start()
            .unwrap(),
    );
    let watcher = {
        let a = appender.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            for _ in 0..400 {
                peak = peak.max(a.stats().buffered_bytes);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak
        })
    };
    let mut longest = Duration::ZERO;
    let rows = sample(600, DIM, 9);
    let started = Instant::now();
    for r in rows {
        let t0 = Instant::now();
        appender.push(r).await.unwrap();
        longest = longest.max(t0.elapsed());
    }
    let pushing = started.elapsed();
    faults.stall_updates(None);
    let peak = watcher.await.unwrap();
    let appender = Arc::into_inner(appender).expect("one owner left");
    appender.close().await.unwrap();
    assert!(peak <= limit as u64, "buffered {peak} bytes, limit {limit}");
    assert!(
        longest >= Duration::from_millis(300),
        "push never waited for the stalled catalog (longest {longest:?}, all {pushing:?})"
    );
    assert_eq!(table.scan().count().await.unwrap(), 600);
    let _ = Utc::now();
}

/// A catalog that refuses every commit while the buffer is full: the background task retries
/// the failed flush after a growing pause (not at once, over and over, each try writing its
/// files again), and a push waiting for buffer space gets the error instead of waiting for as
/// long as the catalog refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_catalog_with_a_full_buffer_is_retried_with_pauses_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, table) = faulty_table(dir.path()).await;
    faults.push(std::iter::repeat_n(Fault::AccessDenied, 10_000));
    let appender = table
        .appender()
        .max_rows(3)
        .max_bytes(4 << 10)
        .max_buffered_bytes(8 << 10)
        .max_age(Duration::from_millis(100))
        .start()
        .unwrap();
    let rows = sample(40, DIM, 10);
    for r in &rows[..3] {
        appender.push(r.clone()).await.unwrap();
    }
    wait_for("the failed flush", async || {
        appender.stats().failed_flushes >= 1
    })
    .await;
    // The next push reports it, and is not taken.
    let err = appender.push(rows[3].clone()).await.expect_err("reported");
    assert!(!err.is_retryable(), "{err:?}");
    // Pushes fill the buffer behind the failed unit (full at 3 rows) until one, waiting for
    // the space the failed rows hold (a KiB a row here), gets the next failure.
    let mut pushed = 0;
    let mut refused = None;
    for r in &rows[3..] {
        match tokio::time::timeout(Duration::from_secs(20), appender.push(r.clone())).await {
            Ok(Ok(())) => pushed += 1,
            Ok(Err(e)) => {
                refused = Some(e);
                break;
            }
            Err(_) => panic!("a push waited 20 s for a buffer the refusing catalog keeps full"),
        }
    }
    let err = refused.expect("a waiting push reports the refusal");
    assert!(!err.is_retryable(), "{err:?}");
    assert!(pushed >= 3, "the buffer filled first: {pushed} pushed");
    // The buffer is full now; over the next second the background task tries a few times
    // (pauses of 0.1, 0.2, 0.4, 0.8 s), not hundreds.
    let (before, started) = (
        faults.updates.load(std::sync::atomic::Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tries = faults.updates.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        tries <= 6,
        "{tries} commits tried in {:?}",
        started.elapsed()
    );
    let stats = appender.stats();
    assert!(stats.buffered_rows >= 3 + pushed as u64 - 1, "{stats:?}");
    assert_eq!(table.scan().count().await.unwrap(), 0);
    drop(appender);
}

/// Slices of one large batch pushed one by one: each is charged (and holds) its own rows, not
/// the whole parent batch it shares buffers with — a small slice of a batch larger than the
/// whole buffer is taken, and the rows all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_of_a_large_batch_are_charged_their_own_rows() {
    let t = local_table(DIM).await;
    let rows = sample(2_000, DIM, 40);
    let parent = sales_history::SaleRecord::to_record_batch(&rows).unwrap();
    let whole = parent.get_array_memory_size();
    let budget = whole / 2;
    let appender = t
        .table
        .appender()
        .max_rows(500)
        .max_bytes(budget / 2)
        .max_buffered_bytes(budget)
        .max_age(HOUR)
        .start()
        .unwrap();
    for at in (0..2_000).step_by(100) {
        appender
            .push_batch(parent.slice(at, 100))
            .await
            .expect("a slice is charged its own rows");
    }
    assert!(appender.stats().buffered_bytes <= budget as u64);
    appender.close().await.unwrap();
    assert_eq!(t.table.scan().count().await.unwrap(), 2_000);
}

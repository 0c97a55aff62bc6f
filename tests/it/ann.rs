//! The vector index kept inside the table: recall against the exact search, the filters and
//! the tenant scope, unindexed files searched exactly, time travel, expiry and orphan removal,
//! a corrupt index falling back, compaction, bad input. SQLite catalog, local warehouse.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use sales_history::{Error, Metric, SaleRecord, SalesHistory, ScanFilter, SimilarSale};

use crate::support::{LocalTable, local_table, puffins_deleted, sample};

const DIM: usize = 32;

fn keys(r: &[SimilarSale]) -> Vec<(String, String, i64)> {
    r.iter()
        .map(|s| {
            (
                s.record.tenant_id.clone(),
                s.record.product_id.clone(),
                s.record.sold_date.timestamp_micros(),
            )
        })
        .collect()
}

/// Share of the exact top-k found by the index (recall@k).
fn recall(exact: &[SimilarSale], approx: &[SimilarSale]) -> f64 {
    if exact.is_empty() {
        return 1.0;
    }
    let want: HashSet<_> = keys(exact).into_iter().collect();
    keys(approx).iter().filter(|k| want.contains(*k)).count() as f64 / exact.len() as f64
}

/// Query vectors from the same distribution as the rows (another seed).
fn queries(n: usize) -> Vec<Vec<f64>> {
    sample(n, DIM, 9_999)
        .into_iter()
        .map(|r| r.embedding.expect("embedding"))
        .collect()
}

async fn loaded(rows: usize, appends: usize) -> (LocalTable, Vec<SaleRecord>) {
    let t = local_table(DIM).await;
    let all = sample(rows, DIM, 7);
    for chunk in all.chunks(rows.div_ceil(appends)) {
        t.table.append(chunk.to_vec()).await.expect("append");
    }
    (t, all)
}

fn index_files(dir: &std::path::Path) -> Vec<String> {
    crate::support::tree(dir)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.contains("/metadata/ann-") && p.ends_with(".puffin"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_recall_filters_scope_and_unindexed_files() {
    let (t, _) = loaded(20_000, 4).await;
    let table = &t.table;
    // No index yet: exact, and says why.
    let q = queries(1).remove(0);
    let (_, m) = table
        .similar_to(q.clone(), 10)
        .with_metrics()
        .await
        .unwrap();
    assert!(!m.used_index && m.exact_reason.is_some(), "{m:?}");

    let report = table.index_embeddings().await.expect("index");
    assert!(report.codebook_trained, "{report:?}");
    assert_eq!(report.rows_indexed, 20_000, "{report:?}");
    assert_eq!(report.rows_covered, 20_000);
    assert!(
        report.lists >= 16 && report.segments_written >= 1,
        "{report:?}"
    );
    assert_eq!(report.attempts, 1);
    let embedding_bytes = 20_000u64 * DIM as u64 * 8;
    println!(
        "index: {} lists, {} segments, {} bytes ({:.1}% of the raw embeddings), {:?}",
        report.lists,
        report.segments_written,
        report.index_bytes,
        100.0 * report.index_bytes as f64 / embedding_bytes as f64,
        report.duration
    );
    // A second build finds nothing to do.
    let again = table.index_embeddings().await.unwrap();
    assert_eq!((again.files_indexed, again.attempts), (0, 0), "{again:?}");

    // Recall@10 over 30 queries, no filter, cosine and L2; refine 4: four candidates per
    // result read back and scored exactly (the default, 1, ranks by the 8-bit codes alone:
    // 0.97-0.98 at 1024 dims in `bench_vector`, about 0.95 at these 32).
    for metric in [Metric::Cosine, Metric::L2] {
        let mut total = 0.0;
        let qs = queries(30);
        for q in &qs {
            let exact = table
                .similar_to(q.clone(), 10)
                .metric(metric)
                .exact()
                .await
                .unwrap();
            let (approx, m) = table
                .similar_to(q.clone(), 10)
                .metric(metric)
                .refine(4)
                .with_metrics()
                .await
                .unwrap();
            assert!(m.used_index && m.files_exact == 0, "{m:?}");
            assert!(m.entries_scored < 20_000, "probed a part: {m:?}");
            assert_eq!(approx.len(), 10);
            // Scores are exact (re-ranked from the data files).
            for (a, e) in approx.iter().zip(&exact) {
                if keys(std::slice::from_ref(a)) == keys(std::slice::from_ref(e)) {
                    assert_eq!(a.score, e.score);
                }
            }
            total += recall(&exact, &approx);
        }
        let r = total / qs.len() as f64;
        println!("{metric:?}: recall@10 {r:.3}");
        assert!(r >= 0.95, "{metric:?} recall@10 {r}");
    }

    // A filter and the tenant scope: only matching rows, same recall target.
    let tenant = sample(1, DIM, 7)[0].tenant_id.clone();
    let mut total = 0.0;
    let qs = queries(20);
    for q in &qs {
        let filter = ScanFilter::new().tenant(tenant.clone());
        let exact = table
            .similar_to(q.clone(), 10)
            .filter(filter.clone())
            .exact()
            .await
            .unwrap();
        let approx = table
            .similar_to(q.clone(), 10)
            .filter(filter)
            .refine(4)
            .await
            .unwrap();
        assert!(approx.iter().all(|s| s.record.tenant_id == tenant));
        let scoped = table
            .for_tenant(tenant.clone())
            .unwrap()
            .similar_to(q.clone(), 10)
            .refine(4)
            .await
            .unwrap();
        assert_eq!(keys(&scoped), keys(&approx), "scope = tenant filter");
        total += recall(&exact, &approx);
    }
    let r = total / qs.len() as f64;
    println!("tenant filter: recall@10 {r:.3}");
    assert!(r >= 0.95, "tenant recall@10 {r}");
    // A category + price filter the index evaluates on its entries.
    let cat = sample(1, DIM, 7)[0].category.clone().expect("category");
    let floor: sales_history::Price = "100".parse().unwrap();
    let filter = ScanFilter::new()
        .categories([cat.clone()])
        .price_range(floor..);
    let approx = table
        .similar_to(q.clone(), 5)
        .filter(filter.clone())
        .await
        .unwrap();
    assert!(!approx.is_empty());
    assert!(approx.iter().all(
        |s| s.record.category.as_deref() == Some(cat.as_str()) && s.record.sold_price >= floor
    ));

    // Rows appended after the build: searched exactly, so a new row equal to the query is
    // found first.
    let before = table.current_snapshot_id().expect("snapshot");
    let mut twin = sample(1, DIM, 4242).remove(0);
    twin.embedding = Some(q.clone());
    twin.product_id = "twin-of-the-query".into();
    table.append(vec![twin]).await.unwrap();
    let (found, m) = table.similar_to(q.clone(), 3).with_metrics().await.unwrap();
    assert_eq!(found[0].record.product_id, "twin-of-the-query", "{m:?}");
    assert!(m.used_index && m.files_exact == 1, "{m:?}");
    // Time travel: the snapshot before the append, with its index, has no twin.
    let (old, m) = table
        .similar_to(q.clone(), 3)
        .snapshot_id(before)
        .with_metrics()
        .await
        .unwrap();
    assert!(
        old.iter()
            .all(|s| s.record.product_id != "twin-of-the-query")
    );
    assert!(
        m.used_index && m.files_exact == 0 && m.snapshot_id == Some(before),
        "{m:?}"
    );
    // The next build indexes only the new file.
    let update = table.index_embeddings().await.unwrap();
    assert_eq!(
        (update.files_indexed, update.rows_indexed),
        (1, 1),
        "{update:?}"
    );
    assert!(
        !update.codebook_trained && update.segments_kept >= 1,
        "{update:?}"
    );
    let (found, m) = table.similar_to(q.clone(), 3).with_metrics().await.unwrap();
    assert_eq!(found[0].record.product_id, "twin-of-the-query");
    assert_eq!(m.files_exact, 0, "{m:?}");
}

/// Expires every snapshot but the current one, then removes every orphan: the files deleted.
async fn expire_all_but_current_and_sweep(
    table: &SalesHistory,
) -> sales_history::MaintenanceReport {
    table
        .expire_snapshots()
        .retain_last(1)
        .any_age()
        .await
        .unwrap();
    table
        .remove_orphan_files()
        .older_than(Utc::now() + Duration::seconds(1))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_files_follow_expiry_orphans_compaction_and_survive_corruption() {
    let (t, _) = loaded(3_000, 3).await;
    let table = &t.table;
    table.index_embeddings().lists(16).await.expect("index");
    table.append(sample(300, DIM, 11)).await.unwrap();
    table.index_embeddings().await.expect("update");
    let files = index_files(t.dir.path());
    assert_eq!(files.len(), 2, "{files:?}");

    // Expiry keeps the current snapshot's index; orphan removal keeps both files (the
    // second build's manifest names the first build's segment).
    let removed = expire_all_but_current_and_sweep(table).await;
    assert!(
        puffins_deleted(&removed).is_empty(),
        "{:?}",
        removed.deleted_files
    );
    assert_eq!(index_files(t.dir.path()), files);
    let q = queries(1).remove(0);
    let (_, m) = table.similar_to(q.clone(), 5).with_metrics().await.unwrap();
    assert!(m.used_index && m.files_exact == 0, "{m:?}");

    // A rebuild replaces both; once the old entries expire, orphan removal deletes them.
    let rebuilt = table.index_embeddings().rebuild().lists(8).await.unwrap();
    assert!(
        rebuilt.codebook_trained && rebuilt.lists == 8,
        "{rebuilt:?}"
    );
    table.append(sample(10, DIM, 12)).await.unwrap();
    let removed = expire_all_but_current_and_sweep(table).await;
    let gone = puffins_deleted(&removed);
    assert_eq!(gone.len(), 2, "{:?}", removed.deleted_files);
    let files = index_files(t.dir.path());
    assert_eq!(files.len(), 1, "{files:?}");

    // Compaction: the compacted month's files are new, searched exactly; the next build
    // drops the dead segment and indexes them.
    let exact = table.similar_to(q.clone(), 5).exact().await.unwrap();
    let compacted = table.compact().await.expect("compact");
    assert!(compacted.files_removed > 0, "{compacted:?}");
    let (after, m) = table.similar_to(q.clone(), 5).with_metrics().await.unwrap();
    assert_eq!(keys(&after), keys(&exact), "{m:?}");
    assert!(m.files_exact > 0, "{m:?}");
    let update = table.index_embeddings().await.unwrap();
    let live: Vec<String> = table
        .scan()
        .plan()
        .await
        .unwrap()
        .files
        .iter()
        .map(|f| f.path.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    assert!(
        update.segments_dropped >= 1 && update.files_indexed > 0,
        "{update:?} after {compacted:?}; search {m:?}; live {live:?}"
    );
    let (_, m) = table.similar_to(q.clone(), 5).with_metrics().await.unwrap();
    assert_eq!(m.files_exact, 0, "{m:?}");

    // A corrupt index file: the search falls back to exact (and says so), a fresh handle
    // (nothing cached) gives the exact answer.
    // The newest index file (the one the current index uses; its first blob, at byte 4, is
    // the codebook copy).
    let file = index_files(t.dir.path())
        .into_iter()
        .map(|f| t.dir.path().join(f.trim_start_matches('/')))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("an index file");
    let len = std::fs::metadata(&file).unwrap().len();
    let mut bytes = std::fs::read(&file).unwrap();
    for b in bytes.iter_mut().skip(4).take(64) {
        *b ^= 0x5a;
    }
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), len);
    let fresh = SalesHistory::open(&t.config, "test").await.unwrap();
    let exact = fresh.similar_to(q.clone(), 5).exact().await.unwrap();
    let (got, m) = fresh.similar_to(q.clone(), 5).with_metrics().await.unwrap();
    assert_eq!(keys(&got), keys(&exact), "{m:?}");
    assert!(m.index_fallbacks >= 1 && m.files_exact > 0, "{m:?}");
    // And orphan removal does not delete index files it cannot account for.
    let removed = fresh
        .remove_orphan_files()
        .older_than(Utc::now() + Duration::seconds(1))
        .await
        .unwrap();
    assert!(puffins_deleted(&removed).is_empty());
    // A build over a corrupt index replaces what it cannot read (the codebook: a new one
    // and every segment; a segment: its files indexed again).
    let rebuilt = fresh.index_embeddings().await.unwrap();
    assert!(
        rebuilt.codebook_trained || (rebuilt.segments_dropped >= 1 && rebuilt.files_indexed > 0),
        "{rebuilt:?}"
    );
    let (_, m) = fresh.similar_to(q, 5).with_metrics().await.unwrap();
    assert!(m.used_index && m.index_fallbacks == 0, "{m:?}");
}

#[tokio::test]
async fn bad_search_input_is_typed_and_the_cache_is_capped() {
    let (t, _) = loaded(2_000, 1).await;
    let table = &t.table;
    table.index_embeddings().await.unwrap();
    let q = queries(1).remove(0);
    assert!(matches!(
        table.similar_to(vec![0.5; DIM + 1], 5).await,
        Err(Error::InvalidValue { .. })
    ));
    let mut nan = q.clone();
    nan[3] = f64::NAN;
    assert!(matches!(
        table.similar_to(nan, 5).await,
        Err(Error::InvalidValue { .. })
    ));
    assert!(table.similar_to(q.clone(), 0).await.unwrap().is_empty());
    assert!(matches!(
        table.index_embeddings().lists(0).await,
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        table.similar_to(q.clone(), 5).snapshot_id(42).await,
        Err(Error::SnapshotNotFound { .. })
    ));
    // Index files deleted under a handle that cached the manifest and segment heads: the
    // lists it has not read yet cannot be read; the search falls back to exact for them.
    let warm = table.similar_to(q.clone(), 5).probes(1).await.unwrap();
    assert_eq!(warm.len(), 5);
    let exact = table.similar_to(q.clone(), 5).exact().await.unwrap();
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = index_files(t.dir.path())
        .into_iter()
        .map(|f| {
            let p = t.dir.path().join(f.trim_start_matches('/'));
            let bytes = std::fs::read(&p).unwrap();
            std::fs::remove_file(&p).unwrap();
            (p, bytes)
        })
        .collect();
    let (got, m) = table
        .similar_to(q.clone(), 5)
        .probes(64)
        .with_metrics()
        .await
        .unwrap();
    assert_eq!(keys(&got), keys(&exact), "{m:?}");
    assert!(
        m.index_fallbacks >= 1 && m.files_exact == m.files_planned,
        "{m:?}"
    );
    for (p, bytes) in saved {
        std::fs::write(p, bytes).unwrap();
    }
    // The cache holds what searches read, never more than its cap.
    table.similar_to(q.clone(), 5).await.unwrap();
    assert!(table.index_cache_bytes() > 0);
    table.set_index_cache_bytes(0);
    assert_eq!(table.index_cache_bytes(), 0);
    let (r, m) = table.similar_to(q, 5).with_metrics().await.unwrap();
    assert_eq!(r.len(), 5);
    assert!(m.used_index && m.index_bytes_read > 0, "{m:?}");
    assert_eq!(table.index_cache_bytes(), 0);
}

/// pyiceberg reads a table carrying our index entries, appends to it (its snapshot has no
/// entry: the search uses the parent's index and reads pyiceberg's file exactly), and the
/// next build indexes pyiceberg's file.
#[cfg(feature = "python-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_reads_and_appends_to_an_indexed_table() {
    use crate::support::{pyiceberg, pyiceberg_append};
    let (t, _) = loaded(1_500, 1).await;
    t.table.index_embeddings().await.unwrap();
    let wh = t.dir.path().to_str().unwrap().to_string();
    let got = pyiceberg(&[
        "read",
        "--warehouse",
        &wh,
        "--namespace",
        "pricing_intelligence_test",
    ]);
    assert_eq!(got["row_count"], 1_500);
    let out = pyiceberg_append(&wh, 40, "py-tenant", 3);
    assert_eq!(out["appended"], 40);
    let table = SalesHistory::open(&t.config, "test").await.unwrap();
    let theirs = table.scan().tenant("py-tenant").to_records().await.unwrap();
    let q = theirs
        .iter()
        .find_map(|r| r.embedding.clone())
        .expect("a pyiceberg row with an embedding");
    let (found, m) = table.similar_to(q.clone(), 1).with_metrics().await.unwrap();
    assert_eq!(found[0].record.tenant_id, "py-tenant", "{m:?}");
    assert!((found[0].score - 1.0).abs() < 1e-9);
    // pyiceberg's files (one per month it wrote) are searched exactly.
    assert!(m.used_index && m.files_exact > 0, "{m:?}");
    let update = table.index_embeddings().await.unwrap();
    assert_eq!(update.files_indexed, m.files_exact, "{update:?}");
    let (found, m) = table.similar_to(q, 1).with_metrics().await.unwrap();
    assert_eq!(found[0].record.tenant_id, "py-tenant");
    assert_eq!(m.files_exact, 0, "{m:?}");
    let got = pyiceberg(&[
        "read",
        "--warehouse",
        &wh,
        "--namespace",
        "pricing_intelligence_test",
    ]);
    assert_eq!(got["row_count"], 1_540);
}

/// The maintenance task keeps an existing index up to date beside a writer: appended files
/// get their entries (searched exactly until then), compacted months are indexed again; a
/// table nobody indexed is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintainer_keeps_the_index_up_to_date() {
    let (t, _) = loaded(2_000, 1).await;
    let table = &t.table;
    // Not indexed: the task does not start indexing.
    let m = table
        .maintainer()
        .every(std::time::Duration::from_secs(3600))
        .orphans_older_than(None)
        .start()
        .unwrap();
    m.run_now();
    let mut w = m.watch();
    w.wait_for(|s| s.runs >= 1).await.unwrap();
    assert_eq!(m.stop().await.rows_indexed, 0);
    let (_, metrics) = table
        .similar_to(queries(1).remove(0), 3)
        .with_metrics()
        .await
        .unwrap();
    assert!(!metrics.used_index);

    table.index_embeddings().await.unwrap();
    let m = table
        .maintainer()
        .every(std::time::Duration::from_secs(3600))
        .after_commits(Some(5))
        .min_small_files(4)
        .orphans_older_than(None)
        .start()
        .unwrap();
    let mut w = m.watch();
    for i in 0..12u64 {
        table.append(sample(20, DIM, 500 + i)).await.unwrap();
    }
    m.run_now();
    let target = 2_000 + 12 * 20;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, metrics) = table
            .similar_to(queries(1).remove(0), 3)
            .with_metrics()
            .await
            .unwrap();
        if metrics.files_exact == 0 || std::time::Instant::now() > deadline {
            assert_eq!(metrics.files_exact, 0, "{metrics:?}");
            break;
        }
        m.run_now();
        let runs = w.borrow().runs;
        w.wait_for(|s| s.runs > runs).await.unwrap();
    }
    let stats = m.stop().await;
    assert!(stats.rows_indexed >= 12 * 20, "{stats:?}");
    assert_eq!(stats.failed_runs, 0, "{stats:?}");
    assert_eq!(table.scan().count().await.unwrap(), target);
}

/// A tenant erasure: the search never returns the erased rows (their files are gone from the
/// snapshot), the delete updates the index (every segment naming a rewritten file dropped,
/// their live files indexed again), and once the old snapshots expire orphan removal deletes
/// the Puffin file that still held the tenant's entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_tenant_leaves_the_index() {
    let (t, rows) = loaded(3_000, 2).await;
    let table = &t.table;
    table.index_embeddings().await.unwrap();
    let before = index_files(t.dir.path());
    let tenant = rows[0].tenant_id.clone();
    let q = rows[0].embedding.clone().expect("embedding");
    let erased = table
        .delete_where(ScanFilter::new().tenant(tenant.clone()))
        .await
        .expect("erase");
    assert!(erased.rows_deleted > 0, "{erased:?}");
    let update = erased.index.clone().expect("the delete updated the index");
    assert!(!erased.index_stale, "{erased:?}");
    assert!(
        update.segments_dropped >= 1 && update.files_indexed > 0,
        "{update:?}"
    );
    // Nothing is left for a build to do.
    let again = table.index_embeddings().await.unwrap();
    assert_eq!(
        (again.segments_dropped, again.files_indexed),
        (0, 0),
        "{again:?}"
    );
    let (got, m) = table
        .similar_to(q.clone(), 10)
        .with_metrics()
        .await
        .unwrap();
    assert!(got.iter().all(|s| s.record.tenant_id != tenant), "{m:?}");
    let removed = expire_all_but_current_and_sweep(table).await;
    let gone = puffins_deleted(&removed);
    assert_eq!(gone.len(), before.len(), "{:?}", removed.deleted_files);
    let (got, m) = table.similar_to(q, 10).with_metrics().await.unwrap();
    assert!(m.used_index && m.files_exact == 0, "{m:?}");
    assert!(got.iter().all(|s| s.record.tenant_id != tenant));
}

//! The embedding decoder on real tables: the same rows as parquet-rs's decoder for full,
//! projected, filtered and limited scans, similarity search and compaction, under both
//! element encodings; metrics say which decoder read each turn. The small-file decoder of
//! the narrow columns likewise.

use arrow_array::RecordBatch;
use sales_history::{
    CatalogConfig, Column, EmbeddingDecoder, EmbeddingEncoding, Metric, SalesHistory, Scan,
    ScanFilter, TableOptions,
};

use crate::support::sample;

const DIM: usize = 24;

async fn table(dir: &std::path::Path, encoding: EmbeddingEncoding) -> SalesHistory {
    let options = TableOptions::default()
        .embedding_dimension(DIM)
        .embedding_encoding(encoding);
    let table = SalesHistory::ensure_with(&CatalogConfig::local(dir), "decode", options)
        .await
        .expect("ensure");
    // Several months and tenants, several appends (several files per month).
    for seed in 0..3 {
        table.append(sample(700, DIM, seed)).await.expect("append");
    }
    table
}

fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows: Vec<String> = batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |i| format!("{:?}", b.slice(i, 1).columns())))
        .collect();
    rows.sort();
    rows
}

async fn both(scan: impl Fn() -> Scan) -> (Vec<String>, sales_history::ScanMetrics) {
    let (ours, metrics) = scan().to_batches_with_metrics().await.expect("scan (ours)");
    let (theirs, baseline) = scan()
        .embedding_decoder(EmbeddingDecoder::Parquet)
        .to_batches_with_metrics()
        .await
        .expect("scan (parquet-rs)");
    assert_eq!(baseline.embedding_fast_reads, 0);
    assert_eq!(baseline.embedding_fallbacks, 0);
    assert_eq!(baseline.small_file_fast_reads, 0);
    let (a, b) = (sorted_rows(&ours), sorted_rows(&theirs));
    assert_eq!(a.len(), b.len());
    assert!(a == b, "the decoders disagree");
    (a, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_decoders_give_the_same_rows_under_both_encodings() {
    for encoding in [EmbeddingEncoding::ByteStreamSplit, EmbeddingEncoding::Plain] {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = table(dir.path(), encoding).await;

        // Full scan: every turn through our decoder.
        let (rows, m) = both(|| table.scan()).await;
        assert_eq!(rows.len(), 2100, "{encoding}");
        assert!(m.embedding_fast_reads >= m.files_read, "{m:?}");
        assert_eq!(m.embedding_fallbacks, 0, "{m:?}");

        // Only the embedding (no other column to read beside it), and small batches.
        let (rows, m) = both(|| table.scan().select([Column::Embedding]).batch_size(100)).await;
        assert_eq!(rows.len(), 2100);
        assert_eq!(m.embedding_fallbacks, 0, "{m:?}");

        // A month: every row of the month's files matches, so the row filter is skipped
        // (statistics) and our decoder reads them.
        let month = ScanFilter::new().year_month(2025, 3);
        let (rows, m) = both(|| table.scan().filter(month.clone())).await;
        assert!(!rows.is_empty());
        assert!(m.embedding_fast_reads > 0, "{m:?}");
        assert_eq!(m.embedding_fallbacks, 0, "{m:?}");

        // A tenant: a page selection and a row filter; our decoder reads the selected pages
        // and the filter applies to the assembled rows.
        let tenant = ScanFilter::new().tenant("tenant-001");
        let (rows, m) = both(|| table.scan().filter(tenant.clone())).await;
        assert!(!rows.is_empty());
        assert!(rows.len() < 2100);
        assert!(m.embedding_fast_reads > 0, "{m:?}");
        assert_eq!(m.embedding_fallbacks, 0, "{m:?}");

        // A limit: parquet-rs decodes (and says so).
        let (rows, m) = both(|| table.scan().filter(tenant.clone()).limit(3)).await;
        assert_eq!(rows.len(), 3);
        assert!(m.embedding_fallbacks > 0, "{m:?}");

        // No embedding: neither decoder is involved.
        let (_, m) = both(|| {
            table
                .scan()
                .select(Column::ALL.into_iter().filter(|c| *c != Column::Embedding))
        })
        .await;
        assert_eq!((m.embedding_fast_reads, m.embedding_fallbacks), (0, 0));
        // The files (fewer than 256 rows each) have no dictionaries: the small-file decoder
        // read them, and gave parquet-rs's rows.
        assert!(m.small_file_fast_reads > 0, "{m:?}");

        // Similarity search: the same neighbours, in the same order, with the same scores.
        let query = sample(1, DIM, 77)[0].embedding.clone().expect("embedding");
        let ours = table
            .similar_to(query.clone(), 10)
            .metric(Metric::Cosine)
            .await
            .expect("similar_to");
        let theirs = table
            .similar_to(query, 10)
            .metric(Metric::Cosine)
            .embedding_decoder(EmbeddingDecoder::Parquet)
            .await
            .expect("similar_to (parquet-rs)");
        assert_eq!(ours.len(), 10);
        assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));

        // Compaction reads through the scan reader: the rows survive it exactly.
        let before = sorted_rows(&table.scan().to_batches().await.expect("scan"));
        table.compact().await.expect("compact");
        let after = sorted_rows(&table.scan().to_batches().await.expect("scan"));
        assert_eq!(before, after);
    }
}

/// A tenant's rows in a sorted month file of several hundred rows start and end inside the
/// 64-row pages its page index selects: the filter's columns decide first, so the embedding
/// pages of the other tenants' rows are not decoded (`rows_filtered_early`), and the rows are
/// the in-memory filter's, as parquet-rs's decoder gives them. A time range too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_filter_decides_before_the_embedding_is_decoded() {
    use chrono::{TimeZone, Utc};
    let dir = tempfile::tempdir().expect("tempdir");
    let table = SalesHistory::ensure_with(
        &CatalogConfig::local(dir.path()),
        "early",
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    // One month of 5 tenants, 900 rows: one file, tenant-sorted, 64-row pages.
    let mut rows = sample(900, DIM, 41);
    for (i, r) in rows.iter_mut().enumerate() {
        let at = Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0).unwrap()
            + chrono::Duration::minutes(i as i64 * 37);
        r.sold_date = at;
        r.season = Some(sales_history::Season::of(at));
    }
    table.append(rows.clone()).await.expect("append");
    for tenant in ["tenant-001", "tenant-003", "tenant-005"] {
        let filter = ScanFilter::new().tenant(tenant);
        let (got, m) = both(|| table.scan().filter(filter.clone()).batch_size(50)).await;
        let want = rows.iter().filter(|r| r.tenant_id == tenant).count();
        assert!(want > 0);
        assert_eq!(got.len(), want, "{tenant}");
        assert!(m.pages_skipped > 0, "{tenant}: {m:?}");
        assert!(m.rows_filtered_early > 0, "{tenant}: {m:?}");
        assert_eq!(m.embedding_fallbacks, 0, "{tenant}: {m:?}");
    }
    // A tenant and a time range inside the month.
    let (from, to) = (
        Utc.with_ymd_and_hms(2025, 4, 3, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 4, 9, 0, 0, 0).unwrap(),
    );
    let filter = ScanFilter::new()
        .tenant("tenant-002")
        .and(ScanFilter::new().sold_between(from, to));
    let (got, m) = both(|| table.scan().filter(filter.clone())).await;
    let want = rows
        .iter()
        .filter(|r| r.tenant_id == "tenant-002" && r.sold_date >= from && r.sold_date < to)
        .count();
    assert!(want > 0);
    assert_eq!(got.len(), want);
    assert!(m.rows_filtered_early > 0, "{m:?}");
    // A tenant with no row in the month: nothing decoded, nothing returned.
    let (got, _) = both(|| table.scan().filter(ScanFilter::new().tenant("tenant-404"))).await;
    assert!(got.is_empty());
}

/// Large tenants in a sorted month, two of them asked for with a price filter that matches
/// every other row or so: the page index selects the two tenants' pages (the pages between
/// them are not read), and the matches leave thousands of short runs. parquet-rs's reader
/// would pick a boolean mask for such a selection and decode the pages between the runs,
/// which were never fetched; the rows must be the in-memory filter's, with and without the
/// embedding, under both decoders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_matches_across_skipped_pages() {
    use chrono::{TimeZone, Utc};
    use sales_history::Price;
    let dir = tempfile::tempdir().expect("tempdir");
    let table = SalesHistory::ensure_with(
        &CatalogConfig::local(dir.path()),
        "scattered",
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    // One month, 6 tenants of 3,000 rows: one tenant-sorted file.
    let mut rows = sample(18_000, DIM, 43);
    for (i, r) in rows.iter_mut().enumerate() {
        let at = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap()
            + chrono::Duration::seconds(i as i64 * 140);
        r.sold_date = at;
        r.season = Some(sales_history::Season::of(at));
        r.tenant_id = format!("big-{}", i % 6);
        r.sold_price = Price::from_cents(100 + (i as i64 * 7919) % 1000).expect("price");
    }
    table.append(rows.clone()).await.expect("append");
    let cap = Price::from_cents(600).expect("price");
    let filter = ScanFilter::new()
        .tenants(["big-1", "big-4"])
        .and(ScanFilter::new().price_range(..=cap));
    let want = rows
        .iter()
        .filter(|r| (r.tenant_id == "big-1" || r.tenant_id == "big-4") && r.sold_price <= cap)
        .count();
    assert!(want > 2_000 && want < 6_000, "{want}");
    let (got, m) = both(|| table.scan().filter(filter.clone())).await;
    assert_eq!(got.len(), want);
    assert!(m.pages_skipped > 0, "{m:?}");
    let narrow: Vec<Column> = Column::ALL
        .into_iter()
        .filter(|c| *c != Column::Embedding)
        .collect();
    let (got, m) = both(|| table.scan().filter(filter.clone()).select(narrow.clone())).await;
    assert_eq!(got.len(), want);
    assert!(m.pages_skipped > 0, "{m:?}");

    // Random filters over the same file: tenants, a time window, a price range, a category,
    // each or not, with and without the embedding; the rows are the in-memory filter's.
    let month = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
    let categories: Vec<String> = {
        let mut c: Vec<String> = rows.iter().filter_map(|r| r.category.clone()).collect();
        c.sort();
        c.dedup();
        c
    };
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n.max(1)
    };
    for round in 0..24 {
        let tenants: Vec<String> = (0..6)
            .filter(|_| next(3) == 0)
            .map(|t| format!("big-{t}"))
            .collect();
        let window = (next(2) == 0).then(|| {
            let from = month + chrono::Duration::hours(next(700) as i64);
            (from, from + chrono::Duration::hours(1 + next(200) as i64))
        });
        let prices = (next(2) == 0).then(|| {
            let lo = 100 + next(1000) as i64;
            (lo, lo + next(600) as i64)
        });
        let category = (next(3) == 0 && !categories.is_empty())
            .then(|| categories[next(categories.len() as u64) as usize].clone());
        let mut filter = ScanFilter::new();
        if !tenants.is_empty() {
            filter = filter.tenants(tenants.clone());
        }
        if let Some((from, to)) = window {
            filter = filter.and(ScanFilter::new().sold_between(from, to));
        }
        if let Some((lo, hi)) = prices {
            let (lo, hi) = (
                Price::from_cents(lo).unwrap(),
                Price::from_cents(hi).unwrap(),
            );
            filter = filter.and(ScanFilter::new().price_range(lo..=hi));
        }
        if let Some(c) = &category {
            filter = filter.and(ScanFilter::new().category(c.clone()));
        }
        let want = rows
            .iter()
            .filter(|r| tenants.is_empty() || tenants.contains(&r.tenant_id))
            .filter(|r| window.is_none_or(|(f, t)| r.sold_date >= f && r.sold_date < t))
            .filter(|r| prices.is_none_or(|(lo, hi)| (lo..=hi).contains(&r.sold_price.cents())))
            .filter(|r| category.is_none() || r.category == category)
            .count();
        let what = format!("round {round}: {tenants:?} {window:?} {prices:?} {category:?}");
        let (got, _) = both(|| table.scan().filter(filter.clone())).await;
        assert_eq!(got.len(), want, "{what}");
        let (got, _) = both(|| table.scan().filter(filter.clone()).select(narrow.clone())).await;
        assert_eq!(got.len(), want, "{what}");
    }
}

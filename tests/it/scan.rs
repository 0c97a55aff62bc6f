//! Scans: typed filters against an in-memory filter, pruning metrics, projection, limit,
//! time travel.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use sales_history::{Column, Error, Price, SaleRecord, ScanFilter, Season};

use crate::support::{DIM, local_table, sample};

fn key(r: &SaleRecord) -> (String, String, i64) {
    (
        r.product_id.clone(),
        r.tenant_id.clone(),
        r.sold_date.timestamp_micros(),
    )
}

fn sorted(mut v: Vec<SaleRecord>) -> Vec<SaleRecord> {
    v.sort_by_key(key);
    v
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// A random non-empty subset of `values`.
    fn subset<T: Clone>(&mut self, values: &[T]) -> Vec<T> {
        let mut out: Vec<T> = values.iter().filter(|_| self.chance(40)).cloned().collect();
        if out.is_empty() {
            out.push(values[self.below(values.len() as u64) as usize].clone());
        }
        out
    }
}

/// One random filter, with the same condition as a closure over records.
type Check = Box<dyn Fn(&SaleRecord) -> bool>;

fn random_filter(rng: &mut Rng, rows: &[SaleRecord]) -> (ScanFilter, Vec<Check>) {
    let distinct = |f: &dyn Fn(&SaleRecord) -> Option<String>| {
        let mut v: Vec<String> = rows.iter().filter_map(f).collect();
        v.sort();
        v.dedup();
        v
    };
    let mut filter = ScanFilter::new();
    let mut checks: Vec<Check> = Vec::new();
    if rng.chance(50) {
        let t = rng.subset(&distinct(&|r| Some(r.tenant_id.clone())));
        filter = filter.tenants(t.clone());
        checks.push(Box::new(move |r| t.contains(&r.tenant_id)));
    }
    if rng.chance(20) {
        // A few product ids (and one that is not in the table).
        let all = distinct(&|r| Some(r.product_id.clone()));
        let mut p: Vec<String> = (0..1 + rng.below(3))
            .map(|_| all[rng.below(all.len() as u64) as usize].clone())
            .collect();
        p.push("no-such-product".to_string());
        filter = filter.product_ids(p.clone());
        checks.push(Box::new(move |r| p.contains(&r.product_id)));
    }
    macro_rules! list {
        ($field:ident, $method:ident) => {
            if rng.chance(30) {
                let v = rng.subset(&distinct(&|r| r.$field.clone()));
                filter = filter.$method(v.clone());
                checks.push(Box::new(move |r| {
                    r.$field.as_ref().is_some_and(|x| v.contains(x))
                }));
            }
        };
    }
    list!(category, categories);
    list!(brand, brands);
    list!(condition, conditions);
    list!(source, sources);
    if rng.chance(25) {
        let s = rng.subset(&[Season::Q1, Season::Q2, Season::Q3, Season::Q4]);
        filter = filter.seasons(s.clone());
        checks.push(Box::new(move |r| r.season.is_some_and(|x| s.contains(&x))));
    }
    match rng.below(5) {
        0 => {
            let y = 2024 + rng.below(2) as i32;
            filter = filter.year(y);
            checks.push(Box::new(move |r| r.sold_date.year() == y));
        }
        1 => {
            let (y, m) = (2024 + rng.below(2) as i32, 1 + rng.below(12) as u32);
            filter = filter.year_month(y, m);
            checks.push(Box::new(move |r| {
                r.sold_date.year() == y && r.sold_date.month() == m
            }));
        }
        2 => {
            let start = at(2024, 1, 1) + chrono::Duration::hours(rng.below(17_000) as i64);
            let end = start + chrono::Duration::hours(1 + rng.below(5_000) as i64);
            filter = filter.sold_between(start, end);
            checks.push(Box::new(move |r| r.sold_date >= start && r.sold_date < end));
        }
        _ => {}
    }
    if rng.chance(30) {
        let a = Price::from_cents(rng.below(200_000) as i64).unwrap();
        let b = Price::from_cents(a.cents() + 1 + rng.below(500_000) as i64).unwrap();
        if rng.chance(50) {
            filter = filter.price_range(a..b);
            checks.push(Box::new(move |r| r.sold_price >= a && r.sold_price < b));
        } else {
            filter = filter.price_range(a..=b);
            checks.push(Box::new(move |r| r.sold_price >= a && r.sold_price <= b));
        }
    }
    (filter, checks)
}

/// Rows for the random-filter tests: two appends spread over the sample's months, and one
/// month of many rows (several pages per column, so page selection has work to do).
pub(crate) fn random_filter_rows() -> Vec<SaleRecord> {
    use sales_history::sample::{SampleConfig, SampleGenerator};
    let mut rows = sample(500, DIM, 21);
    rows.extend(sample(300, DIM, 22));
    rows.extend(
        SampleGenerator::new(
            SampleConfig::default()
                .seed(23)
                .months(1)
                .tenants(6)
                .embedding_dimension(DIM),
        )
        .take_records(700),
    );
    rows
}

async fn random_filters_on(table: &sales_history::SalesHistory) {
    let rows = random_filter_rows();
    for part in [&rows[..500], &rows[500..800], &rows[800..]] {
        table.append(part.to_vec()).await.expect("append");
    }
    let non_empty = check_random_filters(table, &rows, 7, 60, |scan| scan).await;
    assert!(non_empty > 20, "too few non-empty rounds: {non_empty}");
}

/// `rounds` random filters (seeded by `seed`) over a table holding exactly `rows`: each scan
/// (as `configure` sets it up) returns exactly the rows an in-memory filter keeps, its count
/// agrees, and a projection that leaves the filter's columns out still filters exactly.
/// Returns how many rounds matched any row.
pub(crate) async fn check_random_filters(
    table: &sales_history::SalesHistory,
    rows: &[SaleRecord],
    seed: u64,
    rounds: usize,
    configure: impl Fn(sales_history::Scan) -> sales_history::Scan,
) -> usize {
    let mut rng = Rng(seed);
    let mut non_empty = 0;
    for round in 0..rounds {
        let (filter, checks) = random_filter(&mut rng, rows);
        let want = sorted(
            rows.iter()
                .filter(|r| checks.iter().all(|c| c(r)))
                .cloned()
                .collect(),
        );
        let scan = || configure(table.scan().filter(filter.clone()));
        let got = sorted(scan().to_records().await.expect("scan"));
        assert_eq!(got.len(), want.len(), "round {round}: {filter:?}");
        assert!(got == want, "round {round}: rows differ for {filter:?}");
        let counted = scan().count().await.expect("count");
        assert_eq!(counted, want.len() as u64, "round {round}: {filter:?}");
        let ids = scan()
            .select([Column::ProductId])
            .to_partial_records()
            .await
            .expect("projected");
        assert_eq!(ids.len(), want.len(), "round {round}: {filter:?}");
        non_empty += usize::from(!want.is_empty());
    }
    non_empty
}

/// On the crate's layout: sorted by tenant and date, 64-row pages with a page index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_filters_equal_an_in_memory_filter() {
    let t = local_table(DIM).await;
    random_filters_on(&t.table).await;
}

/// On a table without a sort order (made by another engine): rows as they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_filters_equal_an_in_memory_filter_without_a_sort_order() {
    use std::collections::HashMap;
    let dir = tempfile::tempdir().unwrap();
    let config = sales_history::CatalogConfig::local(dir.path());
    let created = crate::support::create_raw_table(
        &config,
        "unsorted",
        sales_history::schema::iceberg_schema(),
        sales_history::schema::partition_spec(),
        HashMap::from([(
            sales_history::schema::EMBEDDING_DIMENSION_PROPERTY.to_string(),
            DIM.to_string(),
        )]),
    )
    .await;
    assert!(created.metadata().default_sort_order().fields.is_empty());
    let table = sales_history::SalesHistory::open(&config, "unsorted")
        .await
        .expect("open");
    random_filters_on(&table).await;
}

#[tokio::test]
async fn one_month_plans_only_that_month() {
    let t = local_table(DIM).await;
    let rows = sample(480, DIM, 5);
    t.table.append(rows.clone()).await.expect("append");
    let mut stream = t
        .table
        .scan()
        .filter(ScanFilter::new().year_month(2025, 3).tenant("tenant-001"))
        .execute()
        .await
        .expect("execute");
    let mut n = 0;
    while let Some(b) = futures::TryStreamExt::try_next(&mut stream)
        .await
        .expect("batch")
    {
        n += b.num_rows();
    }
    let m = stream.metrics();
    let want = rows
        .iter()
        .filter(|r| r.tenant_id == "tenant-001")
        .filter(|r| r.sold_date.year() == 2025 && r.sold_date.month() == 3)
        .count();
    assert!(want > 0);
    assert_eq!(n, want);
    assert_eq!(m.rows_returned, want as u64);
    assert_eq!(m.data_files_in_snapshot, 24, "{m:?}");
    assert_eq!(m.files_planned, 1, "{m:?}");
    assert_eq!(m.files_read, 1, "{m:?}");
    assert!(m.bytes_read > 0, "{m:?}");
    let plan = t
        .table
        .scan()
        .filter(ScanFilter::new().year(2024))
        .plan()
        .await
        .expect("plan");
    assert_eq!((plan.files.len(), plan.data_files_in_snapshot), (12, 24));
    assert!(plan.files.iter().all(|f| f.path.contains("2024-")));

    let full = t
        .table
        .scan()
        .to_batches_with_metrics()
        .await
        .expect("full");
    assert_eq!(full.1.files_planned, 24);
    assert_eq!(full.1.rows_returned, 480);
    assert!(
        m.bytes_read * 10 < full.1.bytes_read,
        "{m:?} vs {:?}",
        full.1
    );
}

#[tokio::test]
async fn projection_limit_and_partial_records() {
    // Real 1024-dim embeddings, so that leaving them out shows in the bytes read.
    let t = local_table(1024).await;
    let rows = sample(600, 1024, 8);
    t.table.append(rows.clone()).await.expect("append");
    let (batches, with_emb) = t.table.scan().to_batches_with_metrics().await.expect("all");
    assert_eq!(batches[0].num_columns(), 12);
    let (batches, without) = t
        .table
        .scan()
        .select([Column::Brand, Column::SoldPrice])
        .to_batches_with_metrics()
        .await
        .expect("projected");
    let names: Vec<String> = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["brand", "sold_price"]);
    assert!(
        without.bytes_read * 4 < with_emb.bytes_read,
        "the embedding was read: {without:?} vs {with_emb:?}"
    );
    let partial = t
        .table
        .scan()
        .select([Column::Brand, Column::SoldPrice])
        .to_partial_records()
        .await
        .expect("partial");
    assert_eq!(partial.len(), 600);
    for r in &partial {
        assert!(r.has(Column::Brand) && r.has(Column::SoldPrice));
        assert!(r.product_id.is_none() && r.embedding.is_none() && r.sold_date.is_none());
        assert!(matches!(r.clone().into_record(), Err(Error::Config { .. })));
    }
    let total: i64 = partial
        .iter()
        .filter_map(|r| r.sold_price)
        .map(Price::cents)
        .sum();
    assert_eq!(
        total,
        rows.iter().map(|r| r.sold_price.cents()).sum::<i64>()
    );
    assert!(matches!(
        t.table.scan().select([Column::Brand]).to_records().await,
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        t.table.scan().select([]).to_batches().await,
        Err(Error::Config { .. })
    ));
    let full = t
        .table
        .scan()
        .to_partial_records()
        .await
        .expect("all partial");
    let back: Vec<SaleRecord> = full
        .into_iter()
        .map(|r| r.into_record().expect("complete"))
        .collect();
    assert_eq!(sorted(back), sorted(rows.clone()));

    for n in [0usize, 1, 7, 600, 900] {
        let (b, m) = t
            .table
            .scan()
            .limit(n)
            .batch_size(5)
            .to_batches_with_metrics()
            .await
            .expect("limit");
        let got: usize = b.iter().map(|b| b.num_rows()).sum();
        assert_eq!(got, n.min(600), "limit {n}");
        assert_eq!(m.rows_returned, got as u64);
    }
}

#[tokio::test]
async fn time_travel_by_id_and_timestamp() {
    let t = local_table(DIM).await;
    for (i, n) in [10usize, 20, 30].into_iter().enumerate() {
        t.table
            .append(sample(n, DIM, 40 + i as u64))
            .await
            .expect("append");
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }
    let snaps = t.table.snapshots().await.unwrap();
    assert_eq!(snaps.len(), 3);
    let mut expected = 0;
    for (s, n) in snaps.iter().zip([10u64, 20, 30]) {
        expected += n;
        let by_id = t.table.scan().snapshot_id(s.snapshot_id).count().await;
        assert_eq!(by_id.expect("by id"), expected);
        let by_time = t
            .table
            .scan()
            .as_of(s.committed_at)
            .to_batches_with_metrics();
        let (batches, m) = by_time.await.expect("as of");
        assert_eq!(m.snapshot_id, Some(s.snapshot_id));
        assert_eq!(
            batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
            expected
        );
    }
    let later = t.table.scan().as_of(Utc::now()).count().await;
    assert_eq!(later.expect("now"), 60);
    let before = snaps[0].committed_at - chrono::Duration::seconds(1);
    assert!(matches!(
        t.table.scan().as_of(before).count().await,
        Err(Error::Config { ref key, .. }) if key == "as_of"
    ));
    assert!(matches!(
        t.table.scan().snapshot_id(1).count().await,
        Err(Error::SnapshotNotFound { snapshot_id: 1, .. })
    ));
}

#[tokio::test]
async fn impossible_filters_are_errors_or_empty() {
    let t = local_table(DIM).await;
    t.table.append(sample(100, DIM, 3)).await.expect("append");
    for bad in [
        ScanFilter::new().year_month(2025, 0),
        ScanFilter::new().year_month(2025, 13),
        ScanFilter::new().sold_between(at(2025, 2, 1), at(2025, 2, 1)),
        ScanFilter::new()
            .price_range(Price::from_cents(500).unwrap()..Price::from_cents(100).unwrap()),
    ] {
        assert!(
            matches!(
                t.table.scan().filter(bad.clone()).to_batches().await,
                Err(Error::Config { .. })
            ),
            "{bad:?}"
        );
    }
    for empty in [
        ScanFilter::new().year(2024).year_month(2025, 3),
        ScanFilter::new().tenants(Vec::<String>::new()),
        ScanFilter::new()
            .tenant("tenant-001")
            .and(ScanFilter::new().tenant("tenant-002")),
        ScanFilter::new().tenant("nobody"),
    ] {
        let (b, m) = t
            .table
            .scan()
            .filter(empty.clone())
            .to_batches_with_metrics()
            .await
            .expect("empty");
        assert_eq!(
            b.iter().map(|b| b.num_rows()).sum::<usize>(),
            0,
            "{empty:?}"
        );
        assert_eq!(m.rows_returned, 0);
    }
    let (_, m) = t
        .table
        .scan()
        .filter(ScanFilter::new().year(2024).year_month(2025, 3))
        .to_batches_with_metrics()
        .await
        .expect("disjoint");
    assert_eq!((m.files_planned, m.files_read, m.bytes_read), (0, 0, 0));
}

/// A file is read a bounded number of bytes at a time: with a tiny read buffer every row group
/// is its own fetch-and-decode turn (one request each), on the whole-chunk path and on the
/// page-index path, and the rows are exactly those of the default scan, which reads the small
/// file in one request; a row limit stops the turns early, and filters still match an
/// in-memory filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_read_a_bounded_number_of_row_groups_at_a_time() {
    use std::collections::HashMap;

    use sales_history::sample::{SampleConfig, SampleGenerator};

    fn records(
        (batches, m): (Vec<arrow_array::RecordBatch>, sales_history::ScanMetrics),
    ) -> (Vec<SaleRecord>, sales_history::ScanMetrics) {
        let rows = batches
            .iter()
            .flat_map(|b| SaleRecord::from_record_batch(b).expect("records"))
            .collect();
        (rows, m)
    }

    let dir = tempfile::tempdir().unwrap();
    let config = sales_history::CatalogConfig::local(dir.path());
    crate::support::create_raw_table(
        &config,
        "rg",
        sales_history::schema::iceberg_schema(),
        sales_history::schema::partition_spec(),
        HashMap::from([
            (
                sales_history::schema::EMBEDDING_DIMENSION_PROPERTY.to_string(),
                DIM.to_string(),
            ),
            (
                "write.parquet.row-group-limit".to_string(),
                "50".to_string(),
            ),
        ]),
    )
    .await;
    let table = sales_history::SalesHistory::open(&config, "rg")
        .await
        .expect("open");
    let rows = SampleGenerator::new(
        SampleConfig::default()
            .seed(31)
            .months(1)
            .tenants(4)
            .embedding_dimension(DIM),
    )
    .take_records(600);
    table.append(rows.clone()).await.expect("append");

    let (whole, m) = table
        .scan()
        .to_batches_with_metrics()
        .await
        .map(records)
        .expect("scan");
    assert_eq!(m.files_read, 1, "{m:?}");
    assert!(m.row_groups_read >= 12, "{m:?}");
    // The footer (one read, two when it is longer than the first guess) + the whole file.
    let first_footer_reads = m.requests - 1;
    assert!(first_footer_reads == 1 || first_footer_reads == 2, "{m:?}");
    assert_eq!(sorted(whole), sorted(rows.clone()));
    // The handle keeps the parsed footer: later scans read only column chunks.
    let footer_reads = 0;

    let (turns, m) = table
        .scan()
        .read_buffer_bytes(1)
        .to_batches_with_metrics()
        .await
        .map(records)
        .expect("scan");
    assert_eq!(
        m.requests,
        footer_reads + 1 + m.row_groups_read,
        "the page index (to cut a row group larger than the budget into row ranges, here of \
         one page each: not cut) + one read per row group: {m:?}"
    );
    assert_eq!(sorted(turns), sorted(rows.clone()));

    // A budget of about three row groups: fewer, larger turns.
    let per_group = m.bytes_read / m.row_groups_read;
    let (grouped, m3) = table
        .scan()
        .read_buffer_bytes(per_group * 3)
        .to_batches_with_metrics()
        .await
        .map(records)
        .expect("scan");
    let turns3 = m3.requests - footer_reads;
    assert!(
        turns3 > 1 && turns3 <= m3.row_groups_read.div_ceil(2),
        "{turns3} turns for {} row groups",
        m3.row_groups_read
    );
    assert_eq!(grouped.len(), rows.len());

    let (limited, ml) = table
        .scan()
        .read_buffer_bytes(1)
        .limit(120)
        .to_batches_with_metrics()
        .await
        .map(records)
        .expect("scan");
    assert_eq!(limited.len(), 120);
    assert_eq!(
        ml.requests,
        footer_reads + 3,
        "120 rows are 3 turns of 50-row groups: {ml:?}"
    );

    // A tenant filter takes the page-index path: the column index is read, then the selected
    // pages, also a bounded number of row groups at a time. All tenants: every page selected.
    let tenants: Vec<String> = {
        let mut t: Vec<String> = rows.iter().map(|r| r.tenant_id.clone()).collect();
        t.sort();
        t.dedup();
        t
    };
    let all_tenants = ScanFilter::new().tenants(tenants);
    let (paged, mp) = table
        .scan()
        .filter(all_tenants.clone())
        .read_buffer_bytes(1)
        .to_batches_with_metrics()
        .await
        .map(records)
        .expect("scan");
    assert_eq!(sorted(paged), sorted(rows.clone()));
    assert_eq!(mp.row_groups_read, m.row_groups_read, "{mp:?}");
    assert_eq!(
        mp.requests,
        footer_reads + mp.row_groups_read,
        "one read per row group (footer and page index kept from the scans before): {mp:?}"
    );
    let (_, mp1) = table
        .scan()
        .filter(all_tenants)
        .to_batches_with_metrics()
        .await
        .map(records)
        .expect("scan");
    assert_eq!(
        mp1.requests,
        footer_reads + 1,
        "one turn by default, the page index kept from the scan before: {mp1:?}"
    );

    check_random_filters(&table, &rows, 5, 20, |scan| scan.read_buffer_bytes(1)).await;
}

/// A row group larger than the read budget (a compacted file's one group) is read in row
/// ranges cut where its largest column's pages start: the same rows, the group counted once,
/// a read per range, this crate's embedding decoder on each, and filters, projections and
/// limits exact over the ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_group_larger_than_the_budget_is_read_in_row_ranges() {
    use sales_history::sample::{SampleConfig, SampleGenerator};

    // Embeddings most of the bytes, as in a real table (the dictionary pages every range
    // reads are then a small share).
    const DIM: usize = 256;
    let t = local_table(DIM).await;
    let table = &t.table;
    let rows = SampleGenerator::new(
        SampleConfig::default()
            .seed(41)
            .months(1)
            .tenants(5)
            .embedding_dimension(DIM),
    )
    .take_records(1500);
    table.append(rows.clone()).await.expect("append");
    let records = |batches: &[arrow_array::RecordBatch]| -> Vec<SaleRecord> {
        batches
            .iter()
            .flat_map(|b| SaleRecord::from_record_batch(b).expect("records"))
            .collect()
    };

    let (batches, whole) = table.scan().to_batches_with_metrics().await.expect("scan");
    assert_eq!(
        (whole.files_read, whole.row_groups_read),
        (1, 1),
        "{whole:?}"
    );
    assert_eq!(sorted(records(&batches)), sorted(rows.clone()));

    // About a quarter of the group per turn.
    let budget = whole.bytes_read / 4;
    let (batches, cut) = table
        .scan()
        .read_buffer_bytes(budget)
        .batch_size(100)
        .to_batches_with_metrics()
        .await
        .expect("scan");
    assert_eq!(sorted(records(&batches)), sorted(rows.clone()));
    assert!(batches.iter().all(|b| b.num_rows() <= 100));
    assert_eq!(
        cut.row_groups_read, 1,
        "one group, however many ranges: {cut:?}"
    );
    // A turn per range, each through this crate's embedding decoder; the page index read
    // (the footer is kept from the scan before), then each range's pages.
    let ranges = cut.embedding_fast_reads;
    assert!((4..=7).contains(&ranges), "{ranges} ranges: {cut:?}");
    assert_eq!(cut.embedding_fallbacks, 0, "{cut:?}");
    assert!(cut.requests > ranges, "{cut:?}");
    // Each range reads the dictionary pages, and the embedding page after its last (which
    // parquet-rs's reader looks at to end a list column's last row): far from the group
    // read again per range.
    assert!(
        cut.bytes_read < whole.bytes_read + whole.bytes_read / 2,
        "{} bytes in ranges, {} whole",
        cut.bytes_read,
        whole.bytes_read
    );

    let (limited, m) = table
        .scan()
        .read_buffer_bytes(budget)
        .limit(70)
        .to_batches_with_metrics()
        .await
        .expect("scan");
    assert_eq!(records(&limited).len(), 70);
    assert_eq!(
        m.embedding_fast_reads + m.embedding_fallbacks,
        1,
        "one turn: the first range holds the rows: {m:?}"
    );

    let matched =
        check_random_filters(table, &rows, 43, 20, |scan| scan.read_buffer_bytes(budget)).await;
    assert!(matched > 5, "{matched} filters matched rows");
}

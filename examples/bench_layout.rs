//! Partition layouts side by side: one table per layout (the seed's sorted `month`,
//! `tenant-month`, `bucketN-month`), loaded the same way (one append per month, every tenant in
//! it), then per layout the time, bytes read and files opened of tenant, month and full scans,
//! append throughput, a tenant erasure (bytes rewritten), and the in-place migration of the
//! month table to tenant-month (MB/s) followed by an erasure on the migrated table.
//!
//! ```text
//! cargo run --release --example bench_layout -- [--rows 300000] [--months 24] [--tenants 200]
//!     [--dim 1024] [--buckets 16] [--codec snappy] [--reps 3] [--fast-reps 101] [--dir DIR]
//!     [--json]
//! ```

#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;
#[path = "common/stats.rs"]
mod stats;

use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate};
use clap::Parser;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{
    CatalogConfig, Codec, Column, Layout, SaleRecord, SalesHistory, ScanFilter, TableOptions,
};
use serde_json::{Value, json};

/// Loads the same rows under each partition layout and times the queries a layout changes.
#[derive(Debug, Parser)]
#[command(name = "bench_layout")]
struct Args {
    /// Rows in each table.
    #[arg(long, default_value_t = 300_000, value_parser = number::parse::<usize>)]
    rows: usize,
    /// Months the rows cover (one append per month).
    #[arg(long, default_value_t = 24, value_parser = number::parse::<u32>)]
    months: u32,
    /// Tenants.
    #[arg(long, default_value_t = 200, value_parser = number::parse::<usize>)]
    tenants: usize,
    /// Embedding length.
    #[arg(long, default_value_t = 1024, value_parser = number::parse::<usize>)]
    dim: usize,
    /// Buckets of the bucket layout.
    #[arg(long, default_value_t = 16, value_parser = number::parse::<u32>)]
    buckets: u32,
    /// Compression codec of every table: snappy (the seed's), zstd or zstd-N.
    #[arg(long, default_value = "snappy")]
    codec: Codec,
    /// Timed repetitions of each query (median reported).
    #[arg(long, default_value_t = 3, value_parser = number::parse::<usize>)]
    reps: usize,
    /// Repetitions (at least) of a query whose second run (with `--reps 1`, first) took under
    /// 20 ms on every layout (the first reads footers no query needed before): a median of a
    /// few millisecond-long runs moves with this VM's hiccups.
    #[arg(long, default_value_t = 101, value_parser = number::parse::<usize>)]
    fast_reps: usize,
    /// Directory for the warehouses (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() {
    report::exit_on_error(run(Args::parse()).await);
}

/// One query's median time and what it read.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    ms: f64,
    bytes: u64,
    files: u64,
    rows: u64,
}

impl Measured {
    fn json(&self) -> Value {
        json!({"ms": self.ms, "bytes_read": self.bytes, "files_read": self.files, "rows": self.rows})
    }
}

/// One run of a query: its time (ms) and what it read.
async fn measure_once(
    table: &SalesHistory,
    filter: &ScanFilter,
    columns: Option<&[Column]>,
) -> anyhow::Result<(f64, Measured)> {
    let mut scan = table.scan().filter(filter.clone());
    if let Some(c) = columns {
        scan = scan.select(c.iter().copied());
    }
    let started = Instant::now();
    let (batches, metrics) = scan.to_batches_with_metrics().await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    Ok((
        ms,
        Measured {
            ms: 0.0,
            bytes: metrics.bytes_read,
            files: metrics.files_read,
            rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
        },
    ))
}

/// A query's median over `reps` runs.
async fn measure(
    table: &SalesHistory,
    filter: ScanFilter,
    columns: Option<&[Column]>,
    reps: usize,
) -> anyhow::Result<Measured> {
    let mut times = Vec::new();
    let mut last = Measured::default();
    for _ in 0..reps.max(1) {
        let (ms, m) = measure_once(table, &filter, columns).await?;
        times.push(ms);
        last = m;
    }
    last.ms = stats::median(&times);
    Ok(last)
}

struct Loaded {
    layout: Layout,
    table: SalesHistory,
    append: Duration,
    bytes: u64,
    files: usize,
}

/// A query under this (second run, every layout) gets `--fast-reps` repetitions.
const FAST_QUERY_MS: f64 = 20.0;

const QUERIES: [&str; 5] = [
    "tenant, all months",
    "tenant, all months, no embedding",
    "tenant, one month",
    "month, all tenants, no embedding",
    "full scan",
];

async fn run(args: Args) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let layouts = [
        Layout::Month,
        Layout::TenantMonth,
        Layout::tenant_buckets(args.buckets)?,
    ];
    let mut loaded = Vec::new();
    for layout in layouts {
        let config = CatalogConfig::local(dir.join(format!(
            "bench-layout-{}-{}",
            std::process::id(),
            layout
        )));
        let table = SalesHistory::ensure_with(
            &config,
            "bench",
            TableOptions::default()
                .embedding_dimension(args.dim)
                .codec(args.codec)
                .layout(layout),
        )
        .await?;
        loaded.push(Loaded {
            layout,
            table,
            append: Duration::ZERO,
            bytes: 0,
            files: 0,
        });
    }

    // One append per month, the same rows for every layout.
    let end = NaiveDate::from_ymd_opt(2025, 12, 1).expect("a date");
    let per_month = args.rows.div_ceil(args.months.max(1) as usize);
    let mut first_tenant = String::new();
    let mut some_month = (2025, 12);
    let mut second_tenant = String::new();
    let mut raw_bytes = 0u64;
    for m in 0..args.months {
        let month_end = end - chrono::Months::new(args.months - 1 - m);
        let records: Vec<SaleRecord> = SampleGenerator::new(
            SampleConfig::default()
                .seed(u64::from(m) + 1)
                .months(1)
                .end_month(month_end)
                .tenants(args.tenants)
                .embedding_dimension(args.dim),
        )
        .take_records(per_month);
        if first_tenant.is_empty() {
            first_tenant = records[0].tenant_id.clone();
            second_tenant = records
                .iter()
                .map(|r| r.tenant_id.clone())
                .find(|t| *t != first_tenant)
                .unwrap_or_default();
        }
        if m == args.months / 2 {
            some_month = (month_end.year(), month_end.month());
        }
        let batch = SaleRecord::to_record_batch(&records)?;
        raw_bytes += batch.get_array_memory_size() as u64;
        for l in &mut loaded {
            let started = Instant::now();
            l.table.append_batches(vec![batch.clone()]).await?;
            l.append += started.elapsed();
        }
    }
    for l in &mut loaded {
        let plan = l.table.scan().plan().await?;
        l.files = plan.files.len();
        l.bytes = plan.files.iter().map(|f| f.size_bytes).sum();
    }

    let tenant = ScanFilter::new().tenant(first_tenant.clone());
    let month = ScanFilter::new().year_month(some_month.0, some_month.1);
    let no_embedding: Vec<Column> = Column::ALL
        .into_iter()
        .filter(|c| *c != Column::Embedding)
        .collect();
    let queries: [(ScanFilter, Option<&[Column]>); 5] = [
        (tenant.clone(), None),
        (tenant.clone(), Some(&no_embedding)),
        (tenant.clone().and(month.clone()), None),
        (month.clone(), Some(&no_embedding)),
        (ScanFilter::new(), None),
    ];
    // Each repetition runs a query on every layout in turn, so the layouts are compared
    // under the same conditions (this VM's speed drifts by up to 2× from minute to minute).
    let mut results = vec![vec![Measured::default(); queries.len()]; loaded.len()];
    for (q, (filter, columns)) in queries.iter().enumerate() {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); loaded.len()];
        let mut reps = args.reps.max(1);
        let mut rep = 0;
        while rep < reps {
            for (i, l) in loaded.iter().enumerate() {
                let (ms, m) = measure_once(&l.table, filter, *columns).await?;
                times[i].push(ms);
                results[i][q] = m;
            }
            // Decided on the second run: a query's first run on a layout reads and keeps the
            // footers of files no query touched yet (the month across tenants: 28 ms the first
            // time on tenant-month, 5 ms after), which left that query at 9 repetitions. With
            // `--reps 1`, on the first.
            let decide = 1.min(reps - 1);
            if rep == decide && times.iter().all(|t| t[decide] < FAST_QUERY_MS) {
                reps = reps.max(args.fast_reps);
            }
            rep += 1;
        }
        for (i, t) in times.iter().enumerate() {
            results[i][q].ms = stats::median(t);
        }
    }
    for (q, name) in QUERIES.iter().enumerate() {
        let rows: Vec<u64> = results.iter().map(|r| r[q].rows).collect();
        anyhow::ensure!(
            rows.windows(2).all(|w| w[0] == w[1]),
            "{name}: layouts returned different row counts {rows:?}"
        );
    }

    // Tenant erasure on each layout (the first tenant).
    let mut erasures = Vec::new();
    for l in &loaded {
        let started = Instant::now();
        let done = l
            .table
            .delete_where(ScanFilter::new().tenant(first_tenant.clone()))
            .await?;
        erasures.push((done, started.elapsed()));
    }

    // The month table migrated in place to tenant-month, then a second tenant erased on it.
    let month_table = &loaded[0].table;
    month_table.evolve_layout(Layout::TenantMonth).await?;
    let migration = month_table.compact().migrate().await?;
    let after_migration = month_table
        .delete_where(ScanFilter::new().tenant(second_tenant.clone()))
        .await?;
    let migrated_tenant = measure(
        month_table,
        tenant_filter(&first_tenant, &second_tenant),
        None,
        args.reps,
    )
    .await?;

    let mb = |b: u64| b as f64 / 1e6;
    let append_rows_s =
        |l: &Loaded| (per_month * args.months as usize) as f64 / l.append.as_secs_f64();
    let append_mb_s = |l: &Loaded| mb(raw_bytes) / l.append.as_secs_f64();
    let migration_mb_s = mb(migration.bytes_removed) / migration.elapsed.as_secs_f64();

    if args.json {
        let per_layout: Vec<Value> = loaded
            .iter()
            .zip(&results)
            .zip(&erasures)
            .map(|((l, r), (e, took))| {
                json!({
                    "layout": l.layout.to_string(),
                    "files": l.files, "bytes": l.bytes,
                    "append_seconds": l.append.as_secs_f64(),
                    "append_rows_per_s": append_rows_s(l), "append_mb_per_s": append_mb_s(l),
                    "queries": QUERIES.iter().zip(r).map(|(q, m)| (q.to_string(), m.json())).collect::<serde_json::Map<_, _>>(),
                    "erasure": {"rows": e.rows_deleted, "files_rewritten": e.files_rewritten,
                        "files_dropped_by_metadata": e.files_dropped_by_metadata,
                        "bytes_rewritten": e.bytes_added, "bytes_read_files": e.files_read,
                        "seconds": took.as_secs_f64()},
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "rows": per_month * args.months as usize, "months": args.months,
                "tenants": args.tenants, "dim": args.dim, "buckets": args.buckets,
                "codec": args.codec.to_string(),
                "layouts": per_layout,
                "migration": {"files": migration.files_removed, "files_added": migration.files_added,
                    "bytes": migration.bytes_removed, "seconds": migration.elapsed.as_secs_f64(),
                    "mb_per_s": migration_mb_s, "months": migration.months},
                "erasure_after_migration": {"rows": after_migration.rows_deleted,
                    "bytes_rewritten": after_migration.bytes_added,
                    "files_rewritten": after_migration.files_rewritten,
                    "files_dropped_by_metadata": after_migration.files_dropped_by_metadata},
                "migrated_tenant_query": migrated_tenant.json(),
            })
        );
        return Ok(());
    }

    println!(
        "bench_layout: {} rows, {} months, {} tenants, dim {}, {}, median of {} runs ({} for queries under {FAST_QUERY_MS} ms)",
        per_month * args.months as usize,
        args.months,
        args.tenants,
        args.dim,
        args.codec,
        args.reps,
        args.reps.max(args.fast_reps),
    );
    print!("{:<34}", "");
    for l in &loaded {
        print!("{:>30}", l.layout.to_string());
    }
    println!();
    print!("{:<34}", "data files / MB");
    for l in &loaded {
        print!("{:>30}", format!("{} / {:.0}", l.files, mb(l.bytes)));
    }
    println!();
    print!("{:<34}", "append rows/s (MB/s)");
    for l in &loaded {
        print!(
            "{:>30}",
            format!("{:.0} ({:.0})", append_rows_s(l), append_mb_s(l))
        );
    }
    println!();
    for (q, name) in QUERIES.iter().enumerate() {
        print!("{:<34}", format!("{name} (ms, MB, files)"));
        let base = results[0][q];
        for r in &results {
            let m = r[q];
            let speed = if m.ms > 0.0 { base.ms / m.ms } else { 0.0 };
            print!(
                "{:>30}",
                format!(
                    "{:.1}, {:.1}, {} ({:.1}x)",
                    m.ms,
                    mb(m.bytes),
                    m.files,
                    speed
                )
            );
        }
        println!();
    }
    print!("{:<34}", "tenant erasure: MB rewritten");
    for (e, took) in &erasures {
        print!(
            "{:>30}",
            format!(
                "{:.1} ({} files, {:.1}s)",
                mb(e.bytes_added),
                e.files_rewritten,
                took.as_secs_f64()
            )
        );
    }
    println!();
    println!(
        "migration month → tenant-month: {} files, {:.0} MB in {:.1}s ({:.0} MB/s), {} months",
        migration.files_removed,
        mb(migration.bytes_removed),
        migration.elapsed.as_secs_f64(),
        migration_mb_s,
        migration.months
    );
    println!(
        "erasure on the migrated table: {} rows, {:.1} MB rewritten, {} files dropped from metadata",
        after_migration.rows_deleted,
        mb(after_migration.bytes_added),
        after_migration.files_dropped_by_metadata
    );
    Ok(())
}

/// A filter for a tenant that is still in the migrated table (not the two erased).
fn tenant_filter(first: &str, second: &str) -> ScanFilter {
    let mut n = 1;
    loop {
        let t = format!("tenant-{n:03}");
        if t != first && t != second {
            return ScanFilter::new().tenant(t);
        }
        n += 1;
    }
}

//! Streaming-ingest harness: single-record pushes through the appender, beside one `append`
//! per event, the disk's sync-write bandwidth, and several writer processes on one table.
//!
//! ```text
//! cargo run --release --example bench_stream -- [--quick] [--json] [--rows N] [--rate N]
//!     [--rate-rows N] [--max-age 1s] [--max-rows N] [--max-mib N] [--baseline-events N]
//!     [--reps N] [--sync-mib N] [--months N] [--dir DIR] [--no-contention | --contention-only]
//!     [--writers 1,2,4] [--writer-rows N] [--writer-flush-rows N] [--writer-refresh]
//!     [--keep] [--trace]
//! cargo run --release --features glue --example bench_stream -- \
//!     --glue-endpoint http://127.0.0.1:PORT        # contention on the Glue + S3 emulator too
//! ```
//!
//! On the local catalog in `--dir` (its file system, tmpfs or not, is printed):
//! (1) `--rows` single-record `push_at` calls of 1024-dim rows, as fast as possible, `--reps`
//! times (medians), each repetition next to a sync-write of `--sync-mib` MiB to the same
//! directory (`dd conv=fdatasync`); (2) the same number of pushes paced at `--rate` per second
//! with flushes on age only (`--max-age`); (3) `--baseline-events` events through one
//! `append(vec![record])` each. For every run: events/s (until `close` returned, everything
//! committed), MB/s of input (Arrow) and written (Parquet on disk), snapshots, data files,
//! p50/p99 `push` latency and p99 visible latency: the time from the push call to the moment
//! the appender's `watch()` channel reported a commit that holds the row (rows commit in push
//! order, so after a commit reporting `committed_rows = n` rows 0..n are in the table). The
//! paced run also confirms it with a fresh scan from a second handle after every commit. Also
//! printed: one core's limits for a flush-sized batch (`SaleRecord` -> Arrow conversion, the raw
//! Parquet encoder), each flush's write + commit time as the appender logs it (its `flushed`
//! tracing event), the metadata.json size and a fresh handle's `scan().count()` time at the end.
//!
//! Contention: 1, 2 and 4 (`--writers`) processes (this program re-executed with a hidden
//! `--writer`) stream `--writer-rows` rows each into ONE table, flushing every
//! `--writer-flush-rows` rows as fast as they can, started together; each reports its commit
//! latencies (time of each `flush`) and the conflicts its commits retried. On SQLite always, and
//! on the Glue + S3 emulator given `--glue-endpoint` (feature `glue`; a fresh bucket is created
//! with an unsigned PUT; the writers get the emulator's test credentials in their environment).
//!
//! The producer clones rows from a pool of up to 4,096 pre-generated distinct rows (generation
//! is not timed; cloning is). Sample rows fall into `--months` months (default 1: a live stream
//! writes into the current month; each month touched is one more data file per flush).
//! Nothing here asserts a time: targets are printed as HOLDS / MISSED.

#[path = "common/duration.rs"]
mod duration;
#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;

use std::io::{BufRead, BufReader, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{
    CatalogConfig, SaleRecord, SalesHistory, SnapshotInfo, SourcePosition, TableOptions,
};
use serde_json::{Value, json};

type Res<T> = anyhow::Result<T>;

const DIMENSION: usize = 1024;
const STAGE: &str = "bench";
/// Distinct pre-generated rows the producers clone from.
const POOL: usize = 4096;
/// The longest the contention part waits for its writer processes.
const WRITER_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The emulator's test credentials (never real ones).
const EMULATOR_KEY_ID: &str = "testing";
const EMULATOR_SECRET: &str = "testing-secret-key";
const EMULATOR_REGION: &str = "us-east-1";

/// Streaming-ingest benchmark: single-record pushes through the appender (as fast as possible
/// and at a fixed rate) beside one append per event and the disk's sync-write bandwidth, then
/// 1, 2 and 4 writer processes flushing into one table (SQLite, and Glue given an emulator).
#[derive(Debug, Parser)]
#[command(name = "bench_stream", verbatim_doc_comment)]
struct Cli {
    /// A smoke run: 5,000 rows, 200 baseline events, 1 rep, 64 MiB sync write, contention with
    /// 1 and 2 writers of 2,000 rows (explicit flags win).
    #[arg(long)]
    quick: bool,

    /// Print the results as one JSON document (nothing else on stdout).
    #[arg(long)]
    json: bool,

    /// Single-record pushes per stream run [default: 200000].
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    rows: Option<NonZeroUsize>,

    /// Events per second of the paced run [default: 20000].
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    rate: Option<NonZeroUsize>,

    /// Pushes of the paced run [default: --rows].
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    rate_rows: Option<NonZeroUsize>,

    /// max_age of both stream runs (the paced run flushes on age only).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration::parse)]
    max_age: Duration,

    /// max_rows of the as-fast-as-possible run [default: the appender's, 100000].
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    max_rows: Option<NonZeroUsize>,

    /// max_bytes of the as-fast-as-possible run, in MiB [default: the appender's, 64].
    #[arg(long, value_name = "MIB", value_parser = number::parse::<NonZeroUsize>)]
    max_mib: Option<NonZeroUsize>,

    /// Events of the per-event baseline (one `append` each) [default: 2000].
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    baseline_events: Option<NonZeroUsize>,

    /// Repetitions of the as-fast-as-possible run and the sync write [default: 3].
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    reps: Option<NonZeroUsize>,

    /// MiB written (then fdatasync) by the disk's sync-write measurement [default: 256].
    #[arg(long, value_name = "MIB", value_parser = number::parse::<NonZeroUsize>)]
    sync_mib: Option<NonZeroUsize>,

    /// Months the sample rows fall into (1: a live stream, one data file per flush).
    #[arg(long, value_name = "N", default_value = "1", value_parser = number::parse::<NonZeroUsize>)]
    months: NonZeroUsize,

    /// Scratch directory; a bench-stream-PID directory is made in it and deleted at the end
    /// [default: $TMPDIR].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Skip the contention part.
    #[arg(long, conflicts_with = "contention_only")]
    no_contention: bool,

    /// Run only the contention part.
    #[arg(long)]
    contention_only: bool,

    /// Writer-process counts of the contention part [default: 1,2,4; quick: 1,2].
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', value_parser = number::parse::<NonZeroUsize>)]
    writers: Vec<NonZeroUsize>,

    /// Rows each contention writer streams [default: 20000; quick: 2000].
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    writer_rows: Option<NonZeroUsize>,

    /// A contention writer flushes (one commit) every this many rows [default: 2000; quick: 500].
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    writer_flush_rows: Option<NonZeroUsize>,

    /// Contention writers reload the table before each flush (`refresh`, timed as part of the
    /// commit): shows how many conflicts come from committing on a stale cached version.
    #[arg(long)]
    writer_refresh: bool,

    /// Also run the contention part on the Glue + S3 emulator at this loopback URL (feature
    /// `glue`; start it with `$(bash scripts/venv.sh | tail -n1) python/moto_server.py
    /// --ignore-stdin`).
    #[arg(long, value_name = "URL")]
    glue_endpoint: Option<String>,

    /// Keep the scratch directory (warehouses) at the end.
    #[arg(long)]
    keep: bool,

    /// Log the library's tracing events (flushes, commits, retries) to stderr.
    #[arg(long)]
    trace: bool,

    /// Child mode: one contention writer (reads a start line on stdin, prints one JSON line).
    #[arg(long, hide = true)]
    writer: bool,

    /// Child mode: the catalog string.
    #[arg(long, hide = true, requires = "writer")]
    catalog: Option<String>,

    /// Child mode: the table's stage.
    #[arg(long, hide = true, requires = "writer", default_value = STAGE)]
    stage: String,

    /// Child mode: the source name of the writer's positions.
    #[arg(long, hide = true, requires = "writer")]
    source: Option<String>,

    /// Child mode: seed of the writer's rows.
    #[arg(long, hide = true, requires = "writer", default_value = "1")]
    seed: u64,
}

/// The options with every default resolved.
#[derive(Debug, Clone)]
struct Args {
    json: bool,
    rows: usize,
    rate: usize,
    rate_rows: usize,
    max_age: Duration,
    max_rows: Option<usize>,
    max_bytes: Option<usize>,
    baseline_events: usize,
    reps: usize,
    sync_mib: usize,
    months: u32,
    dir: PathBuf,
    contention: bool,
    stream: bool,
    writers: Vec<usize>,
    writer_rows: usize,
    writer_flush_rows: usize,
    writer_refresh: bool,
    glue_endpoint: Option<String>,
    keep: bool,
}

impl From<&Cli> for Args {
    fn from(c: &Cli) -> Args {
        let q = c.quick;
        let get = |v: Option<NonZeroUsize>, quick: usize, full: usize| {
            v.map_or(if q { quick } else { full }, NonZeroUsize::get)
        };
        let rows = get(c.rows, 5_000, 200_000);
        let base = c.dir.clone().unwrap_or_else(std::env::temp_dir);
        Args {
            json: c.json,
            rows,
            rate: get(c.rate, 20_000, 20_000),
            rate_rows: c.rate_rows.map_or(rows, NonZeroUsize::get),
            max_age: c.max_age,
            max_rows: c.max_rows.map(NonZeroUsize::get),
            max_bytes: c.max_mib.map(|m| m.get() << 20),
            baseline_events: get(c.baseline_events, 200, 2_000),
            reps: get(c.reps, 1, 3),
            sync_mib: get(c.sync_mib, 64, 256),
            months: u32::try_from(c.months.get()).unwrap_or(u32::MAX),
            dir: base.join(format!("bench-stream-{}", std::process::id())),
            contention: !c.no_contention,
            stream: !c.contention_only,
            writers: if c.writers.is_empty() {
                if q { vec![1, 2] } else { vec![1, 2, 4] }
            } else {
                c.writers.iter().map(|n| n.get()).collect()
            },
            writer_rows: get(c.writer_rows, 2_000, 20_000),
            writer_flush_rows: get(c.writer_flush_rows, 500, 2_000),
            writer_refresh: c.writer_refresh,
            glue_endpoint: c.glue_endpoint.clone(),
            keep: c.keep,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The appender's own timing of each flush

/// Captures the appender's `flushed` tracing events (its own timing of each background or
/// explicit flush: the data-file write plus the catalog commit, after the rows' conversion to
/// Arrow). Read only for reporting; when the library words it differently nothing is captured
/// and the figures print as n/a.
mod flush_log {
    use std::sync::Mutex;

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer};

    #[derive(Debug, Clone, Copy)]
    pub struct Flush {
        pub ms: u64,
        pub rows: u64,
    }

    static FLUSHES: Mutex<Vec<Flush>> = Mutex::new(Vec::new());

    /// The flushes seen since the last call.
    pub fn take() -> Vec<Flush> {
        std::mem::take(&mut *FLUSHES.lock().unwrap_or_else(|e| e.into_inner()))
    }

    #[derive(Default)]
    struct Fields {
        flushed: bool,
        ms: Option<u64>,
        rows: u64,
    }

    impl Visit for Fields {
        fn record_u64(&mut self, field: &Field, value: u64) {
            match field.name() {
                "ms" => self.ms = Some(value),
                "rows" => self.rows = value,
                _ => {}
            }
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            self.record_u64(field, u64::try_from(value).unwrap_or(0));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.flushed = value == "flushed";
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.flushed = format!("{value:?}") == "flushed";
            }
        }
    }

    pub struct Capture;

    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if !event.metadata().target().starts_with("sales_history") {
                return;
            }
            let mut f = Fields::default();
            event.record(&mut f);
            if let (true, Some(ms)) = (f.flushed, f.ms) {
                let flush = Flush { ms, rows: f.rows };
                FLUSHES
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(flush);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Data, files, statistics

fn pool(seed: u64, months: u32, n: usize) -> Vec<SaleRecord> {
    let config = SampleConfig::default()
        .seed(seed)
        .months(months)
        .embedding_dimension(DIMENSION);
    SampleGenerator::new(config).take_records(n)
}

/// Arrow bytes per row of the pool (buffers as used).
fn arrow_bytes_per_row(pool: &[SaleRecord]) -> Res<f64> {
    let batch = SaleRecord::to_record_batch(pool)?;
    let bytes: usize = batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum();
    Ok(bytes as f64 / pool.len().max(1) as f64)
}

/// One core's limits for a flush of `copies` × the pool: `SaleRecord` → Arrow conversion alone
/// and the raw Parquet encoder (`ArrowWriter` with the table's settings, one file, fsynced),
/// in rows/s (medians of `reps`).
fn single_core_limits(
    pool: &[SaleRecord],
    dir: &Path,
    copies: usize,
    reps: usize,
) -> Res<(f64, f64)> {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, Encoding};
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use parquet::schema::types::ColumnPath;
    // The table's writer settings for a table with defaults (mirrors src/parquet_props.rs).
    let element = ColumnPath::from(vec!["embedding".into(), "list".into(), "element".into()]);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(sales_history::DEFAULT_ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(128 << 20))
        .set_column_dictionary_enabled(element.clone(), false)
        .set_column_encoding(element.clone(), Encoding::BYTE_STREAM_SPLIT)
        .set_column_statistics_enabled(element, EnabledStatistics::None)
        .build();
    std::fs::create_dir_all(dir)?;
    let rows = pool.len() * copies;
    let (mut convert, mut write) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let start = Instant::now();
        let batches: Vec<_> = (0..copies)
            .map(|_| SaleRecord::to_record_batch(pool))
            .collect::<Result<_, _>>()?;
        convert.push(rows as f64 / start.elapsed().as_secs_f64());
        let path = dir.join("raw.parquet");
        let start = Instant::now();
        let file = std::fs::File::create(&path)?;
        let mut w =
            ArrowWriter::try_new(file.try_clone()?, batches[0].schema(), Some(props.clone()))?;
        for b in &batches {
            let mut offset = 0;
            while offset < b.num_rows() {
                let n = 1024.min(b.num_rows() - offset);
                w.write(&b.slice(offset, n))?;
                offset += n;
            }
        }
        w.close()?;
        file.sync_all()?;
        write.push(rows as f64 / start.elapsed().as_secs_f64());
        std::fs::remove_file(&path)?;
    }
    Ok((median(&convert), median(&write)))
}

/// File system type of the mount holding `path` (from /proc/mounts; the longest match wins).
fn fs_type(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown".to_string();
    };
    let unescape = |s: &str| {
        s.replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\")
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, at, kind) = (f.next()?, f.next()?, f.next()?);
            let at = PathBuf::from(unescape(at));
            path.starts_with(&at)
                .then(|| (at.components().count(), kind.to_string()))
        })
        .max_by_key(|(depth, _)| *depth)
        .map_or_else(|| "unknown".to_string(), |(_, kind)| kind)
}

/// Files and bytes under a directory: (parquet files, parquet bytes, other files, other bytes).
fn tree_stats(dir: &Path) -> (u64, u64, u64, u64) {
    let mut out = (0, 0, 0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if e.path().extension().is_some_and(|x| x == "parquet") {
                out.0 += 1;
                out.1 += meta.len();
            } else {
                out.2 += 1;
                out.3 += meta.len();
            }
        }
    }
    out
}

/// What a fresh handle finds in a local table after a run.
struct Inspect {
    table_rows: u64,
    /// A fresh handle's `scan().count()` (reload + manifest-only planning), median of 3.
    count_s: f64,
    snapshots: Vec<SnapshotInfo>,
    written: u64,
    metadata_files: u64,
    /// Size of the newest (largest) `*.metadata.json`: rewritten by every commit.
    metadata_json_bytes: u64,
}

async fn inspect(config: &CatalogConfig) -> Res<Inspect> {
    let fresh = SalesHistory::open(config, STAGE).await?;
    let mut table_rows = 0;
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        table_rows = fresh.scan().count().await?;
        times.push(start.elapsed().as_secs_f64());
    }
    let snapshots = fresh.snapshots().await?;
    let (_, written, metadata_files, _) =
        table_dir(&fresh).map_or((0, 0, 0, 0), |d| tree_stats(&d));
    let metadata_json_bytes = table_dir(&fresh)
        .and_then(|d| std::fs::read_dir(d.join("metadata")).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".metadata.json"))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .max()
        .unwrap_or(0);
    Ok(Inspect {
        table_rows,
        count_s: median(&times),
        snapshots,
        written,
        metadata_files,
        metadata_json_bytes,
    })
}

fn table_dir(table: &SalesHistory) -> Option<PathBuf> {
    table.location().strip_prefix("file://").map(PathBuf::from)
}

/// Writes `mib` MiB to a file in `dir` and fdatasyncs it (`dd bs=1M conv=fdatasync`); MB/s.
fn sync_write(dir: &Path, mib: usize) -> Res<f64> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("sync-write.bin");
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in block.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let start = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    for _ in 0..mib {
        f.write_all(&block)?;
    }
    f.sync_data()?;
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok((mib << 20) as f64 / 1e6 / secs)
}

/// The 1-minute load average (other work on the machine skews every figure).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn settle(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = Command::new("sync").status();
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Percentiles (nearest rank) of durations in seconds.
#[derive(Debug, Clone, Copy)]
struct Dist {
    n: usize,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Dist {
    fn of(values: &[f64]) -> Dist {
        let mut s = values.to_vec();
        s.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            if s.is_empty() {
                return f64::NAN;
            }
            let r = ((p / 100.0) * s.len() as f64).ceil() as usize;
            s[r.clamp(1, s.len()) - 1]
        };
        Dist {
            n: s.len(),
            p50: rank(50.0),
            p99: rank(99.0),
            p999: rank(99.9),
            max: rank(100.0),
        }
    }

    fn to_json(self) -> Value {
        json!({"n": self.n, "p50_s": self.p50, "p99_s": self.p99, "p999_s": self.p999, "max_s": self.max})
    }
}

/// Seconds as a short human string.
fn fmt_s(s: f64) -> String {
    if s.is_nan() {
        "n/a".to_string()
    } else if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// An integer with thousands separators.
fn fmt_n(n: f64) -> String {
    if !n.is_finite() {
        return "n/a".to_string();
    }
    let s = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 { format!("-{out}") } else { out }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "HOLDS" } else { "MISSED" }
}

// ---------------------------------------------------------------------------------------------
// One stream run

/// Appender settings of a run.
#[derive(Debug, Clone, Copy)]
struct Settings {
    max_rows: usize,
    max_bytes: usize,
    max_buffered_bytes: usize,
    max_age: Duration,
}

impl Settings {
    fn to_json(self) -> Value {
        json!({"max_rows": self.max_rows, "max_bytes": self.max_bytes,
               "max_buffered_bytes": self.max_buffered_bytes, "max_age_s": self.max_age.as_secs_f64()})
    }
}

#[derive(Debug, Clone)]
struct StreamResult {
    label: String,
    rows: usize,
    rate: Option<usize>,
    settings: Settings,
    /// First push to `close` returned.
    elapsed_s: f64,
    /// First push to the last push returned.
    push_phase_s: f64,
    events_per_s: f64,
    in_mb_per_s: f64,
    written_bytes: u64,
    written_mb_per_s: f64,
    snapshots: usize,
    commits: u64,
    data_files: u64,
    metadata_files: u64,
    failed_flushes: u64,
    push: Dist,
    visible: Dist,
    /// Rows whose commit the watch channel never reported (should be 0).
    unobserved: usize,
    /// The appender's own timing of each flush (write + commit, conversion excluded).
    flush: Dist,
    flush_rows: f64,
    /// Paced run: snapshot cadence, the final `close` flush excluded.
    cadence: Option<Cadence>,
    /// Paced run: time from the oldest row of a unit + max_age to its commit (age flushes).
    commit_after_due: Option<Dist>,
    /// Paced run: visible latency confirmed by a fresh scan of a second handle.
    scan_visible: Option<Dist>,
    scan_checks: usize,
    scan_behind: usize,
    table_rows: u64,
    count_s: f64,
    metadata_json_bytes: u64,
}

impl StreamResult {
    fn files_per_event(&self) -> f64 {
        self.data_files as f64 / self.rows as f64
    }

    fn to_json(&self) -> Value {
        json!({
            "label": self.label, "rows": self.rows, "rate": self.rate,
            "settings": self.settings.to_json(),
            "elapsed_s": self.elapsed_s, "push_phase_s": self.push_phase_s,
            "events_per_s": self.events_per_s, "in_mb_per_s": self.in_mb_per_s,
            "written_bytes": self.written_bytes, "written_mb_per_s": self.written_mb_per_s,
            "snapshots": self.snapshots, "commits": self.commits, "data_files": self.data_files,
            "metadata_files": self.metadata_files, "failed_flushes": self.failed_flushes,
            "data_files_per_event": self.files_per_event(),
            "push_latency": self.push.to_json(), "visible_latency": self.visible.to_json(),
            "unobserved_rows": self.unobserved,
            "flush_write_commit": self.flush.to_json(), "flush_rows_median": self.flush_rows,
            "cadence": self.cadence.map(Cadence::to_json),
            "commit_after_due": self.commit_after_due.map(Dist::to_json),
            "scan_visible_latency": self.scan_visible.map(Dist::to_json),
            "scan_checks": self.scan_checks, "scan_checks_behind": self.scan_behind,
            "table_rows": self.table_rows, "fresh_count_s": self.count_s,
            "metadata_json_bytes": self.metadata_json_bytes,
        })
    }
}

/// Per row: first time in `obs` (time, rows committed; in time order) that covers it, minus
/// its push time. Returns the latencies and the count of rows never covered.
fn cover_latencies(starts: &[Instant], obs: &[(Instant, u64)]) -> (Vec<f64>, usize) {
    let mut out = Vec::with_capacity(starts.len());
    let mut j = 0;
    let mut missing = 0;
    for (i, t0) in starts.iter().enumerate() {
        while j < obs.len() && obs[j].1 <= i as u64 {
            j += 1;
        }
        match obs.get(j) {
            Some((t, _)) => out.push(t.saturating_duration_since(*t0).as_secs_f64()),
            None => missing += 1,
        }
    }
    (out, missing)
}

/// How snapshots followed each other (their timestamps), the last one (the `close` flush)
/// excluded.
#[derive(Debug, Clone, Copy)]
struct Cadence {
    snapshots: usize,
    min_gap_s: f64,
    mean_gap_s: f64,
    /// Most snapshots in any half-open 1-s window.
    max_in_1s: usize,
}

impl Cadence {
    fn of(snapshots: &[SnapshotInfo]) -> Cadence {
        let mut ms: Vec<i64> = snapshots
            .iter()
            .map(|s| s.committed_at.timestamp_millis())
            .collect();
        ms.sort_unstable();
        ms.pop();
        let gaps: Vec<f64> = ms.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e3).collect();
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..ms.len() {
            while ms[hi] - ms[lo] >= 1000 {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        Cadence {
            snapshots: ms.len(),
            min_gap_s: gaps.iter().copied().fold(f64::NAN, f64::min),
            mean_gap_s: if gaps.is_empty() {
                f64::NAN
            } else {
                gaps.iter().sum::<f64>() / gaps.len() as f64
            },
            max_in_1s: best,
        }
    }

    fn to_json(self) -> Value {
        json!({"age_snapshots": self.snapshots, "min_gap_s": self.min_gap_s,
               "mean_gap_s": self.mean_gap_s, "max_in_1s": self.max_in_1s})
    }
}

async fn stream_run(
    label: &str,
    dir: &Path,
    pool: &[SaleRecord],
    bytes_per_row: f64,
    rows: usize,
    rate: Option<usize>,
    settings: Settings,
) -> Res<StreamResult> {
    let config = CatalogConfig::local(dir);
    let options = TableOptions::default().embedding_dimension(DIMENSION);
    let table = SalesHistory::ensure_with(&config, STAGE, options).await?;
    let appender = table
        .appender()
        .max_rows(settings.max_rows)
        .max_bytes(settings.max_bytes)
        .max_buffered_bytes(settings.max_buffered_bytes)
        .max_age(settings.max_age)
        .start()?;

    // Commit observer on its own OS thread, so that a busy runtime does not delay it.
    let mut rx = appender.watch();
    let observer = std::thread::spawn(move || {
        let mut seen: Vec<(Instant, u64, u64)> = Vec::new();
        while futures::executor::block_on(rx.changed()).is_ok() {
            let stats = *rx.borrow_and_update();
            seen.push((Instant::now(), stats.committed_rows, stats.commits));
        }
        seen
    });
    // Paced run: a second handle scans after every commit (what a reader would see).
    let scanner = if rate.is_some() {
        let reader = SalesHistory::open(&config, STAGE).await?;
        let mut rx = appender.watch();
        Some(tokio::spawn(async move {
            let mut seen: Vec<(Instant, u64, u64)> = Vec::new();
            while rx.changed().await.is_ok() {
                let committed = rx.borrow_and_update().committed_rows;
                let count = reader.scan().count().await?;
                seen.push((Instant::now(), count, committed));
            }
            Res::Ok(seen)
        }))
    } else {
        None
    };

    let mut starts = Vec::with_capacity(rows);
    let mut push_lat = Vec::with_capacity(rows);
    let source = "bench:stream";
    flush_log::take();
    let begin = Instant::now();
    let interval = rate.map(|r| 1.0 / r as f64);
    for i in 0..rows {
        if let Some(interval) = interval {
            let due = begin + Duration::from_secs_f64(i as f64 * interval);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let record = pool[i % pool.len()].clone();
        let position = SourcePosition::at(source, i as u64)?;
        let t0 = Instant::now();
        appender.push_at(record, position).await?;
        let t1 = Instant::now();
        starts.push(t0);
        push_lat.push((t1 - t0).as_secs_f64());
    }
    let push_phase_s = begin.elapsed().as_secs_f64();
    let before_close = appender.stats();
    appender.close().await?;
    let elapsed_s = begin.elapsed().as_secs_f64();
    let flushes = flush_log::take();
    let observed = observer
        .join()
        .map_err(|_| anyhow!("the commit observer panicked"))?;
    let scans = match scanner {
        Some(h) => Some(h.await??),
        None => None,
    };

    let found = inspect(&config).await?;
    let (table_rows, written, meta_files) = (found.table_rows, found.written, found.metadata_files);
    let snapshots = &found.snapshots;
    let data_files: u64 = snapshots.iter().filter_map(|s| s.added_files).sum();
    let commits = observed.last().map_or(0, |o| o.2);
    let observed: Vec<(Instant, u64)> = observed.iter().map(|(t, n, _)| (*t, *n)).collect();
    let (visible, unobserved) = cover_latencies(&starts, &observed);
    let mut result = StreamResult {
        label: label.to_string(),
        rows,
        rate,
        settings,
        elapsed_s,
        push_phase_s,
        events_per_s: rows as f64 / elapsed_s,
        in_mb_per_s: rows as f64 * bytes_per_row / 1e6 / elapsed_s,
        written_bytes: written,
        written_mb_per_s: written as f64 / 1e6 / elapsed_s,
        snapshots: snapshots.len(),
        commits,
        data_files,
        metadata_files: meta_files,
        failed_flushes: before_close.failed_flushes,
        push: Dist::of(&push_lat),
        visible: Dist::of(&visible),
        flush: Dist::of(
            &flushes
                .iter()
                .map(|f| f.ms as f64 / 1e3)
                .collect::<Vec<_>>(),
        ),
        flush_rows: median(&flushes.iter().map(|f| f.rows as f64).collect::<Vec<_>>()),
        unobserved,
        cadence: None,
        commit_after_due: None,
        scan_visible: None,
        scan_checks: 0,
        scan_behind: 0,
        table_rows,
        count_s: found.count_s,
        metadata_json_bytes: found.metadata_json_bytes,
    };
    if rate.is_some() {
        result.cadence = Some(Cadence::of(snapshots));
        // Each unit's first row was pushed at starts[c_prev]; an age flush is due max_age later.
        let mut after_due = Vec::new();
        let mut prev = 0u64;
        for (t, committed) in &observed {
            if *committed > prev && (prev as usize) < starts.len() {
                let due = starts[prev as usize] + settings.max_age;
                after_due.push(t.saturating_duration_since(due).as_secs_f64());
            }
            prev = *committed;
        }
        // The last unit was flushed by close, not by age.
        after_due.pop();
        result.commit_after_due = Some(Dist::of(&after_due));
    }
    if let Some(scans) = scans {
        result.scan_checks = scans.len();
        result.scan_behind = scans.iter().filter(|(_, c, w)| c < w).count();
        let obs: Vec<(Instant, u64)> = scans.iter().map(|(t, c, _)| (*t, *c)).collect();
        let (lat, _) = cover_latencies(&starts, &obs);
        result.scan_visible = Some(Dist::of(&lat));
    }
    Ok(result)
}

#[derive(Debug, Clone)]
struct Baseline {
    events: usize,
    elapsed_s: f64,
    events_per_s: f64,
    written_bytes: u64,
    snapshots: usize,
    data_files: u64,
    metadata_files: u64,
    latency: Dist,
    first10: f64,
    last10: f64,
    table_rows: u64,
    count_s: f64,
    metadata_json_bytes: u64,
}

impl Baseline {
    fn files_per_event(&self) -> f64 {
        self.data_files as f64 / self.events as f64
    }

    fn to_json(&self) -> Value {
        json!({
            "events": self.events, "elapsed_s": self.elapsed_s, "events_per_s": self.events_per_s,
            "written_bytes": self.written_bytes, "snapshots": self.snapshots,
            "data_files": self.data_files, "metadata_files": self.metadata_files,
            "data_files_per_event": self.files_per_event(), "append_latency": self.latency.to_json(),
            "median_first10_s": self.first10, "median_last10_s": self.last10,
            "table_rows": self.table_rows, "fresh_count_s": self.count_s,
            "metadata_json_bytes": self.metadata_json_bytes,
        })
    }
}

async fn baseline(dir: &Path, pool: &[SaleRecord], events: usize) -> Res<Baseline> {
    let config = CatalogConfig::local(dir);
    let options = TableOptions::default().embedding_dimension(DIMENSION);
    let table = SalesHistory::ensure_with(&config, STAGE, options).await?;
    let mut lat = Vec::with_capacity(events);
    let begin = Instant::now();
    for i in 0..events {
        let record = pool[i % pool.len()].clone();
        let t0 = Instant::now();
        table.append(vec![record]).await?;
        lat.push(t0.elapsed().as_secs_f64());
    }
    let elapsed_s = begin.elapsed().as_secs_f64();
    let found = inspect(&config).await?;
    let (table_rows, written, meta_files) = (found.table_rows, found.written, found.metadata_files);
    let snapshots = &found.snapshots;
    let k = 10.min(lat.len());
    Ok(Baseline {
        events,
        elapsed_s,
        events_per_s: events as f64 / elapsed_s,
        written_bytes: written,
        snapshots: snapshots.len(),
        data_files: snapshots.iter().filter_map(|s| s.added_files).sum(),
        metadata_files: meta_files,
        latency: Dist::of(&lat),
        first10: median(&lat[..k]),
        last10: median(&lat[lat.len() - k..]),
        table_rows,
        count_s: found.count_s,
        metadata_json_bytes: found.metadata_json_bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// Contention: writer processes

/// Child mode: open the table, build rows, say READY, wait for the start line, stream, report.
async fn writer_main(cli: &Cli, args: &Args) -> Res<()> {
    let catalog = cli.catalog.as_deref().context("--writer needs --catalog")?;
    let config: CatalogConfig = catalog.parse()?;
    let source = cli.source.clone().unwrap_or_else(|| "writer".to_string());
    let table = SalesHistory::open(&config, &cli.stage).await?;
    let rows = args.writer_rows;
    let every = args.writer_flush_rows.min(rows);
    let pool = pool(cli.seed, args.months, POOL.min(rows));
    // Only explicit flushes commit: limits above one flush's rows, age far away.
    let room = (every + 1) * (DIMENSION * 8 + 4096);
    let appender = table
        .appender()
        .max_rows(every + 1)
        .max_bytes(room)
        .max_buffered_bytes(room)
        .max_age(Duration::from_secs(3600))
        .start()?;
    println!("READY");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if line.trim() != "GO" {
        bail!("writer: expected GO on stdin, got {line:?}");
    }
    flush_log::take();
    let begin = Instant::now();
    let mut commit_s = Vec::new();
    let mut attempts = Vec::new();
    let mut commit_at_s = Vec::new();
    for i in 0..rows {
        let position = SourcePosition::at(&source, i as u64)?;
        appender
            .push_at(pool[i % pool.len()].clone(), position)
            .await?;
        if (i + 1) % every == 0 || i + 1 == rows {
            let t0 = Instant::now();
            if args.writer_refresh {
                table.refresh().await?;
            }
            let summary = appender.flush().await?;
            commit_s.push(t0.elapsed().as_secs_f64());
            commit_at_s.push(begin.elapsed().as_secs_f64());
            attempts.push(summary.map_or(0, |s| s.attempts));
        }
    }
    let stats = appender.stats();
    appender.close().await?;
    let elapsed_s = begin.elapsed().as_secs_f64();
    let cs = table.commit_stats();
    let write_commit_s: Vec<f64> = flush_log::take()
        .iter()
        .map(|f| f.ms as f64 / 1e3)
        .collect();
    let out = json!({
        "source": source, "rows": rows, "committed_rows": stats.committed_rows,
        "commits": stats.commits, "elapsed_s": elapsed_s, "commit_s": commit_s,
        "commit_at_s": commit_at_s, "attempts": attempts, "write_commit_s": write_commit_s,
        "conflicts": cs.conflicts, "throttled": cs.throttled, "catalog_commits": cs.commits,
    });
    println!("RESULT {out}");
    std::io::stdout().flush()?;
    Ok(())
}

/// Where a contention round writes: a catalog for the parent, its string for the children,
/// and the environment the children need.
struct Target {
    kind: &'static str,
    config: CatalogConfig,
    /// Glue databases are shared by all buckets: every round gets its own stage.
    stage: String,
    catalog: String,
    env: Vec<(&'static str, String)>,
}

fn local_target(dir: &Path) -> Target {
    let config = CatalogConfig::local(dir);
    Target {
        kind: "SQLite (local)",
        stage: STAGE.to_string(),
        catalog: dir.display().to_string(),
        config,
        env: Vec::new(),
    }
}

/// Checks that `url` points at this machine (the benchmark talks to nothing else).
fn loopback(url: &str) -> Res<(String, u16)> {
    let parsed = url::Url::parse(url).with_context(|| format!("--glue-endpoint {url}"))?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    let ok = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1");
    if !ok || parsed.scheme() != "http" {
        bail!("--glue-endpoint must be http://127.0.0.1:PORT (the emulator), got {url}");
    }
    let port = parsed
        .port_or_known_default()
        .context("--glue-endpoint has no port")?;
    Ok((host, port))
}

/// Creates an S3 bucket on the emulator (it accepts an unsigned path-style PUT).
fn create_bucket(host: &str, port: u16, bucket: &str) -> Res<()> {
    use std::io::Read;
    let addr = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let mut s = std::net::TcpStream::connect((addr.trim_matches(['[', ']']), port))
        .with_context(|| format!("cannot reach the emulator at {host}:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    if !resp.starts_with("HTTP/1.1 200") && !resp.starts_with("HTTP/1.0 200") {
        bail!(
            "create bucket {bucket}: {}",
            resp.lines().next().unwrap_or("")
        );
    }
    Ok(())
}

#[cfg(feature = "glue")]
fn glue_target(endpoint: &str, bucket: &str, stage: String) -> Res<Target> {
    use sales_history::{AwsCredentials, GlueConfig};
    let (host, port) = loopback(endpoint)?;
    create_bucket(&host, port, bucket)?;
    let endpoint = endpoint.trim_end_matches('/');
    let glue = GlueConfig::new(EMULATOR_REGION, format!("s3://{bucket}/warehouse"))
        .glue_endpoint(endpoint)
        .s3_endpoint(endpoint);
    // The string form carries no credentials: the children get the emulator's in their env.
    let catalog = CatalogConfig::from(glue.clone()).to_string();
    let config = CatalogConfig::from(
        glue.credentials(AwsCredentials::new(EMULATOR_KEY_ID, EMULATOR_SECRET)),
    );
    Ok(Target {
        kind: "Glue (moto emulator)",
        config,
        stage,
        catalog,
        env: vec![
            ("AWS_ACCESS_KEY_ID", EMULATOR_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", EMULATOR_SECRET.to_string()),
            ("AWS_REGION", EMULATOR_REGION.to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ],
    })
}

#[cfg(not(feature = "glue"))]
fn glue_target(endpoint: &str, bucket: &str, stage: String) -> Res<Target> {
    let (host, port) = loopback(endpoint)?;
    let _ = (host, port, bucket, stage, create_bucket);
    let _ = (EMULATOR_KEY_ID, EMULATOR_SECRET, EMULATOR_REGION);
    bail!("--glue-endpoint needs the `glue` feature (cargo run --features glue ...)")
}

#[derive(Debug, Clone)]
struct Contention {
    catalog: String,
    writers: usize,
    rows: u64,
    commits: usize,
    wall_s: f64,
    commits_per_s: f64,
    rows_per_s: f64,
    conflicts: u64,
    throttled: u64,
    commit: Dist,
    /// The appender's timing of the same flushes: write + catalog commit (with retries).
    write_commit: Dist,
    table_rows: u64,
    snapshots: usize,
    per_writer: Vec<Value>,
}

impl Contention {
    fn exact(&self) -> bool {
        self.table_rows == self.rows
    }

    fn to_json(&self) -> Value {
        json!({
            "catalog": self.catalog, "writers": self.writers, "rows": self.rows,
            "commits": self.commits, "wall_s": self.wall_s, "commits_per_s": self.commits_per_s,
            "rows_per_s": self.rows_per_s, "conflicts_retried": self.conflicts,
            "throttled_retried": self.throttled, "commit_latency": self.commit.to_json(),
            "write_commit_latency": self.write_commit.to_json(),
            "table_rows": self.table_rows, "rows_exact": self.exact(),
            "snapshots": self.snapshots, "per_writer": self.per_writer,
        })
    }
}

struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

async fn contention_round(args: &Args, target: &Target, writers: usize) -> Res<Contention> {
    let options = TableOptions::default().embedding_dimension(DIMENSION);
    SalesHistory::ensure_with(&target.config, &target.stage, options).await?;
    let exe = std::env::current_exe()?;
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut children = Vec::new();
    for w in 0..writers {
        let mut cmd = Command::new(&exe);
        cmd.args(["--writer", "--catalog", &target.catalog])
            .args(["--stage", &target.stage])
            .args(["--source", &format!("bench:writer-{w}")])
            .args(["--seed", &(w as u64 + 1).to_string()])
            .args(["--writer-rows", &args.writer_rows.to_string()])
            .args(["--writer-flush-rows", &args.writer_flush_rows.to_string()])
            .args(args.writer_refresh.then_some("--writer-refresh"))
            .args(["--months", &args.months.to_string()])
            .envs(target.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("cannot start a writer process")?;
        let stdout = child.stdout.take().context("writer stdout")?;
        let stdin = child.stdin.take();
        children.push(Writer { child, stdin });
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send((w, Some(l))).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send((w, None));
        });
    }
    drop(tx);
    let deadline = Instant::now() + WRITER_TIMEOUT;
    let next = |what: &str| -> Res<(usize, Option<String>)> {
        let left = deadline.saturating_duration_since(Instant::now());
        rx.recv_timeout(left)
            .map_err(|_| anyhow!("writers did not {what} within {WRITER_TIMEOUT:?}"))
    };
    let mut ready = 0;
    while ready < writers {
        match next("start")? {
            (_, Some(l)) if l == "READY" => ready += 1,
            (w, Some(l)) => bail!("writer {w} said {l:?} before READY"),
            (w, None) => bail!("writer {w} ended before READY (see its stderr)"),
        }
    }
    let go = Instant::now();
    for c in &mut children {
        if let Some(mut stdin) = c.stdin.take() {
            writeln!(stdin, "GO")?;
        }
    }
    let mut results: Vec<Option<Value>> = vec![None; writers];
    let mut done = 0;
    let mut last_result = go;
    while done < writers {
        match next("finish")? {
            (w, Some(l)) => {
                if let Some(body) = l.strip_prefix("RESULT ") {
                    results[w] = Some(serde_json::from_str(body)?);
                    last_result = Instant::now();
                }
            }
            (w, None) => {
                done += 1;
                if results[w].is_none() {
                    bail!("writer {w} ended without a result (see its stderr)");
                }
            }
        }
    }
    for c in &mut children {
        let status = c.child.wait()?;
        if !status.success() {
            bail!("a writer process failed ({status})");
        }
    }
    let wall_s = (last_result - go).as_secs_f64();
    let results: Vec<Value> = results.into_iter().flatten().collect();
    let mut commit_s = Vec::new();
    let mut write_commit_s = Vec::new();
    let (mut rows, mut conflicts, mut throttled) = (0u64, 0u64, 0u64);
    for r in &results {
        rows += r["committed_rows"].as_u64().unwrap_or(0);
        conflicts += r["conflicts"].as_u64().unwrap_or(0);
        throttled += r["throttled"].as_u64().unwrap_or(0);
        if let Some(v) = r["commit_s"].as_array() {
            commit_s.extend(v.iter().filter_map(Value::as_f64));
        }
        if let Some(v) = r["write_commit_s"].as_array() {
            write_commit_s.extend(v.iter().filter_map(Value::as_f64));
        }
    }
    let reader = SalesHistory::open(&target.config, &target.stage).await?;
    let table_rows = reader.scan().count().await?;
    let snapshots = reader.snapshots().await?.len();
    let commits = commit_s.len();
    Ok(Contention {
        catalog: target.kind.to_string(),
        writers,
        rows,
        commits,
        wall_s,
        commits_per_s: commits as f64 / wall_s,
        rows_per_s: rows as f64 / wall_s,
        conflicts,
        throttled,
        commit: Dist::of(&commit_s),
        write_commit: Dist::of(&write_commit_s),
        table_rows,
        snapshots,
        per_writer: results,
    })
}

// ---------------------------------------------------------------------------------------------
// Output

fn print_stream(r: &StreamResult) {
    println!(
        "  {}: {} rows in {:.2} s (pushes done at {:.2} s): {} events/s, {:.1} MB/s in, {:.1} MB/s written",
        r.label,
        fmt_n(r.rows as f64),
        r.elapsed_s,
        r.push_phase_s,
        fmt_n(r.events_per_s),
        r.in_mb_per_s,
        r.written_mb_per_s
    );
    println!(
        "    snapshots {}, data files {}, metadata files {} (metadata.json {:.1} KB), failed flushes {}, table rows {} ({}, fresh count() {})",
        r.snapshots,
        r.data_files,
        r.metadata_files,
        r.metadata_json_bytes as f64 / 1e3,
        r.failed_flushes,
        fmt_n(r.table_rows as f64),
        if r.table_rows == r.rows as u64 {
            "exact"
        } else {
            "NOT EXACT"
        },
        fmt_s(r.count_s)
    );
    println!(
        "    push p50 {} p99 {} p99.9 {} max {}; visible p50 {} p99 {} max {}{}",
        fmt_s(r.push.p50),
        fmt_s(r.push.p99),
        fmt_s(r.push.p999),
        fmt_s(r.push.max),
        fmt_s(r.visible.p50),
        fmt_s(r.visible.p99),
        fmt_s(r.visible.max),
        if r.unobserved > 0 {
            format!(" ({} rows never reported!)", r.unobserved)
        } else {
            String::new()
        }
    );
    println!(
        "    {} flushes of {} rows (median); the appender's timing of write + commit: p50 {} p99 {} max {}",
        r.flush.n,
        fmt_n(r.flush_rows),
        fmt_s(r.flush.p50),
        fmt_s(r.flush.p99),
        fmt_s(r.flush.max)
    );
    if let Some(d) = r.scan_visible {
        println!(
            "    seen by a fresh scan of a 2nd handle: p50 {} p99 {} max {} ({} scans, {} behind the commit)",
            fmt_s(d.p50),
            fmt_s(d.p99),
            fmt_s(d.max),
            r.scan_checks,
            r.scan_behind
        );
    }
    if let Some(d) = r.commit_after_due {
        println!(
            "    age flushes: commit landed p50 {} p99 {} max {} after due (oldest row + max_age)",
            fmt_s(d.p50),
            fmt_s(d.p99),
            fmt_s(d.max)
        );
    }
}

struct Report {
    fs: String,
    dir: PathBuf,
    sync_mb_s: Vec<f64>,
    fast: Vec<StreamResult>,
    paced: Option<StreamResult>,
    baseline: Option<Baseline>,
    contention: Vec<Contention>,
    /// One core's conversion and raw encoder rates, rows/s.
    limits: Option<(f64, f64)>,
}

/// Rows/s of two stages run one after the other on one core.
fn serial(a: f64, b: f64) -> f64 {
    1.0 / (1.0 / a + 1.0 / b)
}

fn med_of(rs: &[StreamResult], f: impl Fn(&StreamResult) -> f64) -> f64 {
    median(&rs.iter().map(f).collect::<Vec<_>>())
}

fn print_summary(args: &Args, rep: &Report) {
    let sync = median(&rep.sync_mb_s);
    if !rep.fast.is_empty() || rep.paced.is_some() {
        println!(
            "\n== summary ({} at {}; sync write {:.0} MB/s median of {}) ==",
            rep.fs,
            rep.dir.display(),
            sync,
            rep.sync_mb_s.len()
        );
        println!(
            "\n| run | events | events/s | MB/s in | MB/s written | of sync write | snapshots | data files | files/event | push p50 | push p99 | visible p99 |"
        );
        println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    }
    let row = |name: String, r: &[StreamResult]| {
        let written = med_of(r, |x| x.written_mb_per_s);
        println!(
            "| {name} | {} | {} | {:.1} | {:.1} | {:.0}% | {:.0} | {:.0} | {:.5} | {} | {} | {} |",
            fmt_n(med_of(r, |x| x.rows as f64)),
            fmt_n(med_of(r, |x| x.events_per_s)),
            med_of(r, |x| x.in_mb_per_s),
            written,
            100.0 * written / sync,
            med_of(r, |x| x.snapshots as f64),
            med_of(r, |x| x.data_files as f64),
            med_of(r, StreamResult::files_per_event),
            fmt_s(med_of(r, |x| x.push.p50)),
            fmt_s(med_of(r, |x| x.push.p99)),
            fmt_s(med_of(r, |x| x.visible.p99)),
        );
    };
    if !rep.fast.is_empty() {
        let name = format!(
            "stream, as fast as possible ({}; median of {})",
            rep.fs,
            rep.fast.len()
        );
        row(name, &rep.fast);
    }
    if let Some(p) = &rep.paced {
        let name = format!(
            "stream at {}/s, max_age {} ({})",
            fmt_n(args.rate as f64),
            fmt_s(args.max_age.as_secs_f64()),
            rep.fs
        );
        row(name, std::slice::from_ref(p));
    }
    if let Some(b) = &rep.baseline {
        let written = b.written_bytes as f64 / 1e6 / b.elapsed_s;
        println!(
            "| one append per event ({}) | {} | {} | - | {:.1} | {:.1}% | {} | {} | {:.3} | {} | {} | {} |",
            rep.fs,
            fmt_n(b.events as f64),
            fmt_n(b.events_per_s),
            written,
            100.0 * written / sync,
            b.snapshots,
            b.data_files,
            b.files_per_event(),
            fmt_s(b.latency.p50),
            fmt_s(b.latency.p99),
            fmt_s(b.latency.p99),
        );
    }
    if !rep.fast.is_empty() || rep.paced.is_some() {
        println!(
            "\n(push p50/p99 of the baseline row: one `append` call; its row is visible when the call returns)"
        );
    }

    // Targets.
    if !rep.fast.is_empty() || rep.paced.is_some() {
        println!("\n== targets ==");
    }
    if !rep.fast.is_empty() {
        let eps = med_of(&rep.fast, |x| x.events_per_s);
        let written = med_of(&rep.fast, |x| x.written_mb_per_s);
        if rep.fs == "tmpfs" {
            println!(
                "as fast as possible on tmpfs: {} events/s (target >= 50,000) {}",
                fmt_n(eps),
                verdict(eps >= 50_000.0)
            );
        } else {
            println!(
                "as fast as possible on {}: {} events/s, {:.1} MB/s written = {:.0}% of the disk's sync write ({:.0} MB/s)",
                rep.fs,
                fmt_n(eps),
                written,
                100.0 * written / sync,
                sync
            );
        }
    }
    if let (Some((convert, encode)), false) = (rep.limits, rep.fast.is_empty()) {
        let eps = med_of(&rep.fast, |x| x.events_per_s);
        let one = serial(convert, encode);
        println!(
            "as fast as possible: {} events/s = {:.0}% of one core converting and encoding in turn ({} rows/s: conversion {}, raw encoder {})",
            fmt_n(eps),
            100.0 * eps / one,
            fmt_n(one),
            fmt_n(convert),
            fmt_n(encode)
        );
    }
    if let Some(p) = &rep.paced {
        // At most one snapshot per second: in T seconds at most ceil(T) snapshots.
        let allowed = p.elapsed_s.ceil() as usize;
        println!(
            "paced: {} snapshots in {:.2} s = {:.2} per second; at most one per second allows {allowed} {}",
            p.snapshots,
            p.elapsed_s,
            p.snapshots as f64 / p.elapsed_s,
            verdict(p.snapshots <= allowed)
        );
        if let Some(c) = p.cadence.filter(|c| c.snapshots >= 2) {
            println!(
                "paced: age flushes start >= max_age apart; their snapshots: mean gap {}, min gap {}, most in any 1 s window {} (commit-time jitter; final close flush excluded)",
                fmt_s(c.mean_gap_s),
                fmt_s(c.min_gap_s),
                c.max_in_1s
            );
        }
        if let Some(b) = &rep.baseline {
            let ratio = b.files_per_event() / p.files_per_event();
            println!(
                "paced: {:.5} data files per event vs {:.3} for one append per event: {}x fewer (target >= 50x) {}",
                p.files_per_event(),
                b.files_per_event(),
                fmt_n(ratio),
                verdict(ratio >= 50.0)
            );
        }
        let after_due = p.commit_after_due.map_or(f64::NAN, |d| d.p99);
        let bound = args.max_age.as_secs_f64() + after_due;
        if bound.is_nan() || p.flush.n < 2 {
            println!(
                "paced: visible p99 {}: too few age flushes in this run to compare with max_age + one commit",
                fmt_s(p.visible.p99)
            );
        } else {
            println!(
                "paced: visible p99 {} (max {}) vs max_age + one flush (p99 of due -> committed) = {} {}",
                fmt_s(p.visible.p99),
                fmt_s(p.visible.max),
                fmt_s(bound),
                verdict(p.visible.p99 <= bound)
            );
            let outside = p.commit_after_due.map_or(f64::NAN, |d| d.p50);
            println!(
                "paced: one flush p50 {} due -> committed, of which the appender's write + commit {}: {} before it (wake-up, records -> Arrow conversion)",
                fmt_s(outside),
                fmt_s(p.flush.p50),
                fmt_s(outside - p.flush.p50)
            );
        }
    }
    if let (Some(b), false) = (&rep.baseline, rep.fast.is_empty()) {
        let fast_fpe = med_of(&rep.fast, StreamResult::files_per_event);
        println!(
            "as fast as possible: {}x fewer data files per event than one append per event; {:.0}x the events/s",
            fmt_n(b.files_per_event() / fast_fpe),
            med_of(&rep.fast, |x| x.events_per_s) / b.events_per_s
        );
    }

    if !rep.contention.is_empty() {
        println!(
            "\n== contention: writer processes flushing every {} rows into one table ({} rows each){} ==",
            fmt_n(args.writer_flush_rows as f64),
            fmt_n(args.writer_rows as f64),
            if args.writer_refresh {
                ", refresh before each flush"
            } else {
                ""
            }
        );
        println!(
            "\n| catalog | writers | rows | commits | commits/s | rows/s | conflicts retried | commit p50 | commit p99 | rows exact |"
        );
        println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|:-:|");
        for c in &rep.contention {
            println!(
                "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} |",
                c.catalog,
                c.writers,
                fmt_n(c.rows as f64),
                c.commits,
                c.commits_per_s,
                fmt_n(c.rows_per_s),
                c.conflicts,
                fmt_s(c.commit.p50),
                fmt_s(c.commit.p99),
                if c.exact() {
                    "yes".to_string()
                } else {
                    format!("NO ({} in the table)", c.table_rows)
                }
            );
        }
        println!(
            "\n(commit = one `flush()`: Arrow conversion, Parquet write, catalog commit and its retries; p99 of a few dozen commits is close to the max)"
        );
    }
}

// ---------------------------------------------------------------------------------------------

async fn run(args: Args) -> Res<()> {
    std::fs::create_dir_all(&args.dir)?;
    let fs = fs_type(&args.dir);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_start = load_average();
    let say = |s: String| {
        if !args.json {
            println!("{s}");
        }
    };
    say(format!(
        "bench_stream: {cores} cores, load average {:.2}, scratch {} ({fs}), {DIMENSION}-dim rows in {} month(s)",
        load_start,
        args.dir.display(),
        args.months
    ));
    let mut rep = Report {
        fs: fs.clone(),
        dir: args.dir.clone(),
        sync_mb_s: Vec::new(),
        fast: Vec::new(),
        paced: None,
        baseline: None,
        contention: Vec::new(),
        limits: None,
    };

    if args.stream {
        let pool = pool(7, args.months, POOL.min(args.rows.max(args.rate_rows)));
        let bpr = arrow_bytes_per_row(&pool)?;
        say(format!(
            "{} distinct pooled rows, {:.0} Arrow bytes per row",
            pool.len(),
            bpr
        ));
        let copies = 4;
        let (convert, encode) =
            single_core_limits(&pool, &args.dir.join("raw"), copies, args.reps)?;
        settle(&args.dir.join("raw"));
        rep.limits = Some((convert, encode));
        say(format!(
            "one core, {} rows (about one flush): SaleRecord -> Arrow {} rows/s, raw ArrowWriter + fsync {} rows/s, both in turn {} rows/s",
            fmt_n((pool.len() * copies) as f64),
            fmt_n(convert),
            fmt_n(encode),
            fmt_n(serial(convert, encode))
        ));
        // The appender's defaults, unless --max-rows / --max-mib say otherwise.
        let max_bytes = args.max_bytes.unwrap_or(64 << 20);
        let fast = Settings {
            max_rows: args.max_rows.unwrap_or(100_000),
            max_bytes,
            max_buffered_bytes: (256 << 20).max(2 * max_bytes),
            max_age: args.max_age,
        };
        say(format!(
            "\n== as fast as possible: {} pushes, max_rows {}, max_bytes {} MiB, max_buffered_bytes {} MiB, max_age {} ==",
            fmt_n(args.rows as f64),
            fmt_n(fast.max_rows as f64),
            fast.max_bytes >> 20,
            fast.max_buffered_bytes >> 20,
            fmt_s(fast.max_age.as_secs_f64())
        ));
        for r in 0..args.reps {
            // Interleaved: the sync write before the stream on even reps, after on odd ones.
            let sync_dir = args.dir.join("sync");
            if r % 2 == 0 {
                settle(&sync_dir);
                rep.sync_mb_s.push(sync_write(&sync_dir, args.sync_mib)?);
            }
            let dir = args.dir.join(format!("fast-{r}"));
            settle(&dir);
            let res = stream_run(
                &format!("rep {}", r + 1),
                &dir,
                &pool,
                bpr,
                args.rows,
                None,
                fast,
            )
            .await?;
            settle(&dir);
            if !args.json {
                print_stream(&res);
            }
            rep.fast.push(res);
            if r % 2 == 1 {
                settle(&sync_dir);
                rep.sync_mb_s.push(sync_write(&sync_dir, args.sync_mib)?);
            }
            say(format!(
                "  sync write of {} MiB + fdatasync: {:.0} MB/s",
                args.sync_mib,
                rep.sync_mb_s.last().copied().unwrap_or(f64::NAN)
            ));
        }

        // Paced, age flushes only: size limits well above what max_age collects.
        let per_age = args.rate as f64 * args.max_age.as_secs_f64();
        let bytes_per_age = (per_age * (DIMENSION * 8 + 512) as f64) as usize;
        let max_bytes = (2 * bytes_per_age).max(64 << 20);
        let paced = Settings {
            max_rows: (4.0 * per_age).ceil().max(1.0) as usize,
            max_bytes,
            max_buffered_bytes: 2 * max_bytes,
            max_age: args.max_age,
        };
        say(format!(
            "\n== paced at {}/s: {} pushes, flush on age only (max_age {}, max_rows {}, max_bytes {} MiB, max_buffered_bytes {} MiB) ==",
            fmt_n(args.rate as f64),
            fmt_n(args.rate_rows as f64),
            fmt_s(args.max_age.as_secs_f64()),
            fmt_n(paced.max_rows as f64),
            paced.max_bytes >> 20,
            paced.max_buffered_bytes >> 20
        ));
        let dir = args.dir.join("paced");
        settle(&dir);
        let res = stream_run(
            "paced",
            &dir,
            &pool,
            bpr,
            args.rate_rows,
            Some(args.rate),
            paced,
        )
        .await?;
        settle(&dir);
        if !args.json {
            print_stream(&res);
        }
        rep.paced = Some(res);

        say(format!(
            "\n== one append per event: {} events ==",
            fmt_n(args.baseline_events as f64)
        ));
        let dir = args.dir.join("baseline");
        settle(&dir);
        let b = baseline(&dir, &pool, args.baseline_events).await?;
        settle(&dir);
        say(format!(
            "  {} events in {:.2} s: {} events/s; snapshots {}, data files {}, metadata files {} (metadata.json {:.1} KB), table rows {} (fresh count() {}); append p50 {} p99 {}, median of first 10 {}, of last 10 {}",
            fmt_n(b.events as f64),
            b.elapsed_s,
            fmt_n(b.events_per_s),
            b.snapshots,
            b.data_files,
            b.metadata_files,
            b.metadata_json_bytes as f64 / 1e3,
            b.table_rows,
            fmt_s(b.count_s),
            fmt_s(b.latency.p50),
            fmt_s(b.latency.p99),
            fmt_s(b.first10),
            fmt_s(b.last10)
        ));
        rep.baseline = Some(b);
    }

    if args.contention {
        let mut targets: Vec<(Target, PathBuf)> = Vec::new();
        for &n in &args.writers {
            let dir = args.dir.join(format!("contention-sqlite-{n}"));
            settle(&dir);
            std::fs::create_dir_all(&dir)?;
            targets.push((local_target(&dir.canonicalize()?), dir));
        }
        if let Some(endpoint) = &args.glue_endpoint {
            for &n in &args.writers {
                let pid = std::process::id();
                let bucket = format!("bench-stream-{pid}-w{n}");
                let stage = format!("bench_{pid}_w{n}");
                targets.push((glue_target(endpoint, &bucket, stage)?, PathBuf::new()));
            }
        }
        let per_kind = args.writers.len();
        for (i, (target, dir)) in targets.iter().enumerate() {
            let n = args.writers[i % per_kind];
            say(format!(
                "\n== contention: {} writer process(es), {} ==",
                n, target.kind
            ));
            let c = contention_round(&args, target, n).await?;
            say(format!(
                "  {} commits in {:.2} s: {:.1} commits/s, {} rows/s; conflicts retried {}, throttled {}; commit (flush call) p50 {} p99 {} max {}, of which write + catalog p50 {} p99 {}; rows {} in the table, {} snapshots ({})",
                c.commits,
                c.wall_s,
                c.commits_per_s,
                fmt_n(c.rows_per_s),
                c.conflicts,
                c.throttled,
                fmt_s(c.commit.p50),
                fmt_s(c.commit.p99),
                fmt_s(c.commit.max),
                fmt_s(c.write_commit.p50),
                fmt_s(c.write_commit.p99),
                fmt_n(c.table_rows as f64),
                c.snapshots,
                if c.exact() { "exact" } else { "NOT EXACT" }
            ));
            if !dir.as_os_str().is_empty() {
                settle(dir);
            }
            rep.contention.push(c);
        }
    }

    if !args.keep {
        settle(&args.dir);
    }
    if args.json {
        let out = json!({
            "cores": cores, "load_average_start": load_start, "load_average_end": load_average(),
            "dir": args.dir, "fs": rep.fs, "months": args.months,
            "sync_write_mb_per_s": rep.sync_mb_s,
            "one_core_rows_per_s": rep.limits.map(|(c, e)| json!({
                "convert": c, "raw_encode_fsync": e, "serial": serial(c, e)})), "sync_write_mb_per_s_median": median(&rep.sync_mb_s),
            "fast": rep.fast.iter().map(StreamResult::to_json).collect::<Vec<_>>(),
            "fast_median": if rep.fast.is_empty() { Value::Null } else { json!({
                "events_per_s": med_of(&rep.fast, |x| x.events_per_s),
                "written_mb_per_s": med_of(&rep.fast, |x| x.written_mb_per_s),
                "in_mb_per_s": med_of(&rep.fast, |x| x.in_mb_per_s),
                "push_p50_s": med_of(&rep.fast, |x| x.push.p50),
                "push_p99_s": med_of(&rep.fast, |x| x.push.p99),
                "visible_p99_s": med_of(&rep.fast, |x| x.visible.p99),
            })},
            "paced": rep.paced.as_ref().map(StreamResult::to_json),
            "baseline": rep.baseline.as_ref().map(Baseline::to_json),
            "contention": rep.contention.iter().map(Contention::to_json).collect::<Vec<_>>(),
            "contention_settings": json!({"writer_rows": args.writer_rows, "flush_rows": args.writer_flush_rows, "refresh_before_flush": args.writer_refresh}),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_summary(&args, &rep);
        println!(
            "\nload average (1 min): {load_start:.2} at the start, {:.2} at the end ({cores} cores)",
            load_average()
        );
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let args = Args::from(&cli);
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let fmt = cli
            .trace
            .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(flush_log::Capture)
            .with(fmt)
            .init();
    }
    report::exit_on_error(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|runtime| {
                runtime.block_on(async {
                    if cli.writer {
                        writer_main(&cli, &args).await
                    } else {
                        run(args).await
                    }
                })
            }),
    );
}

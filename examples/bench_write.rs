//! Write-throughput harness: our append against the Parquet encoder, pyarrow and pyiceberg.
//!
//! ```text
//! cargo run --release --example bench_write -- [--quick] [--json] [--sizes 1000,10000,...]
//!     [--reps N] [--embeddings both|yes|no] [--parallelism N] [--commits N] [--rss-rows N]
//!     [--no-python] [--python PATH] [--dir DIR]
//! ```
//!
//! For every size and with/without 1024-dim embeddings it times, interleaved (the order rotates
//! every repetition) and on the same deterministic batch:
//! (a) parquet's `ArrowWriter` + Snappy writing the batch to one local file (the encoder limit;
//! the table's writer settings, fed as 1024-row slices), (b) the same split into one file per
//! month, single-threaded, (c) our `append_batches` end to end on a fresh local catalog, commit
//! included (validation included), (d1) `SaleRecord` → Arrow conversion alone, (d2) validation
//! alone (an append whose very last value is invalid: every check runs, nothing is written),
//! and, through `python/bench_write_baseline.py` in the same run, pyarrow's `write_table` to one
//! Snappy file and pyiceberg's `append` into a fresh `SqlCatalog` table. It then measures the
//! latency of the 1st vs the Nth small append on one table, and the peak RSS of a
//! `--rss-rows`-row append in a child process (`--rss-only N`), so that the data generation of
//! this process does not pollute it. Files are deleted and `sync` runs between timed runs.

#[path = "common/figures.rs"]
mod figures;
#[path = "common/host.rs"]
mod host;
#[path = "common/number.rs"]
mod number;
#[path = "common/python.rs"]
mod python;
#[path = "common/raw_parquet.rs"]
mod raw_parquet;
#[path = "common/report.rs"]
mod report;
#[path = "common/stats.rs"]
mod stats;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{RecordBatch, UInt32Array};
use chrono::{DateTime, Datelike};
use clap::{Parser, ValueEnum};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{
    AppendOutcome, CatalogConfig, Column, EmbeddingEncoding, Error, SaleRecord, SalesHistory,
    TableOptions,
};
use serde_json::{Value, json};

use figures::verdict;
use host::settle;
use raw_parquet::arrow_bytes;
use stats::{median, min_max};

type Res<T> = anyhow::Result<T>;

const DIMENSION: usize = 1024;

/// `--embedding-encoding`, set once at start.
static ENCODING: std::sync::OnceLock<EmbeddingEncoding> = std::sync::OnceLock::new();

fn encoding() -> EmbeddingEncoding {
    ENCODING.get().copied().unwrap_or_default()
}

/// Write throughput of our append beside the Parquet encoder alone, pyarrow and pyiceberg, on
/// the same deterministic batches (with and without 1024-dim embeddings, interleaved
/// repetitions, medians), then the latency of the 1st vs the Nth small append on one table
/// and the peak RSS of a large append in a child process. Scratch files go to --dir and are
/// deleted as it goes.
#[derive(Debug, Parser)]
#[command(name = "bench_write", verbatim_doc_comment)]
struct Cli {
    /// A short run: sizes 1000,5000, 2 reps, 20 commits, 5000 RSS rows (explicit flags win).
    #[arg(long)]
    quick: bool,

    /// Print the results as one JSON document.
    #[arg(long)]
    json: bool,

    /// Rows per case, comma-separated; `_` allowed as a digit separator [default:
    /// 1000,10000,50000,100000].
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', value_parser = number::parse::<NonZeroUsize>)]
    sizes: Vec<NonZeroUsize>,

    /// Timed repetitions per case and variant [default: 5].
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    reps: Option<NonZeroUsize>,

    /// Which cases to run: with 1024-dim embeddings, without, or both.
    #[arg(long, value_enum, default_value_t = Embeddings::Both)]
    embeddings: Embeddings,

    /// Parallelism of our append (default: the crate's).
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    parallelism: Option<NonZeroUsize>,

    /// Small appends timed for the commit latency [default: 200].
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    commits: Option<NonZeroUsize>,

    /// Rows of the append whose peak RSS is measured [default: 100000].
    #[arg(long, value_name = "N", value_parser = number::parse::<usize>)]
    rss_rows: Option<usize>,

    /// Skip the pyarrow and pyiceberg baselines.
    #[arg(long)]
    no_python: bool,

    /// Python with pyarrow and pyiceberg (default: $SALES_HISTORY_PYTHON, else what
    /// scripts/venv.sh prints).
    #[arg(long, value_name = "PATH")]
    python: Option<String>,

    /// Scratch directory [default: $TMPDIR/bench-write-PID].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Child mode: one append of N rows, print its peak RSS as JSON.
    #[arg(long, value_name = "N", hide = true, value_parser = number::parse::<usize>)]
    rss_only: Option<usize>,

    /// Encoding of the embedding elements, in our tables and in the raw writer's settings.
    #[arg(long, value_name = "ENC", default_value = "byte-stream-split")]
    embedding_encoding: EmbeddingEncoding,

    /// Child mode: rows without embeddings.
    #[arg(long, hide = true)]
    no_embeddings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Embeddings {
    Both,
    Yes,
    No,
}

/// The options with every default resolved.
#[derive(Debug, Clone)]
struct Args {
    sizes: Vec<usize>,
    reps: usize,
    embeddings: Vec<bool>,
    parallelism: Option<usize>,
    commits: usize,
    rss_rows: usize,
    python: Option<String>,
    no_python: bool,
    json: bool,
    dir: PathBuf,
    rss_only: Option<usize>,
    no_embeddings: bool,
}

impl From<Cli> for Args {
    fn from(c: Cli) -> Args {
        let _ = ENCODING.set(c.embedding_encoding);
        let quick = c.quick;
        Args {
            sizes: match (c.sizes.is_empty(), quick) {
                (false, _) => c.sizes.into_iter().map(NonZeroUsize::get).collect(),
                (true, true) => vec![1_000, 5_000],
                (true, false) => vec![1_000, 10_000, 50_000, 100_000],
            },
            reps: c.reps.map_or(if quick { 2 } else { 5 }, NonZeroUsize::get),
            embeddings: match c.embeddings {
                Embeddings::Both => vec![true, false],
                Embeddings::Yes => vec![true],
                Embeddings::No => vec![false],
            },
            parallelism: c.parallelism.map(NonZeroUsize::get),
            commits: c
                .commits
                .map_or(if quick { 20 } else { 200 }, NonZeroUsize::get),
            rss_rows: c.rss_rows.unwrap_or(if quick { 5_000 } else { 100_000 }),
            python: c
                .python
                .or_else(|| std::env::var("SALES_HISTORY_PYTHON").ok()),
            no_python: c.no_python,
            json: c.json,
            dir: c.dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("bench-write-{}", std::process::id()))
            }),
            rss_only: c.rss_only,
            no_embeddings: c.no_embeddings,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Data

fn sample(dimension: usize) -> SampleGenerator {
    SampleGenerator::new(SampleConfig::default().embedding_dimension(dimension))
}

/// The batch as 1000-row chunks (so that no row copy of the whole input is ever held).
fn chunked_batches(rows: usize, embeddings: bool) -> Res<Vec<RecordBatch>> {
    let mut generator = sample(if embeddings { DIMENSION } else { 0 });
    let mut out = Vec::new();
    let mut left = rows;
    while left > 0 {
        let n = left.min(1000);
        out.push(SaleRecord::to_record_batch(&generator.take_records(n))?);
        left -= n;
    }
    Ok(out)
}

fn month_of(micros: i64) -> i32 {
    DateTime::from_timestamp_micros(micros)
        .map_or(0, |d| (d.year() - 1970) * 12 + d.month0() as i32)
}

/// The table's writer settings for a table with defaults and `--embedding-encoding`.
fn raw_props() -> WriterProperties {
    raw_parquet::table_props(encoding()).build()
}

// ---------------------------------------------------------------------------------------------
// Timed variants

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Variant {
    RawOne,
    RawMonthly,
    Append,
    Convert,
    Validate,
    PyArrow,
    PyIceberg,
    PyIcebergSynced,
    DiskLimit,
}

impl Variant {
    const ALL: [Variant; 9] = [
        Variant::RawOne,
        Variant::RawMonthly,
        Variant::Append,
        Variant::Convert,
        Variant::Validate,
        Variant::PyArrow,
        Variant::PyIceberg,
        Variant::PyIcebergSynced,
        Variant::DiskLimit,
    ];
    fn label(self) -> &'static str {
        match self {
            Variant::RawOne => "(a) ArrowWriter, one file",
            Variant::RawMonthly => "(b) ArrowWriter, monthly files",
            Variant::Append => "(c) append (ours), commit incl.",
            Variant::Convert => "(d1) SaleRecord -> Arrow",
            Variant::Validate => "(d2) validation alone",
            Variant::PyArrow => "pyarrow write_table, one file",
            Variant::PyIceberg => "pyiceberg append",
            Variant::PyIcebergSynced => "pyiceberg append + fsync",
            Variant::DiskLimit => "(e) disk: write + fdatasync",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Variant::RawOne => "raw_one_file",
            Variant::RawMonthly => "raw_monthly",
            Variant::Append => "append",
            Variant::Convert => "convert",
            Variant::Validate => "validate",
            Variant::PyArrow => "pyarrow",
            Variant::PyIceberg => "pyiceberg",
            Variant::PyIcebergSynced => "pyiceberg_synced",
            Variant::DiskLimit => "disk_limit",
        }
    }
    fn is_python(self) -> bool {
        matches!(
            self,
            Variant::PyArrow | Variant::PyIceberg | Variant::PyIcebergSynced
        )
    }
}

/// The disk's limit for this write: `bytes` written to one new file, then `fdatasync` (what a
/// durable append must at least do).
fn disk_limit(bytes: u64, dir: &Path) -> Res<f64> {
    host::sync_write(dir, bytes)
}

fn raw_one_file(batch: &RecordBatch, dir: &Path) -> Res<f64> {
    std::fs::create_dir_all(dir)?;
    let start = Instant::now();
    let file = std::fs::File::create(dir.join("one.parquet"))?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(raw_props()))?;
    raw_parquet::write_sliced(&mut w, batch)?;
    w.close()?;
    Ok(start.elapsed().as_secs_f64())
}

fn raw_monthly(batch: &RecordBatch, dir: &Path) -> Res<f64> {
    std::fs::create_dir_all(dir)?;
    let start = Instant::now();
    let dates = batch
        .column(Column::SoldDate.index())
        .as_primitive::<TimestampMicrosecondType>();
    let mut months: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
    for (i, v) in dates.values().iter().enumerate() {
        months.entry(month_of(*v)).or_default().push(i as u32);
    }
    for (month, rows) in months {
        let file = std::fs::File::create(dir.join(format!("month-{month}.parquet")))?;
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(raw_props()))?;
        for chunk in rows.chunks(raw_parquet::SLICE_ROWS) {
            let idx = UInt32Array::from(chunk.to_vec());
            w.write(&arrow_select::take::take_record_batch(batch, &idx)?)?;
        }
        w.close()?;
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn fresh_table(dir: &Path) -> Res<SalesHistory> {
    let config = CatalogConfig::local(dir);
    let options = TableOptions::default().embedding_encoding(encoding());
    Ok(SalesHistory::ensure_with(&config, "bench", options).await?)
}

async fn append(batch: &RecordBatch, dir: &Path, parallelism: Option<usize>) -> Res<f64> {
    let table = fresh_table(dir).await?;
    let mut op = table.append_batches(vec![batch.clone()]);
    if let Some(p) = parallelism {
        op = op.parallelism(p);
    }
    let start = Instant::now();
    let outcome = op.await?;
    let secs = start.elapsed().as_secs_f64();
    match outcome {
        AppendOutcome::Committed(s) if s.rows == batch.num_rows() as u64 => Ok(secs),
        other => bail!("unexpected append outcome {other:?}"),
    }
}

/// Times validation alone: the last row's embedding holds a NaN, so every check runs and the
/// append fails before writing anything.
async fn validate(batch: &RecordBatch, bad_row: &RecordBatch, dir: &Path) -> Res<f64> {
    let table = fresh_table(dir).await?;
    let n = batch.num_rows();
    let input = vec![batch.slice(0, n - 1), bad_row.clone()];
    let start = Instant::now();
    let result = table.append_batches(input).await;
    let secs = start.elapsed().as_secs_f64();
    match result {
        Err(Error::InvalidValue { row: Some(r), .. }) if r == n - 1 => Ok(secs),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "validation run: expected a failure at row {}",
            n - 1
        ))),
        Ok(outcome) => bail!(
            "validation run: expected a failure at row {}, the append succeeded: {outcome:?}",
            n - 1
        ),
    }
}

fn bad_last_row(embeddings: bool, rows: usize) -> Res<RecordBatch> {
    let mut generator = sample(if embeddings { DIMENSION } else { 0 });
    let mut last = generator
        .take_records(rows)
        .pop()
        .context("the generator returned no rows")?;
    let mut emb = vec![0.0; DIMENSION];
    emb[DIMENSION - 1] = f64::NAN;
    last.embedding = Some(emb);
    Ok(SaleRecord::to_record_batch(&[last])?)
}

/// The Python baselines, served by one long-lived interpreter.
struct Python {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Python {
    fn start(python: &Path) -> Res<Python> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/bench_write_baseline.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", python.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        Ok(Python {
            child,
            stdin,
            stdout,
        })
    }

    fn time(&mut self, which: &str, input: &Path, work: &Path) -> Res<f64> {
        let req = json!({"which": which, "input": input, "work": work});
        writeln!(self.stdin, "{req}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let answer: Value =
            serde_json::from_str(&line).with_context(|| format!("python answered {line:?}"))?;
        answer["seconds"]
            .as_f64()
            .ok_or_else(|| anyhow!("python {which}: {}", answer["error"]))
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--python`, else `$SALES_HISTORY_PYTHON`, else the test venv's.
fn find_python(args: &Args) -> Res<PathBuf> {
    match &args.python {
        Some(p) => Ok(PathBuf::from(p)),
        None => python::venv_python()
            .context("no Python for the baselines (use --no-python to skip them)"),
    }
}

// ---------------------------------------------------------------------------------------------
// Results and output

struct Case {
    rows: usize,
    embeddings: bool,
    arrow_bytes: usize,
    /// Bytes our append writes (files of a fresh table after one append).
    out_bytes: u64,
    times: BTreeMap<Variant, Vec<f64>>,
}

impl Case {
    fn median(&self, v: Variant) -> Option<f64> {
        self.times
            .get(&v)
            .filter(|t| !t.is_empty())
            .map(|t| median(t))
    }

    /// Our append's bytes/s as a share of the disk's write + fdatasync bytes/s (same bytes).
    fn disk_share(&self) -> Option<f64> {
        Some(self.median(Variant::DiskLimit)? / self.median(Variant::Append)?)
    }

    /// How many times faster our append is than `v` (medians).
    fn append_speedup(&self, v: Variant) -> Option<f64> {
        Some(self.median(v)? / self.median(Variant::Append)?)
    }

    fn to_json(&self) -> Value {
        let variants: serde_json::Map<String, Value> = self
            .times
            .iter()
            .map(|(v, t)| {
                let m = median(t);
                let (lo, hi) = min_max(t);
                (
                    v.key().to_string(),
                    json!({
                        "seconds": t, "median_s": m, "min_s": lo, "max_s": hi,
                        "rows_per_s": self.rows as f64 / m,
                        "mb_per_s": self.arrow_bytes as f64 / 1e6 / m,
                        "append_speedup": self.append_speedup(*v),
                    }),
                )
            })
            .collect();
        json!({"rows": self.rows, "embeddings": self.embeddings,
               "arrow_bytes": self.arrow_bytes, "out_bytes": self.out_bytes,
               "append_share_of_disk_limit": self.disk_share(), "variants": variants})
    }

    fn print(&self, reps: usize) {
        println!(
            "\n== {} rows, {} ({:.1} MB of Arrow), {reps} reps, interleaved ==",
            self.rows,
            if self.embeddings {
                "1024-dim embeddings"
            } else {
                "no embeddings"
            },
            self.arrow_bytes as f64 / 1e6
        );
        println!(
            "{:<33} {:>10} {:>19} {:>11} {:>9} {:>11}",
            "variant", "median ms", "min-max ms", "rows/s", "MB/s", "append is"
        );
        for (v, t) in &self.times {
            let m = median(t);
            let (lo, hi) = min_max(t);
            let ratio = match (v, self.append_speedup(*v)) {
                (Variant::Append, _) => "-".to_string(),
                (_, Some(r)) => format!("{r:.2}x"),
                _ => "?".to_string(),
            };
            println!(
                "{:<33} {:>10.1} {:>19} {:>11.0} {:>9.1} {:>11}",
                v.label(),
                m * 1e3,
                format!("{:.1}-{:.1}", lo * 1e3, hi * 1e3),
                self.rows as f64 / m,
                self.arrow_bytes as f64 / 1e6 / m,
                ratio
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commit latency and peak RSS

async fn commit_latency(args: &Args) -> Res<Value> {
    let dir = args.dir.join("commits");
    let table = fresh_table(&dir).await?;
    let mut generator = sample(DIMENSION);
    let mut times = Vec::with_capacity(args.commits);
    for _ in 0..args.commits {
        let records = generator.take_records(10);
        let start = Instant::now();
        table.append(records).await?;
        times.push(start.elapsed().as_secs_f64());
    }
    settle(&dir);
    let k = 10.min(times.len());
    let first = median(&times[..k]);
    let last = median(&times[times.len() - k..]);
    Ok(json!({
        "appends": times.len(), "rows_per_append": 10,
        "first_s": times[0], "last_s": times[times.len() - 1],
        "median_first10_s": first, "median_last10_s": last, "growth": last / first,
        "seconds": times,
    }))
}

/// Child mode: build the input, reset the peak-RSS counter, append, report.
async fn rss_only(args: &Args, rows: usize) -> Res<()> {
    let batches = chunked_batches(rows, !args.no_embeddings)?;
    let bytes = arrow_bytes(&batches);
    let table = fresh_table(&args.dir.join("rss")).await?;
    let before_kb = host::proc_status_kb("VmRSS:").unwrap_or(0);
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let mut op = table.append_batches(batches);
    if let Some(p) = args.parallelism {
        op = op.parallelism(p);
    }
    let start = Instant::now();
    op.await?;
    let secs = start.elapsed().as_secs_f64();
    let peak_kb = host::proc_status_kb("VmHWM:").unwrap_or(0);
    settle(&args.dir.join("rss"));
    let out = json!({
        "rows": rows, "embeddings": !args.no_embeddings, "arrow_bytes": bytes,
        "rss_before_append": before_kb * 1024, "peak_rss": peak_kb * 1024,
        "peak_reset_before_append": reset, "peak_over_arrow": (peak_kb * 1024) as f64 / bytes as f64,
        "append_s": secs,
    });
    println!("{out}");
    Ok(())
}

fn measure_rss(args: &Args, embeddings: bool) -> Res<Value> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--rss-only", &args.rss_rows.to_string(), "--dir"])
        .arg(args.dir.join(if embeddings { "rss-e" } else { "rss-n" }));
    if !embeddings {
        cmd.arg("--no-embeddings");
    }
    if let Some(p) = args.parallelism {
        cmd.args(["--parallelism", &p.to_string()]);
    }
    cmd.args(["--embedding-encoding", encoding().as_property()]);
    let out = cmd.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("the --rss-only child failed ({})", out.status);
    }
    let text = String::from_utf8(out.stdout)?;
    Ok(serde_json::from_str(text.lines().last().unwrap_or("null"))?)
}

// ---------------------------------------------------------------------------------------------

async fn run_case(
    args: &Args,
    python: &mut Option<Python>,
    rows: usize,
    embeddings: bool,
) -> Res<Case> {
    let records = sample(if embeddings { DIMENSION } else { 0 }).take_records(rows);
    let batch = SaleRecord::to_record_batch(&records)?;
    let bad_row = bad_last_row(embeddings, rows)?;
    let case_dir = args
        .dir
        .join(format!("{rows}-{}", if embeddings { "e" } else { "n" }));
    std::fs::create_dir_all(&case_dir)?;
    let input = case_dir.join("input.parquet");
    if python.is_some() {
        let mut w = ArrowWriter::try_new(std::fs::File::create(&input)?, batch.schema(), None)?;
        w.write(&batch)?;
        w.close()?;
    }
    // The bytes our append writes (data + metadata files), for the disk-limit variant.
    let probe = case_dir.join("probe");
    append(&batch, &probe, args.parallelism).await?;
    let out_bytes = host::tree_stats(&probe).bytes();
    settle(&probe);
    let mut case = Case {
        rows,
        embeddings,
        arrow_bytes: arrow_bytes(std::slice::from_ref(&batch)),
        out_bytes,
        times: BTreeMap::new(),
    };
    let variants: Vec<Variant> = Variant::ALL
        .into_iter()
        .filter(|v| python.is_some() || !v.is_python())
        .collect();
    for rep in 0..args.reps {
        for i in 0..variants.len() {
            let v = variants[(i + rep) % variants.len()];
            let work = case_dir.join(format!("{}-{rep}", v.key()));
            let secs = match v {
                Variant::RawOne => raw_one_file(&batch, &work)?,
                Variant::RawMonthly => raw_monthly(&batch, &work)?,
                Variant::Append => append(&batch, &work, args.parallelism).await?,
                Variant::Validate => validate(&batch, &bad_row, &work).await?,
                Variant::Convert => {
                    let start = Instant::now();
                    let b = SaleRecord::to_record_batch(&records)?;
                    let secs = start.elapsed().as_secs_f64();
                    drop(b);
                    secs
                }
                Variant::DiskLimit => disk_limit(out_bytes, &work)?,
                Variant::PyArrow | Variant::PyIceberg | Variant::PyIcebergSynced => {
                    let py = python.as_mut().context("no python")?;
                    py.time(v.key(), &input, &work)?
                }
            };
            settle(&work);
            case.times.entry(v).or_default().push(secs);
        }
    }
    settle(&case_dir);
    Ok(case)
}

fn print_targets(cases: &[Case], commits: &Value, rss: &[Value]) {
    println!("\n== targets ==");
    if let Some(c) = cases.iter().find(|c| c.rows == 50_000 && c.embeddings) {
        match c.disk_share() {
            Some(r) => println!(
                "50k rows with embeddings: append bytes/s = {:.0}% of the disk's write+fdatasync ({} MB written; target >= 85% on ext4) {}",
                r * 100.0,
                c.out_bytes / 1_000_000,
                verdict(r >= 0.85)
            ),
            None => println!("50k rows with embeddings: disk limit not measured"),
        }
        for (v, want) in [
            (Variant::PyIcebergSynced, 1.5),
            (Variant::PyIceberg, 2.0),
            (Variant::PyArrow, 1.0),
        ] {
            match c.append_speedup(v) {
                Some(r) => println!(
                    "50k rows with embeddings: append vs {:<10} {r:.2}x (target >= {want:.1}x) {}",
                    v.key(),
                    verdict(r >= want)
                ),
                None => println!("50k rows with embeddings vs {}: not measured", v.key()),
            }
        }
    } else {
        println!("50k rows with embeddings: not in this run");
    }
    let g = commits["growth"].as_f64().unwrap_or(f64::NAN);
    println!(
        "commit latency: 1st {:.1} ms, {}th {:.1} ms; median of first 10 {:.1} ms, of last 10 {:.1} ms: {:.2}x (target <= 1.20x) {}",
        commits["first_s"].as_f64().unwrap_or(0.0) * 1e3,
        commits["appends"],
        commits["last_s"].as_f64().unwrap_or(0.0) * 1e3,
        commits["median_first10_s"].as_f64().unwrap_or(0.0) * 1e3,
        commits["median_last10_s"].as_f64().unwrap_or(0.0) * 1e3,
        g,
        verdict(g <= 1.2)
    );
    for r in rss {
        let ratio = r["peak_over_arrow"].as_f64().unwrap_or(f64::NAN);
        println!(
            "peak RSS, {}-row append {}: {:.0} MB (input {:.0} MB of Arrow, RSS before append {:.0} MB): {ratio:.2}x (target <= 1.50x) {}",
            r["rows"],
            if r["embeddings"] == true {
                "with embeddings"
            } else {
                "without embeddings"
            },
            r["peak_rss"].as_f64().unwrap_or(0.0) / 1e6,
            r["arrow_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            r["rss_before_append"].as_f64().unwrap_or(0.0) / 1e6,
            verdict(ratio <= 1.5)
        );
    }
}

async fn run(args: Args) -> Res<()> {
    if let Some(rows) = args.rss_only {
        return rss_only(&args, rows).await;
    }
    std::fs::create_dir_all(&args.dir)?;
    let mut python = if args.no_python {
        None
    } else {
        Some(Python::start(&find_python(&args)?)?)
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !args.json {
        println!(
            "bench_write: {cores} cores, parallelism {}, scratch {}",
            args.parallelism
                .map_or("default".to_string(), |p| p.to_string()),
            args.dir.display()
        );
    }
    let mut cases = Vec::new();
    for &embeddings in &args.embeddings {
        for &rows in &args.sizes {
            let case = run_case(&args, &mut python, rows, embeddings).await?;
            if !args.json {
                case.print(args.reps);
            }
            cases.push(case);
        }
    }
    drop(python);
    let commits = commit_latency(&args).await?;
    let rss: Vec<Value> = args
        .embeddings
        .iter()
        .map(|e| measure_rss(&args, *e))
        .collect::<Res<_>>()?;
    settle(&args.dir);
    if args.json {
        let out = json!({
            "cores": cores, "parallelism": args.parallelism, "reps": args.reps,
            "embedding_encoding": encoding().as_property(),
            "cases": cases.iter().map(Case::to_json).collect::<Vec<_>>(),
            "commit_latency": commits, "peak_rss": rss,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("embedding elements: {}", encoding());
        print_targets(&cases, &commits, &rss);
    }
    Ok(())
}

fn main() {
    let args = Args::from(Cli::parse());
    report::exit_on_error(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|runtime| runtime.block_on(run(args))),
    );
}

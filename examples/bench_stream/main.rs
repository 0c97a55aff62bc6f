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

#[path = "../common/duration.rs"]
mod duration;
#[path = "../common/figures.rs"]
mod figures;
#[path = "../common/host.rs"]
mod host;
#[path = "../common/number.rs"]
mod number;
#[path = "../common/raw_parquet.rs"]
mod raw_parquet;
#[path = "../common/report.rs"]
mod report;
#[path = "../common/stats.rs"]
mod stats;

mod contention;
mod data;
mod flush_log;
mod stream_run;
mod summary;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde_json::{Value, json};

use contention::{Contention, Target, contention_round, glue_target, local_target, writer_main};
use data::{arrow_bytes_per_row, pool, single_core_limits};
use figures::{fmt_n, fmt_s};
use host::{fs_type, load_average, settle, sync_write};
use stats::median;
use stream_run::{Baseline, Settings, StreamResult, baseline, stream_run};
use summary::{Report, med_of, print_stream, print_summary, serial};

type Res<T> = anyhow::Result<T>;

const DIMENSION: usize = 1024;
const STAGE: &str = "bench";
/// Distinct pre-generated rows the producers clone from.
const POOL: usize = 4096;

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

/// Sync-write bandwidth of the disk under `dir`: `mib` MiB written, then fdatasync; MB/s.
fn sync_mb_s(dir: &std::path::Path, mib: usize) -> Res<f64> {
    let bytes = (mib as u64) << 20;
    Ok(bytes as f64 / 1e6 / sync_write(dir, bytes)?)
}

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
                rep.sync_mb_s.push(sync_mb_s(&sync_dir, args.sync_mib)?);
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
                rep.sync_mb_s.push(sync_mb_s(&sync_dir, args.sync_mib)?);
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

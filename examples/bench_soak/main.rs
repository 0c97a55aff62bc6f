//! Soak benchmark: a table that stays fast for months under a streaming writer.
//!
//! ```text
//! cargo run --release --all-features --example bench_soak -- [--quick] [--json]
//!     [--commits 20000] [--every 1000] [--rows 20] [--dim 1024] [--tenants 50]
//!     [--variants task,merge,nomerge,py-fast,py-merge] [--py-commits 1000] [--appender]
//!     [--min-count-to-merge N] [--maintain-every 5s] [--maintain-after-commits 100]
//!     [--min-small-files 8] [--orphans-older-than 60s] [--orphans-every 1h] [--max-snapshot-age 5d]
//!     [--max-snapshots 150] [--min-snapshots-to-keep 1] [--stop-after VARIANT=N,...]
//!     [--beside-writer] [--reps 3] [--dir DIR] [--keep]
//! ```
//!
//! Each variant gets its own table (local catalog, its own warehouse under `--dir`), created
//! by `SalesHistory::ensure_with` with our table properties, then:
//!
//! - `task`: ours, merging on, with the maintenance task (`Maintainer`) running beside the
//!   writer (compaction by size tier, snapshot expiry by `history.expire.max-snapshot-age-ms` /
//!   `history.expire.min-snapshots-to-keep`, set on the table, and beyond `--max-snapshots`,
//!   and orphan removal). Its reads are timed right after a maintenance run the checkpoint
//!   starts (the maintainer then idle for `--maintain-every`), as a service reading between
//!   runs sees the table: packed into minutes, the runs would otherwise share the two cores
//!   with every read;
//! - `merge`: ours, manifest merging only (the table's defaults), no task;
//! - `nomerge`: ours with `commit.manifest-merge.enabled=false`, no task;
//! - `py-fast` / `py-merge`: pyiceberg's `Table.append` (`python/bench_soak_pyiceberg.py`) on
//!   the same kind of table, with merging off (a fast append) / on (a merge append).
//!
//! Every commit appends `--rows` sample rows (1024-dim embeddings, ONE month, 50 tenants, the
//! same rows in every variant) with `table.append(rows)` or, with `--appender`, pushes them
//! into an `Appender` and flushes it. Our variants take turns commit by commit, so load on the
//! machine and the task's work fall on all of them alike; the pyiceberg variants run after
//! them (and after `--beside-writer`), in one Python process, also taking turns. Every `--every` commits (and after the last), per
//! variant: commit p50/p99 over that window, a tenant-month `plan()` and `count()` (fresh
//! reads: the catalog is read first; upper median of `--reps`) and the same plan by a fresh
//! handle (`plan_first_ms`: every manifest from storage), the current metadata.json's
//! bytes, the metadata directory's files and bytes, live data files (a full scan's plan),
//! manifests in the current snapshot (its manifest list read) and snapshots in the metadata.
//! The process's peak RSS is taken per quarter of the run (VmHWM, reset at each quarter
//! through /proc/self/clear_refs).
//!
//! `--beside-writer`: a compaction of a month's small files (a table with ≥ 50) while a second
//! handle appends every 100 ms: its elapsed time and commit attempts.
//!
//! Text output: one markdown table per checkpoint (variants as rows), then the targets with
//! HOLDS / MISSED. `--json`: one JSON document. Progress goes to stderr.

#[path = "../common/duration.rs"]
mod duration;
#[path = "../common/figures.rs"]
mod figures;
#[path = "../common/host.rs"]
mod host;
#[path = "../common/number.rs"]
mod number;
#[path = "../common/python.rs"]
mod python;
#[path = "../common/report.rs"]
mod report;
#[path = "../common/stats.rs"]
mod stats;
#[path = "../common/table_props.rs"]
mod table_props;

mod beside;
mod output;
mod py_variants;
mod soak;
mod table_setup;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use clap::{Parser, ValueEnum};
use serde_json::json;

type Res<T> = anyhow::Result<T>;

/// jemalloc, not glibc's malloc: a service that runs for months needs an allocator that gives
/// freed memory back (see README, "Memory in a long-running service").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const STAGE: &str = "soak";
/// The tenant of the tenant-month reads.
const TENANT: &str = "tenant-001";

/// The variants a run compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// Ours, merging on, the maintenance task beside the writer.
    Task,
    /// Ours, manifest merging only.
    Merge,
    /// Ours, `commit.manifest-merge.enabled=false`.
    #[value(name = "nomerge")]
    NoMerge,
    /// pyiceberg, fast append (merging off).
    PyFast,
    /// pyiceberg, merge append.
    PyMerge,
}

impl Variant {
    /// Commits of this variant of ours in a run.
    pub fn commits(self, settings: &Settings) -> u64 {
        settings
            .stop_after
            .iter()
            .rev()
            .find(|(v, _)| *v == self)
            .map_or(settings.commits, |(_, n)| (*n).min(settings.commits))
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::Task => "task",
            Variant::Merge => "merge",
            Variant::NoMerge => "nomerge",
            Variant::PyFast => "py-fast",
            Variant::PyMerge => "py-merge",
        }
    }

    pub fn is_python(self) -> bool {
        matches!(self, Variant::PyFast | Variant::PyMerge)
    }

    /// Whether the table merges manifests.
    pub fn merges(self) -> bool {
        !matches!(self, Variant::NoMerge | Variant::PyFast)
    }
}

/// A soak run: many small commits into one month, checkpoints of commit latency, read
/// latency and metadata sizes, variants side by side.
#[derive(Debug, Parser)]
#[command(name = "bench_soak", verbatim_doc_comment)]
pub struct Cli {
    /// A smoke run: 600 commits, a checkpoint every 200, 200 pyiceberg commits (explicit flags
    /// win).
    #[arg(long)]
    quick: bool,

    /// Print one JSON document (rows per variant and checkpoint, targets) instead of tables.
    #[arg(long)]
    json: bool,

    /// Commits per variant of ours [default: 20000; --quick: 600].
    #[arg(long, value_name = "N", value_parser = number::parse::<u64>)]
    commits: Option<u64>,

    /// Commits between checkpoints [default: 1000; --quick: 200].
    #[arg(long, value_name = "N", value_parser = number::parse::<std::num::NonZeroU64>)]
    every: Option<std::num::NonZeroU64>,

    /// Commits per pyiceberg variant (about 1 s each at 1,000) [default: 1000; --quick: 200].
    #[arg(long, value_name = "N", value_parser = number::parse::<u64>)]
    py_commits: Option<u64>,

    /// Rows per commit.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = number::parse::<usize>)]
    rows: usize,

    /// Embedding length.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = number::parse::<usize>)]
    dim: usize,

    /// Tenants the rows are spread over (the reads ask for tenant-001).
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = number::parse::<usize>)]
    tenants: usize,

    /// The month every row falls in (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", default_value = "2025-06", value_parser = parse_month)]
    month: NaiveDate,

    /// Variants, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "task,merge,nomerge,py-fast,py-merge"
    )]
    variants: Vec<Variant>,

    /// Commit through a streaming Appender (push the rows, then flush) instead of `append`.
    #[arg(long)]
    appender: bool,

    /// Sets the table property commit.manifest.min-count-to-merge on every variant's table
    /// [default: the table's, 100].
    #[arg(long, value_name = "N", value_parser = number::parse::<u32>)]
    min_count_to_merge: Option<u32>,

    /// The task variant's maintainer: `every`.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration::parse)]
    maintain_every: Duration,

    /// The task variant's maintainer: `after_commits` (0: on the schedule only).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = number::parse::<u64>)]
    maintain_after_commits: u64,

    /// The task variant's maintainer: `min_small_files`.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = number::parse::<usize>)]
    min_small_files: usize,

    /// The task variant's maintainer: `orphans_older_than`.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse)]
    orphans_older_than: Duration,

    /// The task variant's maintainer: `orphans_every` (the library's default, an hour).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration::parse)]
    orphans_every: Duration,

    /// The task variant's table property history.expire.max-snapshot-age-ms (default: Java's
    /// 5 days, as a table that sets nothing; the maintainer's --max-snapshots cap is what
    /// bounds metadata.json under a fast writer).
    #[arg(long, value_name = "DURATION", default_value = "5d", value_parser = duration::parse)]
    max_snapshot_age: Duration,

    /// The task variant's maintainer: `max_snapshots` (0: none, age only).
    #[arg(long, value_name = "N", default_value_t = sales_history::DEFAULT_MAX_SNAPSHOTS, value_parser = number::parse::<usize>)]
    max_snapshots: usize,

    /// Stop some of our variants earlier, e.g. `merge=5000,nomerge=5000` (their figures are
    /// compared at the checkpoints they reach; the merging-off variant's commits and plans
    /// grow with every commit, so 20,000 of them take hours).
    #[arg(long, value_name = "VARIANT=N", value_delimiter = ',', value_parser = parse_limit)]
    stop_after: Vec<(Variant, u64)>,

    /// The task variant's table property history.expire.min-snapshots-to-keep.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = number::parse::<u32>)]
    min_snapshots_to_keep: u32,

    /// Also measure a compaction of a month's small files beside a writer committing every
    /// 100 ms.
    #[arg(long)]
    beside_writer: bool,

    /// Small files (appends) in the month before the beside-writer compaction.
    #[arg(long, value_name = "N", default_value_t = 60, value_parser = number::parse::<usize>)]
    beside_files: usize,

    /// Runs of each read at a checkpoint (upper median).
    #[arg(long, value_name = "N", default_value = "3", value_parser = number::parse::<std::num::NonZeroUsize>)]
    reps: std::num::NonZeroUsize,

    /// Python with pyiceberg [default: $SALES_HISTORY_PYTHON, else the venv of scripts/venv.sh].
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,

    /// Scratch directory; a bench-soak-PID directory is made in it and deleted at the end
    /// unless --keep [default: the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Keep the tables after the run (their directory is printed).
    #[arg(long)]
    keep: bool,

    /// Print the crate's tracing events (INFO: commits, maintenance runs) on stderr.
    #[arg(long)]
    trace: bool,
}

fn parse_limit(text: &str) -> Result<(Variant, u64), String> {
    let (name, n) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: use VARIANT=N, e.g. nomerge=5000"))?;
    let variant = Variant::from_str(name.trim(), true)?;
    let n = number::parse::<u64>(n)?;
    Ok((variant, n))
}

fn parse_month(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(&format!("{}-01", text.trim()), "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a month: use YYYY-MM"))
}

/// The settings a run uses, after --quick and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub commits: u64,
    pub every: u64,
    pub py_commits: u64,
    pub rows: usize,
    pub dim: usize,
    pub tenants: usize,
    pub month: NaiveDate,
    pub month_start: DateTime<Utc>,
    pub month_end: DateTime<Utc>,
    pub variants: Vec<Variant>,
    pub appender: bool,
    pub min_count_to_merge: Option<u32>,
    pub reps: usize,
    pub maintain_every: Duration,
    pub maintain_after_commits: Option<u64>,
    pub min_small_files: usize,
    pub orphans_older_than: Duration,
    pub orphans_every: Duration,
    pub max_snapshot_age: Duration,
    pub min_snapshots_to_keep: u32,
    pub max_snapshots: Option<usize>,
    pub stop_after: Vec<(Variant, u64)>,
    pub beside_files: usize,
}

impl Settings {
    fn of(cli: &Cli) -> Res<Settings> {
        let (commits, every, py) = if cli.quick {
            (600, 200, 200)
        } else {
            (20_000, 1_000, 1_000)
        };
        let month_start = Utc.from_utc_datetime(&cli.month.and_hms_opt(0, 0, 0).context("month")?);
        let next = cli
            .month
            .checked_add_months(chrono::Months::new(1))
            .context("month")?;
        let month_end = Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0).context("month")?);
        let mut variants = cli.variants.clone();
        variants.dedup();
        anyhow::ensure!(cli.rows > 0, "--rows must be at least 1");
        Ok(Settings {
            commits: cli.commits.unwrap_or(commits),
            every: cli.every.map_or(every, |n| n.get()),
            py_commits: cli.py_commits.unwrap_or(py),
            rows: cli.rows,
            dim: cli.dim,
            tenants: cli.tenants.max(1),
            month: cli.month,
            month_start,
            month_end,
            variants,
            appender: cli.appender,
            min_count_to_merge: cli.min_count_to_merge,
            reps: cli.reps.get(),
            maintain_every: cli.maintain_every,
            maintain_after_commits: (cli.maintain_after_commits > 0)
                .then_some(cli.maintain_after_commits),
            min_small_files: cli.min_small_files,
            orphans_older_than: cli.orphans_older_than,
            orphans_every: cli.orphans_every,
            max_snapshot_age: cli.max_snapshot_age,
            min_snapshots_to_keep: cli.min_snapshots_to_keep,
            max_snapshots: (cli.max_snapshots > 0).then_some(cli.max_snapshots),
            stop_after: cli.stop_after.clone(),
            beside_files: cli.beside_files,
        })
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "commits": self.commits, "every": self.every, "py_commits": self.py_commits,
            "rows_per_commit": self.rows, "dim": self.dim, "tenants": self.tenants,
            "month": self.month.format("%Y-%m").to_string(),
            "variants": self.variants.iter().map(|v| v.name()).collect::<Vec<_>>(),
            "appender": self.appender, "min_count_to_merge": self.min_count_to_merge,
            "reps": self.reps,
            "maintainer": {
                "every_s": self.maintain_every.as_secs_f64(),
                "after_commits": self.maintain_after_commits,
                "min_small_files": self.min_small_files,
                "orphans_older_than_s": self.orphans_older_than.as_secs_f64(),
                "orphans_every_s": self.orphans_every.as_secs_f64(),
                "max_snapshot_age_ms": self.max_snapshot_age.as_millis() as u64,
                "min_snapshots_to_keep": self.min_snapshots_to_keep,
                "max_snapshots": self.max_snapshots,
            },
            "stop_after": self.stop_after.iter().map(|(v, n)| (v.name().to_string(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
        })
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if cli.trace {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .init();
    }
    report::exit_on_error(run(cli).await);
}

async fn run(cli: Cli) -> Res<()> {
    let settings = Settings::of(&cli)?;
    let base = cli.dir.clone().unwrap_or_else(std::env::temp_dir);
    let root = base.join(format!("bench-soak-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let outcome = run_in(&cli, &settings, &root).await;
    if cli.keep {
        eprintln!("tables kept in {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    outcome
}

async fn run_in(cli: &Cli, settings: &Settings, root: &std::path::Path) -> Res<()> {
    eprintln!(
        "bench_soak: {} commits of {} rows (py: {}), checkpoint every {}, variants {}, in {} ({}), load {:.2}",
        settings.commits,
        settings.rows,
        settings.py_commits,
        settings.every,
        settings
            .variants
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(","),
        root.display(),
        host::fs_type(root),
        host::load_average()
    );
    let py: Vec<Variant> = settings
        .variants
        .iter()
        .copied()
        .filter(|v| v.is_python())
        .collect();
    // Found first: a long run must not fail at its end for want of a Python.
    let python = if py.is_empty() || settings.py_commits == 0 {
        None
    } else {
        Some(match &cli.python {
            Some(p) => p.clone(),
            None => python::venv_python()?,
        })
    };
    let ours: Vec<Variant> = settings
        .variants
        .iter()
        .copied()
        .filter(|v| !v.is_python())
        .collect();
    let soak = if ours.is_empty() || settings.commits == 0 {
        None
    } else {
        Some(soak::run(settings, &ours, root).await?)
    };
    let mut rows: Vec<soak::Row> = soak.as_ref().map(|s| s.rows.clone()).unwrap_or_default();
    let beside = if cli.beside_writer {
        Some(beside::run(settings, root).await?)
    } else {
        None
    };
    if let Some(python) = &python {
        rows.extend(py_variants::run(settings, &py, root, python).await?);
    }
    let targets = output::targets(settings, &rows, soak.as_ref(), beside.as_ref());
    let filesystem = host::fs_type(root);
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::document(
                settings,
                &filesystem,
                &rows,
                soak.as_ref(),
                beside.as_ref(),
                &targets
            ))?
        );
    } else {
        output::print_text(
            settings,
            &filesystem,
            &rows,
            soak.as_ref(),
            beside.as_ref(),
            &targets,
        );
    }
    Ok(())
}

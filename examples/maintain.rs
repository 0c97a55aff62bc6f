//! Regular maintenance of the existing table (the seed's "regular maintenance tasks" as one
//! job): erase a tenant's rows, compact small files, expire old snapshots (deleting the files
//! only they referenced) and remove orphan files (left by crashed writers), in that order.
//! `--dry-run` says what it would do, changing nothing.
//!
//! ```text
//! cargo run --release --example maintain -- [--evolve-to LAYOUT] [--migrate-month YYYY-MM|all] \
//!     [--delete-tenant ID] [--compact] \
//!     [--expire-older-than 7d] [--keep-last 10] [--remove-orphans [--orphans-older-than 1d]] \
//!     [--dry-run] [--warehouse DIR | --catalog URI] [--stage STAGE]
//! ```
//!
//! A tenant erasure (no file anywhere keeps a row of it) on a table nothing else writes to:
//! `--delete-tenant ID --expire-older-than 0s --remove-orphans --orphans-older-than 0s`.

#[path = "common/catalog_args.rs"]
mod catalog_args;
#[path = "common/duration.rs"]
mod duration;
#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;

use std::num::NonZeroUsize;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Parser};
use sales_history::{Layout, SalesHistory, ScanFilter};

/// Maintenance of the existing sales_history table: --evolve-to moves the table to another
/// partition layout in place (one commit, no data rewritten; new files use it), --migrate-month
/// rewrites one month's files of older layouts under the current one (`all`: every month, one
/// `replace` snapshot each, resumable), --delete-tenant deletes every row of a
/// tenant (one snapshot; older snapshots keep the rows until expired), --compact rewrites small
/// data files of each month into files near the target size (one `replace` snapshot), then
/// expires snapshots older than
/// --expire-older-than and/or beyond the --keep-last most recent (the current snapshot is never
/// expired) and deletes the files only they referenced; with --remove-orphans deletes files
/// under the table that nothing references and that are older than --orphans-older-than.
/// Durations are like 30s, 5m, 2h, 1d or 1h30m. With --dry-run it only says what it would do.
#[derive(Debug, Parser)]
#[command(name = "maintain", verbatim_doc_comment)]
#[command(group(
    ArgGroup::new("task")
        .required(true)
        .multiple(true)
        .args(["expire_older_than", "keep_last", "remove_orphans", "compact", "delete_tenant", "evolve_to", "migrate_month"])
))]
struct Args {
    /// Move the table to partition layout LAYOUT in place: month, tenant-month or
    /// bucketN-month (e.g. bucket16-month).
    #[arg(long, value_name = "LAYOUT", value_parser = parse_layout)]
    evolve_to: Option<Layout>,

    /// Rewrite the files of month YYYY-MM written under an older layout under the current
    /// one; `all` for every month (one snapshot per month: an interrupted run resumes).
    #[arg(long, value_name = "YYYY-MM|all", value_parser = parse_month)]
    migrate_month: Option<MigrateMonth>,

    /// Delete every row of tenant ID (copy-on-write: files of that tenant only are dropped,
    /// mixed files rewritten without its rows).
    #[arg(long, value_name = "ID")]
    delete_tenant: Option<String>,

    /// Compact small data files, month by month, into files near the target size.
    #[arg(long)]
    compact: bool,

    /// Target size of compacted files in bytes (default: the table's
    /// write.target-file-size-bytes, else 128 MiB).
    #[arg(long, value_name = "BYTES", requires = "compact", value_parser = number::parse::<u64>)]
    target_file_size: Option<u64>,

    /// Expire snapshots committed more than DURATION ago.
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    expire_older_than: Option<Duration>,

    /// Expire all but the N most recent snapshots (with --expire-older-than: only those that
    /// are also old enough).
    #[arg(long, value_name = "N", value_parser = number::parse::<NonZeroUsize>)]
    keep_last: Option<NonZeroUsize>,

    /// Delete orphan files: files under the table's location that no snapshot and no metadata
    /// file references.
    #[arg(long)]
    remove_orphans: bool,

    /// Only orphans last modified more than DURATION ago. Keep it well above the longest
    /// append that may be in flight (its files look like orphans until it commits); 0s only
    /// when nothing writes to the table.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = duration::parse,
        default_value = "1d",
        requires = "remove_orphans"
    )]
    orphans_older_than: Duration,

    /// Say what would be expired and deleted; change nothing.
    #[arg(long)]
    dry_run: bool,

    #[command(flatten)]
    catalog: catalog_args::CatalogArgs,
}

/// The instant `age` ago (the beginning of time for an age beyond chrono's range).
fn ago(age: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(age)
        .ok()
        .and_then(|age| Utc::now().checked_sub_signed(age))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `30s`, `2h`, `1d` back from seconds, for messages.
fn show(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn parse_layout(s: &str) -> Result<Layout, String> {
    s.parse::<Layout>().map_err(|e| e.to_string())
}

/// `--migrate-month`: one month or all.
#[derive(Debug, Clone, Copy)]
enum MigrateMonth {
    All,
    One(i32, u32),
}

fn parse_month(s: &str) -> Result<MigrateMonth, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(MigrateMonth::All);
    }
    let bad = || format!("`{s}` is not YYYY-MM or all");
    let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
    let (y, m) = (
        y.parse::<i32>().map_err(|_| bad())?,
        m.parse::<u32>().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) {
        return Err(bad());
    }
    Ok(MigrateMonth::One(y, m))
}

fn snapshot_note(snapshot: Option<i64>, operation: Option<&str>) -> String {
    match (snapshot, operation) {
        (Some(id), Some(op)) => format!(", `{op}` snapshot {id}"),
        (Some(id), None) => format!(", snapshot {id}"),
        _ => String::new(),
    }
}

fn files(n: usize) -> String {
    match n {
        1 => "1 file".to_string(),
        n => format!("{n} files"),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    report::exit_on_error(run(args).await);
}

async fn run(args: Args) -> anyhow::Result<()> {
    let table = SalesHistory::open(&args.catalog.config(), &args.catalog.stage).await?;
    println!("table     {}", table.name());
    let (did, would) = if args.dry_run {
        ("would expire", "would delete")
    } else {
        ("expired", "deleted")
    };

    if let Some(layout) = args.evolve_to {
        let done = table.evolve_layout(layout).dry_run(args.dry_run).await?;
        match &done.spec {
            Some(spec) => println!(
                "layout    evolved {} → {}: spec {} → {} [{spec}], {} attempt(s); files already written keep their layout",
                done.from,
                done.to,
                done.from_spec_id,
                done.to_spec_id.unwrap_or_default(),
                done.attempts
            ),
            None => println!(
                "layout    would evolve {} → {} {} (spec {} stays for the files already written)",
                done.from,
                done.to,
                done.to.spec_text(),
                done.from_spec_id
            ),
        }
    }

    if let Some(which) = args.migrate_month {
        let mut migration = table.compact().migrate().dry_run(args.dry_run);
        if let MigrateMonth::One(y, m) = which {
            migration = migration.month(y, m);
        }
        let done = migration.await?;
        let verb = if args.dry_run { "would move" } else { "moved" };
        println!(
            "migrate   {verb} {} of older layouts in {} months ({} rows, {} bytes) into {} under {} ({} bytes), {:.1}s",
            files(done.files_removed),
            done.months,
            done.rows_rewritten,
            done.bytes_removed,
            files(done.files_added),
            table.layout()?,
            done.bytes_added,
            done.elapsed.as_secs_f64(),
        );
    }

    if let Some(tenant) = &args.delete_tenant {
        let done = table
            .delete_where(ScanFilter::new().tenant(tenant.clone()))
            .dry_run(args.dry_run)
            .await?;
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        println!(
            "tenant    {verb} {} rows of `{tenant}`: {} dropped whole ({} from metadata alone), {} rewritten, {} read; removed {}, added {} ({} → {} bytes){}",
            done.rows_deleted,
            files(done.files_dropped_by_metadata + done.files_dropped_after_reading),
            done.files_dropped_by_metadata,
            files(done.files_rewritten),
            files(done.files_read),
            files(
                done.files_dropped_by_metadata
                    + done.files_dropped_after_reading
                    + done.files_rewritten
            ),
            files(done.files_added),
            done.bytes_removed,
            done.bytes_added,
            snapshot_note(done.snapshot_id, done.operation.as_deref()),
        );
        if let Some(index) = &done.index {
            println!(
                "index     dropped {} segments naming removed files, indexed {} again ({} rows)",
                index.segments_dropped,
                files(index.files_indexed),
                index.rows_indexed
            );
        }
        if done.index_stale {
            println!(
                "index     NOT updated after the delete: run the index build before expiring snapshots"
            );
        }
    }

    if args.compact {
        let mut compaction = table.compact().dry_run(args.dry_run);
        if let Some(bytes) = args.target_file_size {
            compaction = compaction.target_file_size(bytes);
        }
        let done = compaction.await?;
        let verb = if args.dry_run {
            "would rewrite"
        } else {
            "rewrote"
        };
        println!(
            "compact   {verb} {} in {} months ({} rows, {} bytes) into {} ({} bytes), target {} bytes, {:.1}s{}",
            files(done.files_removed),
            done.months,
            done.rows_rewritten,
            done.bytes_removed,
            files(done.files_added),
            done.bytes_added,
            done.target_file_size,
            done.elapsed.as_secs_f64(),
            snapshot_note(done.snapshot_id, Some("replace")),
        );
    }

    if args.expire_older_than.is_some() || args.keep_last.is_some() {
        let mut expiry = match args.expire_older_than {
            Some(age) => table.expire_snapshots().older_than(ago(age)),
            None => table.expire_snapshots().any_age(),
        }
        .retain_last(args.keep_last.map_or(1, |n| n.get()));
        if args.dry_run {
            expiry = expiry.dry_run();
        }
        let before = table.snapshots().await?.len();
        let done = expiry.await?;
        let mut rule = Vec::new();
        if let Some(age) = args.expire_older_than {
            rule.push(format!("older than {}", show(age)));
        }
        rule.push(format!(
            "keeping the last {}",
            args.keep_last.map_or(1, NonZeroUsize::get)
        ));
        println!(
            "snapshots {did} {} of {before} ({}), {would} {} they alone referenced",
            done.expired_snapshots.len(),
            rule.join(", "),
            files(done.deleted_files.len())
        );
    }

    if args.remove_orphans {
        let age = args.orphans_older_than;
        let mut removal = table.remove_orphan_files().older_than(ago(age));
        if args.dry_run {
            removal = removal.dry_run();
        }
        let done = removal.await?;
        println!(
            "orphans   {would} {} older than {}",
            files(done.deleted_files.len()),
            show(age)
        );
        for file in &done.deleted_files {
            println!("  {file}");
        }
    }
    Ok(())
}

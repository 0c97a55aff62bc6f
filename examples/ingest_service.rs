//! A streaming ingest service: sale events in, one Iceberg snapshot per flush out, exactly once.
//!
//! Reads sale events as JSON lines from stdin (one object per line; keys are the column names,
//! `sold_price` a decimal string, `sold_date` RFC 3339, `embedding` an array of numbers, absent
//! keys are null), or generates them with `--rate N`. Pushes them through a streaming appender
//! (flush on `--max-rows`, `--max-bytes` or `--max-age`) and prints one line per flush. The
//! maintenance task runs beside it (compaction, expiry, orphan removal; one line per run)
//! unless `--no-maintenance`.
//!
//! The source position is the input line number (generated events: their sequence number),
//! stored with each flush: restarted on the same input after a crash, the service skips what
//! was already committed, so nothing is lost and nothing is written twice.
//!
//! ```text
//! cargo run --release --example ingest_service -- [--warehouse DIR | --catalog URI] [--stage S] \
//!     [--source-name NAME] [--max-rows N] [--max-age 1s] [--on-bad-line stop|skip] < events.jsonl
//! cargo run --release --example ingest_service -- --rate 5000 --events 100000
//! cargo run --release --features kinesis --example ingest_service -- --kinesis-stream sales \
//!     [--kinesis-endpoint URL] [--region R] [--idle-exit 30s]
//! ```
//!
//! From Kinesis (feature `kinesis`), every shard is consumed; each shard is its own source
//! (`kinesis:STREAM/SHARD`) whose position is the record's sequence number, and on restart each
//! shard resumes after its committed sequence number (`AFTER_SEQUENCE_NUMBER`). Record data is
//! one sale event as JSON, as on stdin.

#[path = "common/catalog_args.rs"]
mod catalog_args;
#[path = "common/duration.rs"]
mod duration;
#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;

use std::io::BufRead;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use chrono::DateTime;
use clap::{Parser, ValueEnum};
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{Appender, SaleRecord, SalesHistory, SourcePosition, TableOptions};
use serde_json::Value;

/// Streams sale events into the sales_history table: JSON lines from stdin (or generated with
/// --rate), buffered and committed one snapshot per flush, with the input position stored in
/// the same commit so that a restart on the same input resumes exactly once.
#[derive(Debug, Parser)]
#[command(name = "ingest_service", verbatim_doc_comment)]
struct Args {
    /// Name of the source whose positions are stored (default: `stdin`, or `generator-SEED`).
    #[arg(long, value_name = "NAME")]
    source_name: Option<String>,

    /// Generate events at this many per second instead of reading stdin (0: as fast as possible).
    #[arg(long, value_name = "N", value_parser = number::parse::<u64>)]
    rate: Option<u64>,

    /// With --rate: how many events to generate (default: until interrupted).
    #[arg(long, value_name = "N", value_parser = number::parse::<u64>)]
    events: Option<u64>,

    /// Consume this Kinesis stream (every shard) instead of stdin (feature `kinesis`).
    #[arg(long, value_name = "NAME", conflicts_with = "rate")]
    kinesis_stream: Option<String>,

    /// Kinesis endpoint override (an emulator); default: the region's endpoint.
    #[arg(long, value_name = "URL", requires = "kinesis_stream")]
    kinesis_endpoint: Option<String>,

    /// AWS region of the Kinesis stream (default: $AWS_REGION, else us-east-1).
    #[arg(long, value_name = "REGION", requires = "kinesis_stream")]
    region: Option<String>,

    /// With --kinesis-stream: stop (after committing) when no record arrived for this long
    /// (default: run until interrupted).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, requires = "kinesis_stream")]
    idle_exit: Option<Duration>,

    /// With --rate: seed of the generator.
    #[arg(long, value_name = "N", default_value_t = 7, value_parser = number::parse::<u64>)]
    seed: u64,

    /// Flush when this many rows are buffered.
    #[arg(long, value_name = "N", default_value = "50000", value_parser = number::parse::<NonZeroUsize>)]
    max_rows: NonZeroUsize,

    /// Flush when the buffered rows take this many MiB.
    #[arg(long, value_name = "MIB", default_value = "64", value_parser = number::parse::<NonZeroUsize>)]
    max_mib: NonZeroUsize,

    /// Flush when the oldest buffered row is this old (e.g. 1s, 30s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration::parse)]
    max_age: Duration,

    /// What to do with a line that is not a valid sale event.
    #[arg(long, value_enum, default_value_t = BadLine::Stop)]
    on_bad_line: BadLine,

    /// Embedding dimension of the table if this run creates it.
    #[arg(long, value_name = "N", default_value = "1024", value_parser = number::parse::<NonZeroUsize>)]
    embedding_dimension: NonZeroUsize,

    /// No progress lines.
    #[arg(long)]
    quiet: bool,

    /// Print the crate's tracing events on stderr (INFO: commits, and each maintenance
    /// step as it starts and finishes: `maintenance phase started phase="compaction"` …).
    #[arg(long)]
    trace: bool,

    /// Do not run the maintenance task beside the appender (compaction of small files,
    /// snapshot expiry by the table's retention properties, orphan removal); it runs by
    /// default, one line per run (does nothing on S3 Tables, whose service does this).
    #[arg(long)]
    no_maintenance: bool,

    /// How often the maintenance task runs (also after every 500 commits).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration::parse)]
    maintenance_every: Duration,

    /// The maintenance task expires snapshots older than this (default: the table's
    /// `history.expire.max-snapshot-age-ms`, 5 days when unset).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    snapshot_max_age: Option<Duration>,

    /// The maintenance task keeps at most this many snapshots, whatever their age (0: no
    /// cap; metadata.json holds every snapshot, ~0.8 KiB each).
    #[arg(long, value_name = "N", default_value_t = sales_history::DEFAULT_MAX_SNAPSHOTS)]
    max_snapshots: usize,

    /// The maintenance task removes unreferenced files older than this.
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = duration::parse)]
    orphans_older_than: Duration,

    /// The maintenance task removes orphans at most this often.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration::parse)]
    orphans_every: Duration,

    #[command(flatten)]
    catalog: catalog_args::CatalogArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BadLine {
    /// Stop the run with the line number and the reason (exit status 1).
    Stop,
    /// Report the line number and the reason on stderr, skip the line, go on.
    Skip,
}

/// jemalloc, not glibc's malloc: a service that runs for months needs an allocator that gives
/// freed memory back (see README, "Memory in a long-running service").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.trace {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .init();
    }
    report::exit_on_error(run(args).await);
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.catalog.config();
    let options = TableOptions::default().embedding_dimension(args.embedding_dimension.get());
    let table = SalesHistory::ensure_with(&config, &args.catalog.stage, options).await?;
    let appender_for = |table: &SalesHistory| {
        table
            .appender()
            .max_rows(args.max_rows.get())
            .max_bytes(args.max_mib.get() << 20)
            .max_buffered_bytes((args.max_mib.get() << 20) * 4)
            .max_age(args.max_age)
            .start()
    };
    let maintainer = match args.no_maintenance {
        true => None,
        false => {
            let mut builder = table
                .maintainer()
                .every(args.maintenance_every)
                .after_commits(Some(100))
                .orphans_older_than(Some(args.orphans_older_than))
                .orphans_every(args.orphans_every)
                .max_snapshots((args.max_snapshots > 0).then_some(args.max_snapshots));
            if let Some(age) = args.snapshot_max_age {
                builder = builder.snapshot_max_age(age);
            }
            Some(builder.start()?)
        }
    };
    let maintenance_lines = match (&maintainer, args.quiet) {
        (Some(m), false) => Some(tokio::spawn(print_maintenance(m.watch()))),
        _ => None,
    };
    let result = ingest(&args, &table, appender_for).await;
    if let Some(p) = maintenance_lines {
        p.abort();
    }
    if let Some(m) = maintainer {
        let stats = m.stop().await;
        if !args.quiet {
            eprintln!(
                "maintenance: {} runs ({} failed), {} compactions of {} files, {} snapshots expired, {} files deleted",
                stats.runs,
                stats.failed_runs,
                stats.compactions,
                stats.files_compacted,
                stats.snapshots_expired,
                stats.files_deleted
            );
        }
    }
    result
}

/// One line per maintenance run.
async fn print_maintenance(
    mut watch: tokio::sync::watch::Receiver<sales_history::MaintainerStats>,
) {
    while watch.changed().await.is_ok() {
        let s = watch.borrow_and_update().clone();
        if s.managed_by_catalog {
            eprintln!("maintenance: managed by S3 Tables; the task does nothing");
            continue;
        }
        eprintln!(
            "maintenance run {}: {} ms, {} compactions ({} files, {} retries) so far, {} snapshots expired, {} files deleted{}",
            s.runs,
            s.last_run.as_millis(),
            s.compactions,
            s.files_compacted,
            s.compaction_retries,
            s.snapshots_expired,
            s.files_deleted,
            s.last_error
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
    }
}

async fn ingest(
    args: &Args,
    table: &SalesHistory,
    appender_for: impl Fn(&SalesHistory) -> sales_history::Result<Appender>,
) -> anyhow::Result<()> {
    if let Some(stream) = &args.kinesis_stream {
        return kinesis::run(args, table, appender_for(table)?, stream).await;
    }
    let source = args.source_name.clone().unwrap_or_else(|| match args.rate {
        Some(_) => format!("generator-{}", args.seed),
        None => "stdin".to_string(),
    });
    let resume = table
        .last_committed_position(&source)
        .await?
        .and_then(|p| p.as_u64())
        .unwrap_or(0);
    if !args.quiet {
        eprintln!(
            "ingest into {} from {source}: resuming after position {resume}",
            table.name()
        );
    }
    let appender = appender_for(table)?;
    let progress = (!args.quiet).then(|| tokio::spawn(print_flushes(appender.watch())));
    let fed = match args.rate {
        Some(rate) => generate(args, table, &appender, &source, resume, rate).await,
        None => read_stdin(args, &appender, &source, resume).await,
    };
    let closed = appender.close().await;
    if let Some(p) = progress {
        p.abort();
    }
    let (pushed, skipped) = fed?;
    closed?;
    let committed = table.last_committed_position(&source).await?;
    println!(
        "done: {pushed} events pushed, {skipped} skipped, committed position {}",
        committed.map_or("none".to_string(), |p| p.position().to_string())
    );
    Ok(())
}

/// Pushes stdin's lines after `resume`; returns (pushed, skipped).
async fn read_stdin(
    args: &Args,
    appender: &Appender,
    source: &str,
    resume: u64,
) -> anyhow::Result<(u64, u64)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, std::io::Result<String>)>(1024);
    // Reading stdin blocks: a dedicated thread, bounded channel.
    std::thread::spawn(move || {
        for (i, line) in std::io::stdin().lock().lines().enumerate() {
            if tx.blocking_send((i as u64 + 1, line)).is_err() {
                return;
            }
        }
    });
    let (mut pushed, mut skipped) = (0, 0);
    while let Some((number, line)) = rx.recv().await {
        let line = line.with_context(|| format!("reading line {number}"))?;
        if number <= resume || line.trim().is_empty() {
            continue;
        }
        let record = match parse_event(&line) {
            Ok(r) => r,
            Err(e) => match args.on_bad_line {
                BadLine::Stop => bail!("line {number}: {e}"),
                BadLine::Skip => {
                    eprintln!("line {number}: skipped: {e}");
                    skipped += 1;
                    continue;
                }
            },
        };
        let position = SourcePosition::at(source, number)?;
        match appender.push_at(record, position).await {
            Ok(()) => pushed += 1,
            Err(e @ sales_history::Error::InvalidValue { .. }) => match args.on_bad_line {
                BadLine::Stop => bail!("line {number}: {e}"),
                BadLine::Skip => {
                    eprintln!("line {number}: skipped: {e}");
                    skipped += 1;
                }
            },
            Err(e) => return Err(anyhow!(e).context(format!("pushing line {number}"))),
        }
    }
    Ok((pushed, skipped))
}

/// Generates events at `rate`/s (0: unthrottled) after `resume`; returns (pushed, 0).
async fn generate(
    args: &Args,
    table: &SalesHistory,
    appender: &Appender,
    source: &str,
    resume: u64,
    rate: u64,
) -> anyhow::Result<(u64, u64)> {
    let config = SampleConfig::default()
        .seed(args.seed)
        .embedding_dimension(table.embedding_dimension());
    let mut events = SampleGenerator::new(config);
    let end = args.events.unwrap_or(u64::MAX);
    let started = Instant::now();
    let mut pushed = 0;
    for number in 1..=end {
        let record = events.next_record();
        if number <= resume {
            continue;
        }
        if rate > 0 {
            let due = started + Duration::from_secs_f64((number - resume) as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        appender
            .push_at(record, SourcePosition::at(source, number)?)
            .await?;
        pushed += 1;
    }
    Ok((pushed, 0))
}

/// One sale event (a JSON object) as a row; the appender validates it against the table.
fn parse_event(line: &str) -> anyhow::Result<SaleRecord> {
    let v: Value = serde_json::from_str(line).context("not JSON")?;
    let obj = v.as_object().ok_or_else(|| anyhow!("not a JSON object"))?;
    let text = |k: &str| -> anyhow::Result<Option<String>> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => bail!("`{k}` must be a string, not {other}"),
        }
    };
    let required =
        |k: &str| -> anyhow::Result<String> { text(k)?.ok_or_else(|| anyhow!("`{k}` is missing")) };
    let price = required("sold_price")?
        .parse()
        .map_err(|e| anyhow!("`sold_price`: {e}"))?;
    let date = DateTime::parse_from_rfc3339(&required("sold_date")?)
        .map_err(|e| anyhow!("`sold_date` is not RFC 3339: {e}"))?
        .to_utc();
    let mut record =
        SaleRecord::builder(required("product_id")?, required("tenant_id")?, price, date);
    if let Some(season) = text("season")? {
        record = record.season(season.parse().map_err(|e| anyhow!("`season`: {e}"))?);
    }
    if let Some(e) = obj.get("embedding").filter(|e| !e.is_null()) {
        let values = e
            .as_array()
            .ok_or_else(|| anyhow!("`embedding` must be an array of numbers"))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| anyhow!("`embedding` must be an array of numbers"))
            })
            .collect::<anyhow::Result<Vec<f64>>>()?;
        record = record.embedding(values);
    }
    for (k, set) in [
        ("category", SaleRecordField::Category),
        ("brand", SaleRecordField::Brand),
        ("condition", SaleRecordField::Condition),
        ("image_s3_key", SaleRecordField::ImageS3Key),
        ("description", SaleRecordField::Description),
        ("source", SaleRecordField::Source),
    ] {
        if let Some(value) = text(k)? {
            record = set.apply(record, value);
        }
    }
    for k in obj.keys() {
        if k.parse::<sales_history::Column>().is_err() {
            bail!("unknown key `{k}`");
        }
    }
    Ok(record.build()?)
}

/// The optional text columns, set by name.
#[derive(Clone, Copy)]
enum SaleRecordField {
    Category,
    Brand,
    Condition,
    ImageS3Key,
    Description,
    Source,
}

impl SaleRecordField {
    fn apply(
        self,
        b: sales_history::SaleRecordBuilder,
        v: String,
    ) -> sales_history::SaleRecordBuilder {
        match self {
            SaleRecordField::Category => b.category(v),
            SaleRecordField::Brand => b.brand(v),
            SaleRecordField::Condition => b.condition(v),
            SaleRecordField::ImageS3Key => b.image_s3_key(v),
            SaleRecordField::Description => b.description(v),
            SaleRecordField::Source => b.source(v),
        }
    }
}

/// Prints one line per flush (commits or failures) as the appender reports them.
async fn print_flushes(mut stats: tokio::sync::watch::Receiver<sales_history::AppenderStats>) {
    let started = Instant::now();
    let mut seen = *stats.borrow();
    while stats.changed().await.is_ok() {
        let now = *stats.borrow_and_update();
        if now.failed_flushes > seen.failed_flushes {
            println!(
                "flush failed ({} so far); {} rows stay buffered for the retry",
                now.failed_flushes, now.buffered_rows
            );
        }
        if now.commits > seen.commits {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            println!(
                "flush: +{} rows in {} snapshot(s); {} rows committed, {} buffered, {:.0} rows/s",
                now.committed_rows - seen.committed_rows,
                now.commits - seen.commits,
                now.committed_rows,
                now.buffered_rows,
                now.committed_rows as f64 / secs
            );
        }
        seen = now;
    }
}

/// The Kinesis source: one consumer task per shard, positions = sequence numbers.
#[cfg(feature = "kinesis")]
mod kinesis {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::{Context, anyhow, bail};
    use aws_sdk_kinesis::types::ShardIteratorType;
    use sales_history::{Appender, SalesHistory, SourcePosition};

    use super::{Args, BadLine, parse_event};

    pub(super) async fn run(
        args: &Args,
        table: &SalesHistory,
        appender: Appender,
        stream: &str,
    ) -> anyhow::Result<()> {
        let region = args
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_string());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region));
        if let Some(url) = &args.kinesis_endpoint {
            loader = loader.endpoint_url(url);
        }
        let client = aws_sdk_kinesis::Client::new(&loader.load().await);
        // Every page of shards (a stream of more than 1,000 shards, or many closed ones).
        let mut shard_ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                // A page after the first names the token only.
                Some(t) => client.list_shards().next_token(t),
                None => client.list_shards().stream_name(stream),
            };
            let page = request
                .send()
                .await
                .with_context(|| format!("listing the shards of Kinesis stream `{stream}`"))?;
            shard_ids.extend(page.shards().iter().map(|s| s.shard_id().to_string()));
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        let appender = Arc::new(appender);
        let mut tasks = tokio::task::JoinSet::new();
        for shard_id in &shard_ids {
            let shard_id = shard_id.clone();
            let source = format!("kinesis:{stream}/{shard_id}");
            let resume = table.last_committed_position(&source).await?;
            if !args.quiet {
                eprintln!(
                    "shard {shard_id}: resuming after {}",
                    resume
                        .as_ref()
                        .map_or("the start (TRIM_HORIZON)", |p| p.position())
                );
            }
            let mut iterator = client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(&shard_id);
            iterator = match &resume {
                Some(p) => iterator
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(p.position()),
                None => iterator.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            let iterator = iterator
                .send()
                .await
                .with_context(|| format!("shard iterator for {shard_id}"))?
                .shard_iterator()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("no shard iterator for {shard_id}"))?;
            let (client, appender) = (client.clone(), appender.clone());
            let (idle_exit, on_bad) = (args.idle_exit, args.on_bad_line);
            let shard = Shard {
                stream: stream.to_string(),
                id: shard_id,
                source,
                resume: resume.map(|p| p.position().to_string()),
            };
            tasks.spawn(async move {
                consume(client, appender, shard, iterator, idle_exit, on_bad).await
            });
        }
        // The first consumer to fail stops the others: the service exits with its error (a
        // supervisor restarts it, and every shard resumes after its committed position)
        // rather than reading the other shards while that one is no longer read.
        let mut pushed = 0u64;
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            let failed = match done {
                Ok(Ok(n)) => {
                    pushed += n;
                    None
                }
                Ok(Err(e)) => Some(e),
                Err(e) if e.is_cancelled() => None,
                Err(e) => Some(anyhow!("a shard consumer failed: {e}")),
            };
            if let Some(e) = failed {
                first_error.get_or_insert(e);
                tasks.abort_all();
            }
        }
        let appender = Arc::into_inner(appender).ok_or_else(|| anyhow!("appender still shared"))?;
        let closed = appender.close().await;
        if let Some(e) = first_error {
            return Err(e);
        }
        closed?;
        println!(
            "done: {pushed} records pushed from {} shards",
            shard_ids.len()
        );
        Ok(())
    }

    /// A shard a consumer reads.
    struct Shard {
        stream: String,
        id: String,
        /// `kinesis:<stream>/<shard id>`: the positions' source.
        source: String,
        /// The committed position it resumed after (`None`: the start).
        resume: Option<String>,
    }

    /// Whether a failed `GetRecords` is worth repeating as is (throttled, or a server error).
    fn throttled<E: aws_sdk_kinesis::error::ProvideErrorMetadata>(
        e: &aws_sdk_kinesis::error::SdkError<E>,
    ) -> bool {
        use aws_sdk_kinesis::error::SdkError;
        match e {
            SdkError::ServiceError(s) => {
                matches!(
                    s.err().code(),
                    Some(
                        "ProvisionedThroughputExceededException"
                            | "LimitExceededException"
                            | "KMSThrottlingException"
                            | "InternalFailure"
                            | "ServiceUnavailable"
                    )
                ) || s.raw().status().as_u16() >= 500
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
            _ => false,
        }
    }

    /// Reads one shard until it has been idle for `idle_exit` (or forever); returns records pushed.
    async fn consume(
        client: aws_sdk_kinesis::Client,
        appender: Arc<Appender>,
        shard: Shard,
        mut iterator: String,
        idle_exit: Option<Duration>,
        on_bad: BadLine,
    ) -> anyhow::Result<u64> {
        let source = shard.source.clone();
        let mut pushed = 0;
        let mut last_record = Instant::now();
        // The last record read (pushed or skipped): where a fresh iterator starts after.
        let mut last_seq = shard.resume.clone();
        let mut pause = Duration::from_millis(200);
        loop {
            let out = match client
                .get_records()
                .shard_iterator(&iterator)
                .limit(1000)
                .send()
                .await
            {
                Ok(out) => {
                    pause = Duration::from_millis(200);
                    out
                }
                // Throttled (the shard's read limit) or a server error: the same request
                // again after a pause that doubles up to 5 s.
                Err(e) if throttled(&e) => {
                    eprintln!("{source}: {e}; retrying in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
                // An iterator expires 5 minutes after it was handed out (a push held back by
                // a full buffer meanwhile): a new one after the last record read.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_expired_iterator_exception()) =>
                {
                    let request = client
                        .get_shard_iterator()
                        .stream_name(&shard.stream)
                        .shard_id(&shard.id);
                    let request = match &last_seq {
                        Some(seq) => request
                            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                            .starting_sequence_number(seq),
                        None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
                    };
                    iterator = request
                        .send()
                        .await
                        .with_context(|| format!("a new shard iterator for {source}"))?
                        .shard_iterator()
                        .map(str::to_string)
                        .ok_or_else(|| anyhow!("no shard iterator for {source}"))?;
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("reading {source}")),
            };
            for r in out.records() {
                let seq = r.sequence_number();
                last_seq = Some(seq.to_string());
                let line = String::from_utf8_lossy(r.data().as_ref()).into_owned();
                let record = match parse_event(&line) {
                    Ok(record) => record,
                    Err(e) => match on_bad {
                        BadLine::Stop => bail!("{source} record {seq}: {e}"),
                        BadLine::Skip => {
                            eprintln!("{source} record {seq}: skipped: {e}");
                            continue;
                        }
                    },
                };
                appender
                    .push_at(record, SourcePosition::new(source.clone(), seq)?)
                    .await
                    .with_context(|| format!("{source} record {seq}"))?;
                pushed += 1;
            }
            if !out.records().is_empty() {
                last_record = Instant::now();
            } else if idle_exit.is_some_and(|idle| last_record.elapsed() >= idle) {
                return Ok(pushed);
            }
            match out.next_shard_iterator() {
                Some(next) => iterator = next.to_string(),
                None => return Ok(pushed), // the shard was closed (resharded)
            }
            if out.records().is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(not(feature = "kinesis"))]
mod kinesis {
    pub(super) async fn run(
        _: &super::Args,
        _: &sales_history::SalesHistory,
        _: sales_history::Appender,
        _: &str,
    ) -> anyhow::Result<()> {
        anyhow::bail!("this build has no Kinesis support: build with `--features kinesis`")
    }
}

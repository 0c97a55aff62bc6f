//! What the library traces for one append, printed by `tracing-subscriber`: the `ensure` span,
//! the `commit` span with its attempts, and the scan's planning and bytes read. The library
//! installs no subscriber; a service installs its own (this one prints to stderr).
//!
//! ```text
//! cargo run --example trace_append -- [--warehouse DIR] [--rows N]
//! ```

#[path = "common/report.rs"]
mod report;

use clap::Parser;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{CatalogConfig, SalesHistory, TableOptions};

/// Appends sample rows to a local table and scans one tenant, with tracing on.
#[derive(Debug, Parser)]
#[command(name = "trace_append", verbatim_doc_comment)]
struct Args {
    /// Local warehouse directory (default: a temporary one).
    #[arg(long, value_name = "DIR")]
    warehouse: Option<std::path::PathBuf>,
    /// Rows to append.
    #[arg(long, value_name = "N", default_value_t = 500)]
    rows: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // This crate's events at DEBUG, everything else (sqlx, the AWS SDK) at WARN.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let only_ours = tracing_subscriber::filter::Targets::new()
        .with_target("sales_history", tracing::Level::DEBUG)
        .with_default(tracing::Level::WARN);
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(only_ours)
        .init();
    report::exit_on_error(run(args).await);
}

async fn run(args: Args) -> sales_history::Result<()> {
    let scratch = tempfile::tempdir().map_err(|source| sales_history::Error::Io {
        path: "temporary directory".into(),
        source,
    })?;
    let dir = args
        .warehouse
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let options = TableOptions::default().embedding_dimension(32);
    let table = SalesHistory::ensure_with(&CatalogConfig::local(&dir), "dev", options).await?;
    let rows = SampleGenerator::new(SampleConfig::default().embedding_dimension(32))
        .take_records(args.rows);
    let outcome = table.append(rows).commit_id("trace-demo-1").await?;
    println!("{outcome:?}");
    let n = table.scan().tenant("tenant-001").count().await?;
    let batches = table.scan().tenant("tenant-001").to_batches().await?;
    println!("tenant-001: {n} rows in {} batches", batches.len());
    Ok(())
}

//! Runs the seed's twelve sample queries (`sql/sales_history_queries.sql`) on the crate's own
//! SQL engine (DataFusion, feature `sql`) against any catalog, and prints each result with its
//! time. Read-only: it never creates the warehouse, the catalog or the table.
//!
//! ```text
//! cargo run --release --features sql --example run_queries -- [N] [--format table|json|csv]
//!     [--warehouse DIR | --catalog URI] [--stage STAGE]
//! ```
//!
//! - `N`: run only query N (1–12);
//! - `--format table` (default): a text table per query;
//! - `--format json`: one JSON object per line per query
//!   (`number`, `name`, `ms`, `columns`, `rows`);
//! - `--format csv`: per query a `# Query N: Name` line, a header line and the rows, then a
//!   blank line.

#[cfg(not(feature = "sql"))]
compile_error!(
    "run_queries needs the `sql` feature: cargo run --features sql --example run_queries"
);

#[path = "common/catalog_args.rs"]
mod catalog_args;
#[path = "common/report.rs"]
mod report;

use std::time::Instant;

use clap::{Parser, ValueEnum};
use sales_history::{SalesHistory, sample_queries};

/// Runs the seed's twelve sample queries (sql/sales_history_queries.sql), or only query N, on
/// the crate's SQL engine against the existing sales_history table and prints each result with
/// its time, as text tables, JSON lines or CSV. Reads the table, changes nothing; exits 1 if a
/// query fails.
#[derive(Debug, Parser)]
#[command(name = "run_queries", verbatim_doc_comment)]
struct Args {
    /// Run only this query (1-12).
    #[arg(value_name = "N", value_parser = clap::value_parser!(u8).range(1..=12))]
    query: Option<u8>,

    /// Output format: a text table per query; one JSON object per query and line (number,
    /// name, ms, columns, rows); or per query a `# Query N: Name` line, a CSV header line, the
    /// rows and a blank line.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,

    #[command(flatten)]
    catalog: catalog_args::CatalogArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let failed = report::exit_on_error(run(args).await);
    if failed > 0 {
        eprintln!("{failed} queries failed");
        std::process::exit(1);
    }
}

/// Runs the queries; the number that failed (each reported on stderr as it fails).
async fn run(args: Args) -> anyhow::Result<usize> {
    let only = args.query.map(usize::from);
    let format = args.format;
    let table = SalesHistory::open(&args.catalog.config(), &args.catalog.stage).await?;
    let mut failed = 0;
    for q in sample_queries() {
        if only.is_some_and(|n| n != q.number) {
            continue;
        }
        let start = Instant::now();
        let result = table.sql(&q.sql).await;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let batches = match result {
            Ok(b) => b,
            Err(e) => {
                failed += 1;
                eprintln!(
                    "Query {}: {} failed after {ms:.1} ms\n{}",
                    q.number,
                    q.name,
                    report::report(&e)
                );
                continue;
            }
        };
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        match format {
            Format::Json => println!("{}", output::json(q.number, &q.name, ms, &batches)?),
            Format::Csv => {
                println!("# Query {}: {}", q.number, q.name);
                print!("{}", output::csv(&batches)?);
                println!();
            }
            Format::Table => {
                println!(
                    "== Query {}: {} ({rows} rows, {ms:.1} ms)",
                    q.number, q.name
                );
                println!(
                    "{}",
                    datafusion::arrow::util::pretty::pretty_format_batches(&batches)?
                );
                println!();
            }
        }
    }
    Ok(failed)
}

mod output {
    use arrow_array::{Array, RecordBatch};
    use arrow_cast::display::{ArrayFormatter, FormatOptions};
    use arrow_schema::{ArrowError, DataType};

    fn names(batches: &[RecordBatch]) -> Vec<String> {
        batches
            .first()
            .map(|b| {
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One cell as text and whether it is numeric (`None` for NULL).
    type Cell = Option<(String, bool)>;

    /// Every cell as text (`None` for NULL), row by row.
    fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<Cell>>, ArrowError> {
        let options = FormatOptions::default();
        let mut out = Vec::new();
        for batch in batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for i in 0..batch.num_rows() {
                let row = batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| {
                        let numeric =
                            c.data_type().is_numeric() && *c.data_type() != DataType::Null;
                        c.is_valid(i).then(|| (f.value(i).to_string(), numeric))
                    })
                    .collect();
                out.push(row);
            }
        }
        Ok(out)
    }

    pub(crate) fn json(
        number: usize,
        name: &str,
        ms: f64,
        batches: &[RecordBatch],
    ) -> Result<String, ArrowError> {
        let rows: Vec<serde_json::Value> = rows(batches)?
            .into_iter()
            .map(|row| {
                serde_json::Value::Array(
                    row.into_iter()
                        .map(|cell| match cell {
                            None => serde_json::Value::Null,
                            Some((text, true)) => serde_json::from_str(&text)
                                .unwrap_or(serde_json::Value::String(text)),
                            Some((text, false)) => serde_json::Value::String(text),
                        })
                        .collect(),
                )
            })
            .collect();
        Ok(serde_json::json!({
            "number": number,
            "name": name,
            "ms": ms,
            "columns": names(batches),
            "rows": rows,
        })
        .to_string())
    }

    fn csv_field(text: &str) -> String {
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_string()
        }
    }

    pub(crate) fn csv(batches: &[RecordBatch]) -> Result<String, ArrowError> {
        let mut out = names(batches)
            .iter()
            .map(|n| csv_field(n))
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
        for row in rows(batches)? {
            let line: Vec<String> = row
                .into_iter()
                .map(|c| c.map_or(String::new(), |(t, _)| csv_field(&t)))
                .collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        Ok(out)
    }
}

//! Runs the seed's twelve sample queries (`sql/sales_history_queries.sql`) on the crate's own
//! SQL engine (DataFusion, feature `sql`) against any catalog, and prints each result with its
//! time.
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

#[path = "common/cli.rs"]
mod cli;

const USAGE: &str = "usage: run_queries [N] [--format table|json|csv] [--warehouse DIR | --catalog URI] [--stage STAGE]";

#[cfg(not(feature = "sql"))]
fn main() {
    let _ = cli::Cli::parse(USAGE);
    eprintln!(
        "run_queries needs the `sql` feature: cargo run --features sql --example run_queries"
    );
    std::process::exit(2);
}

#[cfg(feature = "sql")]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::time::Instant;

    use sales_history::{SalesHistory, sample_queries};

    let mut cli = cli::Cli::parse(USAGE);
    let format: String = cli.value("--format").unwrap_or_else(|| "table".to_string());
    if !["table", "json", "csv"].contains(&format.as_str()) {
        eprintln!("error: --format must be table, json or csv\n\n{USAGE}");
        std::process::exit(2);
    }
    let (config, stage) = (cli.catalog.clone(), cli.stage.clone());
    let rest = cli.finish();
    let only: Option<usize> = match rest.as_slice() {
        [] => None,
        [n] => match n.parse() {
            Ok(n) if (1..=12).contains(&n) => Some(n),
            _ => {
                eprintln!("error: query number must be 1-12, got `{n}`\n\n{USAGE}");
                std::process::exit(2);
            }
        },
        _ => {
            eprintln!("error: at most one query number\n\n{USAGE}");
            std::process::exit(2);
        }
    };

    let table = SalesHistory::open(&config, &stage).await?;
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
                    "Query {}: {} failed after {ms:.1} ms: {e}",
                    q.number, q.name
                );
                continue;
            }
        };
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        match format.as_str() {
            "json" => println!("{}", output::json(q.number, &q.name, ms, &batches)?),
            "csv" => {
                println!("# Query {}: {}", q.number, q.name);
                print!("{}", output::csv(&batches)?);
                println!();
            }
            _ => {
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
    if failed > 0 {
        eprintln!("{failed} queries failed");
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(feature = "sql")]
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

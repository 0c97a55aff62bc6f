//! "Comparable sales": the nearest neighbours of a stored sale (or of a vector read from a JSON
//! file), with their prices — what a pricing service asks before pricing a new item.
//!
//! ```text
//! cargo run --release --example similar_sales -- [--product-id ID | --vector-file FILE.json] \
//!     [--k 10] [--metric cosine|dot|l2] [--tenant T] [--category C] [--month YYYY-MM] \
//!     [--warehouse DIR | --catalog URI] [--stage STAGE]
//! ```

#[path = "common/catalog_args.rs"]
mod catalog_args;
#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow_array::Array;
use clap::{Parser, ValueEnum};
use sales_history::{Column, Metric, SalesHistory, ScanFilter};

/// Comparable sales: finds the --k sales whose embeddings are nearest to a stored sale's (the
/// one with --product-id, else the first stored sale with an embedding) or to a vector read
/// from a JSON file, optionally only within a tenant, category or month, and prints them with
/// their prices and the median and range of those prices. Reads the table, changes nothing.
#[derive(Debug, Parser)]
#[command(name = "similar_sales", verbatim_doc_comment)]
struct Args {
    /// Query with the embedding of this stored sale.
    #[arg(long, value_name = "ID", conflicts_with = "vector_file")]
    product_id: Option<String>,

    /// Query with this vector: a JSON array of numbers, of the table's embedding length.
    #[arg(long, value_name = "FILE")]
    vector_file: Option<PathBuf>,

    /// Number of neighbours.
    #[arg(long, value_name = "N", default_value = "10", value_parser = number::parse::<NonZeroUsize>)]
    k: NonZeroUsize,

    /// Similarity: cosine and dot (higher is nearer) or Euclidean distance (lower is nearer).
    #[arg(long, value_enum, default_value_t = MetricArg::Cosine)]
    metric: MetricArg,

    /// Only sales of this tenant.
    #[arg(long, value_name = "T")]
    tenant: Option<String>,

    /// Only sales in this category.
    #[arg(long, value_name = "C")]
    category: Option<String>,

    /// Only sales sold in this month.
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_month)]
    month: Option<(i32, u32)>,

    #[command(flatten)]
    catalog: catalog_args::CatalogArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MetricArg {
    Cosine,
    Dot,
    L2,
}

impl From<MetricArg> for Metric {
    fn from(m: MetricArg) -> Metric {
        match m {
            MetricArg::Cosine => Metric::Cosine,
            MetricArg::Dot => Metric::Dot,
            MetricArg::L2 => Metric::L2,
        }
    }
}

fn parse_month(text: &str) -> Result<(i32, u32), String> {
    let bad = || format!("`{text}` is not a month: use YYYY-MM, e.g. 2025-03");
    let (y, m) = text.split_once('-').ok_or_else(bad)?;
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u32 = m.parse().map_err(|_| bad())?;
    if y.len() != 4 || !(1..=12).contains(&month) {
        return Err(bad());
    }
    Ok((year, month))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    report::exit_on_error(run(args).await);
}

async fn run(args: Args) -> anyhow::Result<()> {
    let k = args.k.get();
    let metric = Metric::from(args.metric);
    let mut filter = ScanFilter::new();
    if let Some(t) = args.tenant {
        filter = filter.tenant(t);
    }
    if let Some(c) = args.category {
        filter = filter.category(c);
    }
    if let Some((y, m)) = args.month {
        filter = filter.year_month(y, m);
    }
    let table = SalesHistory::open(&args.catalog.config(), &args.catalog.stage).await?;

    // The query: a vector from a file, a named stored sale, or the first stored sale.
    let (query, label) = if let Some(path) = &args.vector_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --vector-file {}", path.display()))?;
        let v: Vec<f64> = serde_json::from_str(&text).with_context(|| {
            format!(
                "--vector-file {} is not a JSON array of numbers",
                path.display()
            )
        })?;
        (v, format!("vector from {}", path.display()))
    } else {
        find_sale(&table, args.product_id.as_deref()).await?
    };
    let start = Instant::now();
    let found = table
        .similar_to(query, k)
        .metric(metric)
        .filter(filter)
        .await?;
    println!(
        "{k} nearest sales to {label} by {metric:?} in {:.1?}:",
        start.elapsed()
    );
    for s in &found {
        let r = &s.record;
        println!(
            "  {:>8.4}  {:<24} {:<10} {:<14} {:<9} {:>10}  {}",
            s.score,
            r.product_id,
            r.category.as_deref().unwrap_or("-"),
            r.brand.as_deref().unwrap_or("-"),
            r.condition.as_deref().unwrap_or("-"),
            r.sold_price,
            r.sold_date.format("%Y-%m-%d")
        );
    }
    let mut prices: Vec<i64> = found.iter().map(|s| s.record.sold_price.cents()).collect();
    prices.sort_unstable();
    if let (Some(lo), Some(hi)) = (prices.first(), prices.last()) {
        let median = prices[prices.len() / 2];
        println!(
            "comparable prices: median {}.{:02}, range {}.{:02} – {}.{:02}",
            median / 100,
            median % 100,
            lo / 100,
            lo % 100,
            hi / 100,
            hi % 100
        );
    }
    Ok(())
}

/// The embedding of the named sale (or of the first stored sale with one), with a label.
async fn find_sale(
    table: &SalesHistory,
    product: Option<&str>,
) -> anyhow::Result<(Vec<f64>, String)> {
    use arrow_array::cast::AsArray;
    use futures::TryStreamExt;
    let mut stream = table
        .scan()
        .select([Column::ProductId, Column::Embedding])
        .stream()
        .await?;
    while let Some(batch) = stream.try_next().await? {
        let ids = batch.column(0).as_string::<i32>();
        let emb = batch.column(1).as_list::<i32>();
        for i in 0..batch.num_rows() {
            if product.is_some_and(|p| p != ids.value(i)) || emb.is_null(i) {
                continue;
            }
            let values = emb.value(i);
            let v = values
                .as_primitive::<arrow_array::types::Float64Type>()
                .values()
                .to_vec();
            return Ok((v, format!("sale {}", ids.value(i))));
        }
    }
    match product {
        Some(p) => bail!("no stored sale with product id `{p}` and an embedding"),
        None => bail!("no stored sale has an embedding"),
    }
}

//! "Comparable sales": the nearest neighbours of a stored sale (or of a vector read from a JSON
//! file), with their prices — what a pricing service asks before pricing a new item.
//!
//! ```text
//! cargo run --release --example similar_sales -- [--product-id ID | --vector-file FILE.json] \
//!     [--k 10] [--metric cosine|dot|l2] [--tenant T] [--category C] [--month YYYY-MM] \
//!     [--warehouse DIR | --catalog URI] [--stage STAGE]
//! ```

#[path = "common/cli.rs"]
mod cli;

use std::time::Instant;

use arrow_array::Array;
use sales_history::{Column, Metric, SalesHistory, ScanFilter};

const USAGE: &str = "usage: similar_sales [--product-id ID | --vector-file FILE] [--k N] [--metric cosine|dot|l2] [--tenant T] [--category C] [--month YYYY-MM]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cli = cli::Cli::parse(USAGE);
    let product: Option<String> = cli.value("--product-id");
    let vector_file: Option<String> = cli.value("--vector-file");
    let k: usize = cli.value("--k").unwrap_or(10);
    let metric = match cli.value::<String>("--metric").as_deref() {
        None | Some("cosine") => Metric::Cosine,
        Some("dot") => Metric::Dot,
        Some("l2") => Metric::L2,
        Some(other) => return Err(format!("unknown metric {other} (cosine, dot, l2)").into()),
    };
    let mut filter = ScanFilter::new();
    if let Some(t) = cli.value::<String>("--tenant") {
        filter = filter.tenant(t);
    }
    if let Some(c) = cli.value::<String>("--category") {
        filter = filter.category(c);
    }
    if let Some(m) = cli.value::<String>("--month") {
        let (y, mo) = m.split_once('-').ok_or("--month is YYYY-MM")?;
        filter = filter.year_month(y.parse()?, mo.parse()?);
    }
    let (catalog, stage) = (cli.catalog.clone(), cli.stage.clone());
    cli.finish();
    let table = SalesHistory::open(&catalog, &stage).await?;

    // The query: a vector from a file, a named stored sale, or the first stored sale.
    let (query, label) = if let Some(path) = vector_file {
        let v: Vec<f64> = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        (v, format!("vector from {path}"))
    } else {
        find_sale(&table, product.as_deref()).await?
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
) -> Result<(Vec<f64>, String), Box<dyn std::error::Error>> {
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
    Err(format!("no stored sale {} with an embedding", product.unwrap_or("")).into())
}

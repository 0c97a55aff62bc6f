//! Similarity-search benchmark: top-k (k = 10, cosine) over a table of N rows with 1024-dim
//! embeddings, without and with a one-month filter, beside a NumPy brute-force baseline over
//! the same data read by pyiceberg, in the same run (interleaved repetitions, medians).
//!
//! ```text
//! cargo run --release --example bench_similar -- [--rows 100000] [--reps 5] [--warehouse DIR]
//! ```
//! The Python baseline needs the test venv: `PY=$(bash scripts/venv.sh | tail -n1)`, passed as
//! `--python $PY` (default: `$SALES_HISTORY_PYTHON`, else `python3`).

#[path = "common/catalog_args.rs"]
mod catalog_args;
#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;
#[path = "common/stats.rs"]
mod stats;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{TimeZone, Utc};
use clap::Parser;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{CatalogConfig, EmbeddingDecoder, Metric, SalesHistory, ScanFilter};

use stats::upper_median_duration;

/// Similarity-search benchmark: top-k cosine search over --rows rows with 1024-dim embeddings,
/// over all rows and within one month, beside a NumPy brute-force baseline over the same data
/// read by pyiceberg, interleaved, medians of --reps. Runs on a scratch local warehouse that is
/// removed afterwards, or on --warehouse DIR (filled up to --rows rows and kept).
#[derive(Debug, Parser)]
#[command(name = "bench_similar", verbatim_doc_comment)]
struct Args {
    /// Rows in the table (missing rows are generated and appended).
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = number::parse::<usize>)]
    rows: usize,

    /// Timed repetitions of each search.
    #[arg(long, value_name = "N", default_value = "5", value_parser = number::parse::<NonZeroUsize>)]
    reps: NonZeroUsize,

    /// Neighbours per search.
    #[arg(long, value_name = "N", default_value = "10", value_parser = number::parse::<NonZeroUsize>)]
    k: NonZeroUsize,

    /// Python with numpy and pyiceberg for the baseline, e.g. the test venv's (default:
    /// $SALES_HISTORY_PYTHON, else python3).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,

    /// Only run our search over `all` rows or one `month` --reps times and print each time
    /// (no NumPy baseline): a loop to profile.
    #[arg(long, value_name = "all|month")]
    profile: Option<String>,

    // --warehouse DIR (or a local --catalog) runs on that warehouse instead of a scratch one.
    #[command(flatten)]
    catalog: catalog_args::CatalogArgs,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    report::exit_on_error(run(args).await);
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (rows, reps, k) = (args.rows, args.reps.get(), args.k.get());
    let python = args
        .python
        .or_else(|| std::env::var_os("SALES_HISTORY_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let stage = args.catalog.stage.as_str();
    let explicit = args.catalog.warehouse.is_some() || args.catalog.catalog.is_some();
    let (catalog, scratch) = if explicit {
        (args.catalog.config(), None)
    } else {
        let dir = scratch_dir()?;
        (CatalogConfig::local(&dir), Some(dir))
    };
    let warehouse = match &catalog {
        CatalogConfig::Local { warehouse } => {
            std::fs::canonicalize(warehouse).unwrap_or(warehouse.clone())
        }
        _ => bail!("bench_similar runs on the local catalog (--warehouse DIR)"),
    };

    let table = SalesHistory::ensure(&catalog, stage).await?;
    let have = table.scan().count().await? as usize;
    if have < rows {
        let mut generator = SampleGenerator::new(SampleConfig::default().seed(7));
        let mut left = rows - have;
        let t0 = Instant::now();
        while left > 0 {
            let n = left.min(25_000);
            table.append(generator.take_records(n)).await?;
            left -= n;
        }
        eprintln!("loaded {} rows in {:.1?}", rows - have, t0.elapsed());
    }
    let total = table.scan().count().await?;
    let query = SampleGenerator::new(SampleConfig::default().seed(99))
        .next_record()
        .embedding
        .context("the sample generator made a row without an embedding")?;
    let query_file = warehouse.join("bench_query.json");
    std::fs::write(&query_file, serde_json::to_string(&query)?)
        .with_context(|| format!("cannot write {}", query_file.display()))?;
    let (m_start, m_end) = (
        Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0)
            .single()
            .context("2025-03-01 as a UTC date")?,
        Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0)
            .single()
            .context("2025-04-01 as a UTC date")?,
    );
    let month_rows = table.scan().sold_between(m_start, m_end).count().await?;

    if let Some(which) = args.profile.as_deref() {
        let filter = match which {
            "all" => ScanFilter::new(),
            "month" => ScanFilter::new().sold_between(m_start, m_end),
            other => bail!("--profile takes all or month, not {other}"),
        };
        for _ in 0..reps {
            let t0 = Instant::now();
            let r = table
                .similar_to(query.clone(), k)
                .filter(filter.clone())
                .await?;
            println!(
                "{which}: {:.1} ms, {} found",
                t0.elapsed().as_secs_f64() * 1e3,
                r.len()
            );
        }
        return Ok(());
    }
    let (mut full, mut month, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
    let mut tops = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t0 = Instant::now();
        let r = table
            .similar_to(query.clone(), k)
            .metric(Metric::Cosine)
            .await?;
        full.push(t0.elapsed());
        // The same search with parquet-rs's embedding decoder: the decoder's baseline.
        let t1 = Instant::now();
        let b = table
            .similar_to(query.clone(), k)
            .metric(Metric::Cosine)
            .embedding_decoder(EmbeddingDecoder::Parquet)
            .await?;
        baseline.push(t1.elapsed());
        anyhow::ensure!(
            b.iter()
                .map(|s| &s.record.product_id)
                .eq(r.iter().map(|s| &s.record.product_id)),
            "the two embedding decoders found different neighbours"
        );
        tops.0 = r
            .iter()
            .map(|s| s.record.product_id.clone())
            .collect::<Vec<_>>();
        let t0 = Instant::now();
        let r = table
            .similar_to(query.clone(), k)
            .filter(ScanFilter::new().sold_between(m_start, m_end))
            .await?;
        month.push(t0.elapsed());
        tops.1 = r
            .iter()
            .map(|s| s.record.product_id.clone())
            .collect::<Vec<_>>();
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/bench_similar_numpy.py");
    let out = std::process::Command::new(&python)
        .args([
            script,
            "--warehouse",
            &warehouse.display().to_string(),
            "--namespace",
            &table.namespace(),
            "--query-file",
            &query_file.display().to_string(),
            "--k",
            &k.to_string(),
            "--month-start",
            &m_start.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string(),
            "--month-end",
            &m_end.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string(),
            "--reps",
            &reps.to_string(),
        ])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let py: Option<serde_json::Value> = if out.status.success() {
        serde_json::from_slice(&out.stdout).ok()
    } else {
        eprintln!(
            "numpy baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        None
    };
    println!(
        "similarity search, k = {k}, cosine, 1024-dim embeddings, {total} rows ({month_rows} in 2025-03), medians of {reps}"
    );
    println!(
        "{:<22} {:>12} {:>14} {:>14} {:>10} {:>9}",
        "scan", "us (ms)", "us rows/s", "numpy (ms)", "ratio", "same top"
    );
    for (name, times, rows_scanned, key, top) in [
        ("all rows", full, total as usize, "full", &tops.0),
        (
            "all rows, parquet-rs",
            baseline,
            total as usize,
            "full",
            &tops.0,
        ),
        (
            "one month (2025-03)",
            month,
            month_rows as usize,
            "month",
            &tops.1,
        ),
    ] {
        let us = upper_median_duration(&times);
        let np = py.as_ref().and_then(|p| p[key]["median_s"].as_f64());
        let same = py.as_ref().map(|p| {
            let theirs: Vec<String> = p[key]["top"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t[0].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            theirs == *top
        });
        println!(
            "{:<22} {:>12.1} {:>14.0} {:>14} {:>10} {:>9}",
            name,
            us.as_secs_f64() * 1e3,
            rows_scanned as f64 / us.as_secs_f64(),
            np.map_or("-".to_string(), |s| format!("{:.1}", s * 1e3)),
            np.map_or("-".to_string(), |s| format!("{:.2}x", s / us.as_secs_f64())),
            same.map_or("-".to_string(), |b| b.to_string()),
        );
    }
    println!("ratio = numpy time / our time (higher is better for us)");
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

fn scratch_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "sales-history-bench-similar-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

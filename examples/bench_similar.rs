//! Similarity-search benchmark: top-k (k = 10, cosine) over a table of N rows with 1024-dim
//! embeddings, without and with a one-month filter, beside a NumPy brute-force baseline over
//! the same data read by pyiceberg, in the same run (interleaved repetitions, medians).
//!
//! ```text
//! cargo run --release --example bench_similar -- [--rows 100000] [--reps 5] [--warehouse DIR]
//! ```
//! The Python baseline needs the test venv: `PY=$(bash scripts/venv.sh | tail -n1)`, passed as
//! `--python $PY` (default: `python3`).

#[path = "common/cli.rs"]
mod cli;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{Metric, SalesHistory, ScanFilter};

const USAGE: &str =
    "usage: bench_similar [--rows N] [--reps N] [--k N] [--python PATH] [--warehouse DIR]";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cli = cli::Cli::parse(USAGE);
    let rows: usize = cli.value("--rows").unwrap_or(100_000);
    let reps: usize = cli.value::<usize>("--reps").unwrap_or(5).max(1);
    let k: usize = cli.value("--k").unwrap_or(10);
    let python: String = cli
        .value("--python")
        .unwrap_or_else(|| "python3".to_string());
    let explicit = std::env::args().any(|a| a == "--warehouse" || a == "--catalog");
    let scratch = tempfile_dir()?;
    let catalog = if explicit {
        cli.catalog.clone()
    } else {
        sales_history::CatalogConfig::local(&scratch)
    };
    let stage = cli.stage.clone();
    cli.finish();
    let warehouse = match &catalog {
        sales_history::CatalogConfig::Local { warehouse } => {
            std::fs::canonicalize(warehouse).unwrap_or(warehouse.clone())
        }
        _ => return Err("bench_similar runs on the local catalog (--warehouse DIR)".into()),
    };

    let table = SalesHistory::ensure(&catalog, &stage).await?;
    let have = table.scan().count().await? as usize;
    if have < rows {
        let mut generator = SampleGenerator::new(SampleConfig::default().with_seed(7));
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
    let query = SampleGenerator::new(SampleConfig::default().with_seed(99))
        .next_record()
        .embedding
        .ok_or("sample has no embedding")?;
    let query_file = warehouse.join("bench_query.json");
    std::fs::write(&query_file, serde_json::to_string(&query)?)?;
    let (m_start, m_end) = (
        Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0)
            .single()
            .ok_or("date")?,
        Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0)
            .single()
            .ok_or("date")?,
    );
    let month_rows = table.scan().sold_between(m_start, m_end).count().await?;

    let (mut full, mut month) = (Vec::new(), Vec::new());
    let mut tops = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t0 = Instant::now();
        let r = table
            .similar_to(query.clone(), k)
            .metric(Metric::Cosine)
            .await?;
        full.push(t0.elapsed());
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
        .output()?;
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
            "one month (2025-03)",
            month,
            month_rows as usize,
            "month",
            &tops.1,
        ),
    ] {
        let us = median(times);
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
    if !explicit {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!(
        "sales-history-bench-similar-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

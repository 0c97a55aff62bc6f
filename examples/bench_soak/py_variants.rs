//! The pyiceberg variants: tables made by the crate, appended to by
//! `python/bench_soak_pyiceberg.py` (one process, variants taking turns), its JSON rows read
//! as they come.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::soak::Row;
use crate::{Res, STAGE, Settings, TENANT, Variant, table_setup};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/python/bench_soak_pyiceberg.py"
);

pub async fn run(
    settings: &Settings,
    variants: &[Variant],
    root: &Path,
    python: &Path,
) -> Res<Vec<Row>> {
    let mut args: Vec<String> = Vec::new();
    for &v in variants {
        let warehouse = root.join(v.name());
        table_setup::create(settings, v, &warehouse).await?;
        args.push("--variant".into());
        args.push(format!("{}={}", v.name(), warehouse.display()));
    }
    // A pool of rows the script cycles through: enough for 50 distinct commits.
    let pool = root.join("py-pool.parquet");
    let pool_rows = settings.rows * (settings.py_commits.min(50) as usize).max(1);
    table_setup::write_pool(settings, pool_rows, &pool)?;
    let iso = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let mut child = tokio::process::Command::new(python)
        .arg(SCRIPT)
        .args(["--pool", pool.to_str().context("pool path is not UTF-8")?])
        .args(["--rows", &settings.rows.to_string()])
        .args(["--commits", &settings.py_commits.to_string()])
        .args(["--every", &settings.every.to_string()])
        .args(["--reps", &settings.reps.to_string()])
        .args(["--stage", STAGE, "--tenant", TENANT])
        .args(["--month-start", &iso(settings.month_start)])
        .args(["--month-end", &iso(settings.month_end)])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let started = Instant::now();
    let mut rows = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{SCRIPT} printed `{line}`"))?;
        let row = Row::from_json(&value)?;
        eprintln!(
            "[{:>7.1}s] {:<8} {:>6} commits: p50 {:.1} ms, p99 {:.1} ms, plan {:.1} ms, count {:.1} ms, metadata.json {} B, metadata dir {} files {} B, {} data files, {} manifests, {} snapshots",
            started.elapsed().as_secs_f64(),
            row.variant,
            row.commits,
            row.commit_p50_ms,
            row.commit_p99_ms,
            row.plan_ms,
            row.count_ms,
            row.metadata_json_bytes,
            row.metadata_files,
            row.metadata_bytes,
            row.live_data_files,
            row.manifests,
            row.snapshots
        );
        rows.push(row);
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!("{SCRIPT} failed ({status})");
    }
    Ok(rows)
}

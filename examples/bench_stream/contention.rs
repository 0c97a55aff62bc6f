//! Contention: writer processes (this program re-executed with the hidden `--writer`)
//! streaming into one table, on the local catalog or the Glue + S3 emulator.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use sales_history::{CatalogConfig, SalesHistory, SourcePosition, TableOptions};
use serde_json::{Value, json};

use crate::data::pool;
use crate::flush_log;
use crate::stats::Dist;
use crate::{Args, Cli, DIMENSION, POOL, Res, STAGE};

/// The longest the contention part waits for its writer processes.
const WRITER_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The emulator's test credentials (never real ones).
const EMULATOR_KEY_ID: &str = "testing";
const EMULATOR_SECRET: &str = "testing-secret-key";
const EMULATOR_REGION: &str = "us-east-1";

/// Child mode: open the table, build rows, say READY, wait for the start line, stream, report.
pub async fn writer_main(cli: &Cli, args: &Args) -> Res<()> {
    let catalog = cli.catalog.as_deref().context("--writer needs --catalog")?;
    let config: CatalogConfig = catalog.parse()?;
    let source = cli.source.clone().unwrap_or_else(|| "writer".to_string());
    let table = SalesHistory::open(&config, &cli.stage).await?;
    let rows = args.writer_rows;
    let every = args.writer_flush_rows.min(rows);
    let pool = pool(cli.seed, args.months, POOL.min(rows));
    // Only explicit flushes commit: limits above one flush's rows, age far away.
    let room = (every + 1) * (DIMENSION * 8 + 4096);
    let appender = table
        .appender()
        .max_rows(every + 1)
        .max_bytes(room)
        .max_buffered_bytes(room)
        .max_age(Duration::from_secs(3600))
        .start()?;
    println!("READY");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if line.trim() != "GO" {
        bail!("writer: expected GO on stdin, got {line:?}");
    }
    flush_log::take();
    let begin = Instant::now();
    let mut commit_s = Vec::new();
    let mut attempts = Vec::new();
    let mut commit_at_s = Vec::new();
    for i in 0..rows {
        let position = SourcePosition::at(&source, i as u64)?;
        appender
            .push_at(pool[i % pool.len()].clone(), position)
            .await?;
        if (i + 1) % every == 0 || i + 1 == rows {
            let t0 = Instant::now();
            if args.writer_refresh {
                table.refresh().await?;
            }
            let summary = appender.flush().await?;
            commit_s.push(t0.elapsed().as_secs_f64());
            commit_at_s.push(begin.elapsed().as_secs_f64());
            attempts.push(summary.map_or(0, |s| s.attempts));
        }
    }
    let stats = appender.stats();
    appender.close().await?;
    let elapsed_s = begin.elapsed().as_secs_f64();
    let cs = table.commit_stats();
    let write_commit_s: Vec<f64> = flush_log::take()
        .iter()
        .map(|f| f.ms as f64 / 1e3)
        .collect();
    let out = json!({
        "source": source, "rows": rows, "committed_rows": stats.committed_rows,
        "commits": stats.commits, "elapsed_s": elapsed_s, "commit_s": commit_s,
        "commit_at_s": commit_at_s, "attempts": attempts, "write_commit_s": write_commit_s,
        "conflicts": cs.conflicts, "throttled": cs.throttled, "catalog_commits": cs.commits,
    });
    println!("RESULT {out}");
    std::io::stdout().flush()?;
    Ok(())
}

/// Where a contention round writes: a catalog for the parent, its string for the children,
/// and the environment the children need.
pub struct Target {
    pub kind: &'static str,
    pub config: CatalogConfig,
    /// Glue databases are shared by all buckets: every round gets its own stage.
    pub stage: String,
    pub catalog: String,
    pub env: Vec<(&'static str, String)>,
}

pub fn local_target(dir: &Path) -> Target {
    let config = CatalogConfig::local(dir);
    Target {
        kind: "SQLite (local)",
        stage: STAGE.to_string(),
        catalog: dir.display().to_string(),
        config,
        env: Vec::new(),
    }
}

/// Checks that `url` points at this machine (the benchmark talks to nothing else).
fn loopback(url: &str) -> Res<(String, u16)> {
    let parsed = url::Url::parse(url).with_context(|| format!("--glue-endpoint {url}"))?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    let ok = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1");
    if !ok || parsed.scheme() != "http" {
        bail!("--glue-endpoint must be http://127.0.0.1:PORT (the emulator), got {url}");
    }
    let port = parsed
        .port_or_known_default()
        .context("--glue-endpoint has no port")?;
    Ok((host, port))
}

/// Creates an S3 bucket on the emulator (it accepts an unsigned path-style PUT).
fn create_bucket(host: &str, port: u16, bucket: &str) -> Res<()> {
    use std::io::Read;
    let addr = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let mut s = std::net::TcpStream::connect((addr.trim_matches(['[', ']']), port))
        .with_context(|| format!("cannot reach the emulator at {host}:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    if !resp.starts_with("HTTP/1.1 200") && !resp.starts_with("HTTP/1.0 200") {
        bail!(
            "create bucket {bucket}: {}",
            resp.lines().next().unwrap_or("")
        );
    }
    Ok(())
}

#[cfg(feature = "glue")]
pub fn glue_target(endpoint: &str, bucket: &str, stage: String) -> Res<Target> {
    use sales_history::{AwsCredentials, GlueConfig};
    let (host, port) = loopback(endpoint)?;
    create_bucket(&host, port, bucket)?;
    let endpoint = endpoint.trim_end_matches('/');
    let glue = GlueConfig::new(EMULATOR_REGION, format!("s3://{bucket}/warehouse"))
        .glue_endpoint(endpoint)
        .s3_endpoint(endpoint);
    // The string form carries no credentials: the children get the emulator's in their env.
    let catalog = CatalogConfig::from(glue.clone()).to_string();
    let config = CatalogConfig::from(
        glue.credentials(AwsCredentials::new(EMULATOR_KEY_ID, EMULATOR_SECRET)),
    );
    Ok(Target {
        kind: "Glue (moto emulator)",
        config,
        stage,
        catalog,
        env: vec![
            ("AWS_ACCESS_KEY_ID", EMULATOR_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", EMULATOR_SECRET.to_string()),
            ("AWS_REGION", EMULATOR_REGION.to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ],
    })
}

#[cfg(not(feature = "glue"))]
pub fn glue_target(endpoint: &str, bucket: &str, stage: String) -> Res<Target> {
    let (host, port) = loopback(endpoint)?;
    let _ = (host, port, bucket, stage, create_bucket);
    let _ = (EMULATOR_KEY_ID, EMULATOR_SECRET, EMULATOR_REGION);
    bail!("--glue-endpoint needs the `glue` feature (cargo run --features glue ...)")
}

#[derive(Debug, Clone)]
pub struct Contention {
    pub catalog: String,
    pub writers: usize,
    pub rows: u64,
    pub commits: usize,
    pub wall_s: f64,
    pub commits_per_s: f64,
    pub rows_per_s: f64,
    pub conflicts: u64,
    pub throttled: u64,
    pub commit: Dist,
    /// The appender's timing of the same flushes: write + catalog commit (with retries).
    pub write_commit: Dist,
    pub table_rows: u64,
    pub snapshots: usize,
    pub per_writer: Vec<Value>,
}

impl Contention {
    pub fn exact(&self) -> bool {
        self.table_rows == self.rows
    }

    pub fn to_json(&self) -> Value {
        json!({
            "catalog": self.catalog, "writers": self.writers, "rows": self.rows,
            "commits": self.commits, "wall_s": self.wall_s, "commits_per_s": self.commits_per_s,
            "rows_per_s": self.rows_per_s, "conflicts_retried": self.conflicts,
            "throttled_retried": self.throttled, "commit_latency": self.commit.to_json(),
            "write_commit_latency": self.write_commit.to_json(),
            "table_rows": self.table_rows, "rows_exact": self.exact(),
            "snapshots": self.snapshots, "per_writer": self.per_writer,
        })
    }
}

struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub async fn contention_round(args: &Args, target: &Target, writers: usize) -> Res<Contention> {
    let options = TableOptions::default().embedding_dimension(DIMENSION);
    SalesHistory::ensure_with(&target.config, &target.stage, options).await?;
    let exe = std::env::current_exe()?;
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut children = Vec::new();
    for w in 0..writers {
        let mut cmd = Command::new(&exe);
        cmd.args(["--writer", "--catalog", &target.catalog])
            .args(["--stage", &target.stage])
            .args(["--source", &format!("bench:writer-{w}")])
            .args(["--seed", &(w as u64 + 1).to_string()])
            .args(["--writer-rows", &args.writer_rows.to_string()])
            .args(["--writer-flush-rows", &args.writer_flush_rows.to_string()])
            .args(args.writer_refresh.then_some("--writer-refresh"))
            .args(["--months", &args.months.to_string()])
            .envs(target.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("cannot start a writer process")?;
        let stdout = child.stdout.take().context("writer stdout")?;
        let stdin = child.stdin.take();
        children.push(Writer { child, stdin });
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send((w, Some(l))).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send((w, None));
        });
    }
    drop(tx);
    let deadline = Instant::now() + WRITER_TIMEOUT;
    let next = |what: &str| -> Res<(usize, Option<String>)> {
        let left = deadline.saturating_duration_since(Instant::now());
        rx.recv_timeout(left)
            .map_err(|_| anyhow!("writers did not {what} within {WRITER_TIMEOUT:?}"))
    };
    let mut ready = 0;
    while ready < writers {
        match next("start")? {
            (_, Some(l)) if l == "READY" => ready += 1,
            (w, Some(l)) => bail!("writer {w} said {l:?} before READY"),
            (w, None) => bail!("writer {w} ended before READY (see its stderr)"),
        }
    }
    let go = Instant::now();
    for c in &mut children {
        if let Some(mut stdin) = c.stdin.take() {
            writeln!(stdin, "GO")?;
        }
    }
    let mut results: Vec<Option<Value>> = vec![None; writers];
    let mut done = 0;
    let mut last_result = go;
    while done < writers {
        match next("finish")? {
            (w, Some(l)) => {
                if let Some(body) = l.strip_prefix("RESULT ") {
                    results[w] = Some(serde_json::from_str(body)?);
                    last_result = Instant::now();
                }
            }
            (w, None) => {
                done += 1;
                if results[w].is_none() {
                    bail!("writer {w} ended without a result (see its stderr)");
                }
            }
        }
    }
    for c in &mut children {
        let status = c.child.wait()?;
        if !status.success() {
            bail!("a writer process failed ({status})");
        }
    }
    let wall_s = (last_result - go).as_secs_f64();
    let results: Vec<Value> = results.into_iter().flatten().collect();
    let mut commit_s = Vec::new();
    let mut write_commit_s = Vec::new();
    let (mut rows, mut conflicts, mut throttled) = (0u64, 0u64, 0u64);
    for r in &results {
        rows += r["committed_rows"].as_u64().unwrap_or(0);
        conflicts += r["conflicts"].as_u64().unwrap_or(0);
        throttled += r["throttled"].as_u64().unwrap_or(0);
        if let Some(v) = r["commit_s"].as_array() {
            commit_s.extend(v.iter().filter_map(Value::as_f64));
        }
        if let Some(v) = r["write_commit_s"].as_array() {
            write_commit_s.extend(v.iter().filter_map(Value::as_f64));
        }
    }
    let reader = SalesHistory::open(&target.config, &target.stage).await?;
    let table_rows = reader.scan().count().await?;
    let snapshots = reader.snapshots().await?.len();
    let commits = commit_s.len();
    Ok(Contention {
        catalog: target.kind.to_string(),
        writers,
        rows,
        commits,
        wall_s,
        commits_per_s: commits as f64 / wall_s,
        rows_per_s: rows as f64 / wall_s,
        conflicts,
        throttled,
        commit: Dist::of(&commit_s),
        write_commit: Dist::of(&write_commit_s),
        table_rows,
        snapshots,
        per_writer: results,
    })
}

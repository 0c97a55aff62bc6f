//! The ingest service as a real process: kill -9 mid-stream, restart on the same input, and
//! every event is in the table exactly once; two services with different sources side by side.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sales_history::{CatalogConfig, SaleRecord, SalesHistory};

use crate::support::{DIM, sample};

/// One sale event as the service reads it.
fn event_line(r: &SaleRecord) -> String {
    serde_json::json!({
        "product_id": r.product_id,
        "tenant_id": r.tenant_id,
        "sold_price": r.sold_price.to_string(),
        "sold_date": r.sold_date.to_rfc3339(),
        "category": r.category,
        "brand": r.brand,
        "embedding": r.embedding,
        "source": "kill-test",
    })
    .to_string()
}

fn events(n: usize, seed: u64) -> Vec<String> {
    sample(n, DIM, seed).iter().map(event_line).collect()
}

fn service(catalog: &[String], source: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(crate::support::example("ingest_service"));
    cmd.args(catalog)
        .args(["--stage", "ingest", "--source-name", source])
        .args(["--embedding-dimension", &DIM.to_string()])
        .args(["--max-rows", "300", "--max-age", "200ms", "--quiet"])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn finish(child: Child, what: &str) -> String {
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn committed(config: &CatalogConfig, source: &str) -> u64 {
    match SalesHistory::open(config, "ingest").await {
        Ok(t) => t
            .last_committed_position(source)
            .await
            .ok()
            .flatten()
            .and_then(|p| p.as_u64())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Kill -9 a service mid-stream, restart it on the whole input; returns (sent, found, dupes).
async fn kill_and_resume(
    config: &CatalogConfig,
    catalog_args: &[String],
    env: &[(&str, &str)],
) -> (usize, usize, usize) {
    let lines = events(3000, 41);
    // First run: fed half the input through a pipe, killed once something is committed.
    let mut first = service(catalog_args, "stdin", env).spawn().expect("spawn");
    {
        let stdin = first.stdin.as_mut().expect("stdin");
        for l in &lines[..1500] {
            writeln!(stdin, "{l}").expect("write");
        }
        stdin.flush().expect("flush");
    }
    let start = Instant::now();
    while committed(config, "stdin").await < 300 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "nothing committed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().expect("kill -9");
    let _ = first.wait();
    let at_kill = committed(config, "stdin").await;
    assert!(at_kill > 0 && at_kill <= 1500, "{at_kill}");
    // Second run: the whole input again; it resumes after the committed position.
    let mut second = service(catalog_args, "stdin", env).spawn().expect("spawn");
    {
        let mut stdin = second.stdin.take().expect("stdin");
        for l in &lines {
            writeln!(stdin, "{l}").expect("write");
        }
    }
    finish(second, "the restarted service");
    let table = SalesHistory::open(config, "ingest").await.expect("open");
    let rows = table.scan().to_records().await.expect("scan");
    let distinct: BTreeSet<&str> = rows.iter().map(|r| r.product_id.as_str()).collect();
    println!(
        "kill/resume: {} events sent, killed at committed line {at_kill}, {} rows found, {} duplicates",
        lines.len(),
        rows.len(),
        rows.len() - distinct.len()
    );
    (lines.len(), rows.len(), rows.len() - distinct.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_and_restarted_every_event_lands_once_locally() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let config = CatalogConfig::local(&wh);
    let args = ["--warehouse".to_string(), wh.to_str().unwrap().to_string()];
    let (sent, found, dupes) = kill_and_resume(&config, &args, &[]).await;
    assert_eq!((found, dupes), (sent, 0));
    #[cfg(feature = "python-tests")]
    {
        let got = crate::support::pyiceberg(&[
            "read",
            "--warehouse",
            wh.to_str().unwrap(),
            "--namespace",
            "pricing_intelligence_ingest",
            "--no-rows",
        ]);
        assert_eq!(
            got["row_count"], sent as u64,
            "pyiceberg reads the same count"
        );
    }
}

#[cfg(all(feature = "python-tests", feature = "glue"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_and_restarted_every_event_lands_once_on_glue() {
    let moto = crate::moto::moto();
    let config = moto.fresh("ingest-kill");
    let args = ["--catalog".to_string(), config.to_string()];
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing-secret-key"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let (sent, found, dupes) = kill_and_resume(&config, &args, &env).await;
    assert_eq!((found, dupes), (sent, 0));
    let py = crate::moto::pyiceberg_glue_args(
        "read",
        "s3://ingest-kill/warehouse",
        "pricing_intelligence_ingest",
    );
    let mut py: Vec<&str> = py.iter().map(String::as_str).collect();
    py.push("--no-rows");
    let got = crate::support::pyiceberg(&py);
    assert_eq!(
        got["row_count"], sent as u64,
        "pyiceberg reads the same count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_with_their_own_sources_share_one_table() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let config = CatalogConfig::local(&wh);
    // Create the table first so both services only append.
    sales_history::SalesHistory::ensure_with(
        &config,
        "ingest",
        sales_history::TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .unwrap();
    let args = ["--warehouse".to_string(), wh.to_str().unwrap().to_string()];
    let mut children = Vec::new();
    for (source, seed) in [("orders-a", 51), ("orders-b", 52)] {
        let mut child = service(&args, source, &[]).spawn().expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let lines = events(1200, seed);
        let writer = std::thread::spawn(move || {
            for l in lines {
                writeln!(stdin, "{l}").expect("write");
            }
        });
        children.push((source, child, writer));
    }
    for (source, child, writer) in children {
        writer.join().unwrap();
        finish(child, source);
    }
    let table = SalesHistory::open(&config, "ingest").await.unwrap();
    assert_eq!(table.scan().count().await.unwrap(), 2400, "totals exact");
    for source in ["orders-a", "orders-b"] {
        let p = table.last_committed_position(source).await.unwrap();
        assert_eq!(p.and_then(|p| p.as_u64()), Some(1200), "{source}");
    }
}

/// A bad line: reported with its number; `--on-bad-line stop` stops (after committing what
/// came before), `skip` goes on; nothing is dropped silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_reported_with_their_number() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let config = CatalogConfig::local(&wh);
    let args = ["--warehouse".to_string(), wh.to_str().unwrap().to_string()];
    let mut lines = events(20, 61);
    lines[9] = "{\"product_id\": \"x\"}".to_string();
    let run = |extra: &'static [&'static str]| {
        let mut child = service(&args, "stdin", &[])
            .args(extra)
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().unwrap();
        for l in &lines {
            writeln!(stdin, "{l}").unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let stopped = run(&[]);
    assert_eq!(stopped.status.code(), Some(1));
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        err.contains("line 10") && err.contains("sold_price"),
        "{err}"
    );
    assert_eq!(
        committed(&config, "stdin").await,
        9,
        "the lines before it are committed"
    );
    let skipped = run(&["--on-bad-line", "skip"]);
    assert!(skipped.status.success());
    let err = String::from_utf8_lossy(&skipped.stderr);
    // The restart resumed after line 9: line 10 is reported again, then skipped.
    assert!(err.contains("line 10: skipped"), "{err}");
    let table = SalesHistory::open(&config, "ingest").await.unwrap();
    assert_eq!(table.scan().count().await.unwrap(), 19);
}

/// Creates a Kinesis stream of `shards` shards on the emulator and puts `lines` in it (500
/// at a time, partition keys spreading them over the shards).
#[cfg(all(feature = "python-tests", feature = "glue", feature = "kinesis"))]
async fn kinesis_stream(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shards: i32,
    lines: &[String],
) {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    kinesis
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
        .expect("create stream");
    for chunk in lines.chunks(500) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, l)| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(l.as_bytes()))
                    .partition_key(format!("key-{i}"))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .expect("put records");
        assert_eq!(out.failed_record_count(), Some(0));
    }
}

/// From a 2-shard Kinesis stream on the emulator: kill -9 mid-stream, restart, and each shard
/// resumes after its committed sequence number: every record lands exactly once.
#[cfg(all(feature = "python-tests", feature = "glue", feature = "kinesis"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_and_restarted_from_a_two_shard_kinesis_stream() {
    let moto = crate::moto::moto();
    let endpoint = moto.endpoint();
    let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk_config().await);
    let stream = "sales-events";
    let lines = events(3000, 71);
    kinesis_stream(&kinesis, stream, 2, &lines).await;
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    assert_eq!(shards.shards().len(), 2);

    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let config = CatalogConfig::local(&wh);
    let run = |idle_exit: Option<&str>| {
        let mut cmd = Command::new(crate::support::example("ingest_service"));
        cmd.args(["--warehouse", wh.to_str().unwrap(), "--stage", "ingest"])
            .args(["--kinesis-stream", stream, "--kinesis-endpoint", &endpoint])
            .args(["--region", crate::moto::REGION])
            .args(["--embedding-dimension", &DIM.to_string()])
            .args(["--max-rows", "300", "--max-age", "200ms", "--quiet"])
            .envs([
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing-secret-key"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(idle) = idle_exit {
            cmd.args(["--idle-exit", idle]);
        }
        cmd.spawn().expect("spawn")
    };
    let mut first = run(None);
    let start = Instant::now();
    loop {
        let rows = match SalesHistory::open(&config, "ingest").await {
            Ok(t) => t.scan().count().await.unwrap_or(0),
            Err(_) => 0,
        };
        if rows >= 300 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "nothing committed from Kinesis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().expect("kill -9");
    let _ = first.wait();
    let table = SalesHistory::open(&config, "ingest").await.unwrap();
    let at_kill = table.scan().count().await.unwrap();
    let mut positions = Vec::new();
    for s in shards.shards() {
        let source = format!("kinesis:{stream}/{}", s.shard_id());
        positions.push(table.last_committed_position(&source).await.unwrap());
    }
    assert!(
        positions.iter().any(Option::is_some),
        "no shard position committed"
    );
    finish(run(Some("2s")), "the restarted Kinesis consumer");
    let rows = table.scan().to_records().await.unwrap();
    let distinct: BTreeSet<&str> = rows.iter().map(|r| r.product_id.as_str()).collect();
    println!(
        "kinesis kill/resume: {} records sent over 2 shards, {at_kill} rows committed at the kill, {} rows found, {} duplicates",
        lines.len(),
        rows.len(),
        rows.len() - distinct.len()
    );
    assert_eq!(rows.len(), lines.len());
    assert_eq!(distinct.len(), lines.len(), "no record twice");
    let got = crate::support::pyiceberg(&[
        "read",
        "--warehouse",
        wh.to_str().unwrap(),
        "--namespace",
        "pricing_intelligence_ingest",
        "--no-rows",
    ]);
    assert_eq!(got["row_count"], lines.len() as u64);
}

/// Every file the table's live snapshots and its metadata log name exists (local warehouse).
pub async fn nothing_referenced_is_missing(table: &SalesHistory) -> usize {
    let t = table.iceberg_table();
    let io = t.file_io();
    let exists = |p: &str| std::path::Path::new(p.strip_prefix("file://").unwrap_or(p)).exists();
    let mut checked = 0;
    for log in t.metadata().metadata_log() {
        assert!(exists(&log.metadata_file), "missing: {}", log.metadata_file);
        checked += 1;
    }
    for snapshot in t.metadata().snapshots() {
        assert!(
            exists(snapshot.manifest_list()),
            "missing: {}",
            snapshot.manifest_list()
        );
        let list = t.manifest_list_reader(snapshot).load().await.expect("list");
        for m in list.entries() {
            assert!(exists(&m.manifest_path), "missing: {}", m.manifest_path);
            let manifest = m.load_manifest(io).await.expect("manifest");
            for e in manifest.entries().iter().filter(|e| e.is_alive()) {
                assert!(exists(e.file_path()), "missing: {}", e.file_path());
                checked += 1;
            }
        }
    }
    checked
}

/// The maintenance steps a kill must land inside, as `ingest_service --trace` names them.
const PHASES: [&str; 3] = ["compaction", "expiry", "orphan-removal"];

/// Whether `line` is the service's `maintenance phase {started|finished}` event of `phase`.
fn phase_line(line: &str, what: &str, phase: &str) -> bool {
    line.contains(&format!("maintenance phase {what}"))
        && (line.contains(&format!("phase=\"{phase}\""))
            || line.contains(&format!("phase={phase} ")))
}

/// Runs `child` until it logs the start of `phase`, kills it (-9) the moment the line is read,
/// and returns all it wrote on stderr and whether the kill landed inside the step: its
/// `started` line with no `finished` after it (the events are written synchronously, before
/// and after the step's I/O). Gives up (kills, no hit) after `wait`.
fn kill_inside(mut child: Child, phase: &str, wait: Duration) -> (Vec<String>, Option<usize>) {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut started_at = None;
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let start = phase_line(&line, "started", phase);
                lines.push(line);
                if start {
                    child.kill().expect("kill -9");
                    started_at = Some(lines.len() - 1);
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // The rest of what it wrote before it died.
    lines.extend(rx.iter());
    reader.join().expect("reader");
    let hit = started_at.filter(|&at| {
        !lines[at + 1..]
            .iter()
            .any(|l| phase_line(l, "finished", phase))
    });
    (lines, hit)
}

/// kill -9 of the service inside each maintenance step — compaction, expiry, orphan removal —
/// proven by the step's `started` line with no `finished` after it, each at least once, then
/// a restart on the same input: every event once, pyiceberg reads the table, and no file a live
/// snapshot or the metadata log names is missing. The task runs every 100 ms (compaction of the
/// months with ≥ 8 small files, expiry of snapshots older than 300 ms, orphans older than 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_inside_each_maintenance_phase_and_restarted_every_event_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let config = CatalogConfig::local(&wh);
    let lines = events(3000, 77);
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(crate::support::example("ingest_service"));
        cmd.args(["--warehouse", wh.to_str().unwrap()])
            .args(["--stage", "ingest", "--source-name", "stdin"])
            .args(["--embedding-dimension", &DIM.to_string()])
            .args(["--max-rows", "20", "--max-age", "50ms"])
            .args([
                "--maintenance-every",
                "100ms",
                "--snapshot-max-age",
                "300ms",
            ])
            .args(["--orphans-older-than", "2s", "--orphans-every", "100ms"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let mut hits: Vec<(&str, usize, String)> = Vec::new();
    let mut rounds = 0;
    while rounds < 18 && hits.len() < PHASES.len() {
        // The next step not hit yet, in turn.
        let phase = (0..PHASES.len())
            .map(|i| PHASES[(rounds + i) % PHASES.len()])
            .find(|p| hits.iter().all(|(h, _, _)| h != p))
            .expect("a phase left");
        // What it committed comes back at once (it is skipped); new events come 20 every
        // 40 ms, so that each round commits small files (one per month per flush) and the
        // months reach the task's 8-small-file threshold.
        let done = committed(&config, "stdin").await as usize;
        let upto = (done + 300).min(lines.len());
        let mut child = run(&["--trace"]).spawn().expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let feed: Vec<String> = lines[..upto].to_vec();
        let writer = std::thread::spawn(move || {
            for (i, l) in feed.iter().enumerate() {
                if writeln!(stdin, "{l}").is_err() {
                    break;
                }
                if i >= done && i % 20 == 19 {
                    std::thread::sleep(Duration::from_millis(40));
                }
            }
            // Keep the pipe open: the service is killed, not ended.
            std::thread::sleep(Duration::from_secs(30));
        });
        let (stderr, hit) = kill_inside(child, phase, Duration::from_secs(20));
        drop(writer);
        if let Some(at) = hit {
            hits.push((phase, rounds, stderr[at].clone()));
        }
        rounds += 1;
    }
    for (phase, round, line) in &hits {
        println!("round {round}: killed inside {phase}: last line `{line}`");
    }
    let hit: Vec<&str> = hits.iter().map(|(p, _, _)| *p).collect();
    assert_eq!(
        hit.len(),
        PHASES.len(),
        "a kill landed inside each step in {rounds} rounds: {hit:?}"
    );
    // The restart on the whole input finishes it.
    let mut last = run(&["--quiet"]).spawn().expect("spawn");
    {
        let mut stdin = last.stdin.take().expect("stdin");
        for l in &lines {
            writeln!(stdin, "{l}").expect("write");
        }
    }
    finish(last, "the restarted service");
    let table = SalesHistory::open(&config, "ingest").await.expect("open");
    let rows = table.scan().to_records().await.expect("scan");
    let distinct: BTreeSet<&str> = rows.iter().map(|r| r.product_id.as_str()).collect();
    assert_eq!(rows.len(), lines.len(), "every event");
    assert_eq!(distinct.len(), lines.len(), "once");
    let checked = nothing_referenced_is_missing(&table).await;
    let replaces = table
        .snapshots()
        .await
        .unwrap()
        .iter()
        .filter(|s| s.operation == "replace")
        .count();
    println!(
        "killed {rounds} times, inside {hit:?}: {} rows, {} compactions in the history, {checked} referenced files present",
        rows.len(),
        replaces
    );
    #[cfg(feature = "python-tests")]
    {
        let got = crate::support::pyiceberg(&[
            "read",
            "--warehouse",
            wh.to_str().unwrap(),
            "--namespace",
            "pricing_intelligence_ingest",
            "--no-rows",
        ]);
        assert_eq!(got["row_count"], lines.len() as u64);
    }
}

/// A shard consumer that fails (a bad record, `--on-bad-line stop`) stops the service with
/// its error while the other shard would be read forever (no `--idle-exit`): the service
/// exits, naming the record, instead of reading on without that shard.
#[cfg(all(feature = "python-tests", feature = "glue", feature = "kinesis"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_shard_consumer_stops_the_kinesis_service() {
    let moto = crate::moto::moto();
    let endpoint = moto.endpoint();
    let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk_config().await);
    let stream = "sales-events-bad";
    let mut lines = events(40, 72);
    lines.push("this is not an event".to_string());
    kinesis_stream(&kinesis, stream, 2, &lines).await;
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let mut child = Command::new(crate::support::example("ingest_service"))
        .args(["--warehouse", wh.to_str().unwrap(), "--stage", "ingest"])
        .args(["--kinesis-stream", stream, "--kinesis-endpoint", &endpoint])
        .args(["--region", crate::moto::REGION])
        .args(["--embedding-dimension", &DIM.to_string()])
        .args(["--max-age", "200ms", "--quiet"])
        .envs([
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret-key"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the service kept reading the other shard after one consumer failed");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("kinesis:sales-events-bad/"), "{stderr}");
}

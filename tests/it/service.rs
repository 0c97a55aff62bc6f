//! A handle a long-running service can share: spawnable futures, clones sharing one cache that
//! only moves forward, the read freshness policy, and replicas that start together on a new
//! stage (real processes).

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sales_history::{CatalogConfig, Freshness, SalesHistory, TableOptions};

use crate::support::{DIM, local_table, sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_can_be_spawned_and_clones_share_the_table() {
    let t = local_table(DIM).await;
    let table = t.table.clone();
    let a = tokio::spawn(
        table
            .append(sample(20, DIM, 1))
            .commit_id("a")
            .into_future(),
    );
    let b = tokio::spawn(
        t.table
            .append(sample(30, DIM, 2))
            .commit_id("b")
            .into_future(),
    );
    let count = tokio::spawn(table.scan().count());
    a.await.unwrap().expect("append a");
    b.await.unwrap().expect("append b");
    let seen = count.await.unwrap().expect("count");
    assert!(
        [0, 20, 30, 50].contains(&seen),
        "a scan sees whole appends only: {seen}"
    );
    // Both appends went through clones of one handle: it holds both snapshots.
    assert_eq!(t.table.iceberg_table().metadata().snapshots().count(), 2);
    assert_eq!(table.scan().count().await.unwrap(), 50);
    let similar = tokio::spawn(table.similar_to(vec![0.5; DIM], 3).into_future());
    assert_eq!(similar.await.unwrap().unwrap().len(), 3);
}

/// Appends and refreshes race on clones of one handle while a watcher samples the cached
/// version: it never moves back, and the handle ends on the last commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cached_version_only_moves_forward() {
    let t = local_table(DIM).await;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (table, stop) = (t.table.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = 0i64;
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let seq = table.iceberg_table().metadata().last_sequence_number();
                assert!(seq >= last, "the handle moved back from {last} to {seq}");
                last = seq;
                samples += 1;
                tokio::task::yield_now().await;
            }
            samples
        })
    };
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let table = t.table.clone();
        tasks.push(tokio::spawn(async move {
            table.append(sample(5, DIM, 100 + i)).await.map(|_| ())
        }));
        let table = t.table.clone();
        tasks.push(tokio::spawn(async move { table.refresh().await }));
    }
    for task in tasks {
        task.await.unwrap().expect("append or refresh");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(watcher.await.unwrap() > 0);
    let meta = t.table.iceberg_table().metadata().clone();
    assert_eq!(meta.snapshots().count(), 6);
    assert_eq!(
        meta.last_sequence_number(),
        6,
        "the handle ends on the newest version"
    );
}

/// A refresh whose answer (the older version) arrives after the handle's own commit must not
/// move the handle back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_refresh_does_not_undo_a_newer_commit() {
    use crate::faulty_catalog::FaultyCatalog;
    let dir = tempfile::tempdir().unwrap();
    let real = CatalogConfig::local(dir.path());
    let faulty = FaultyCatalog::new(crate::support::raw_catalog(&real).await);
    let config = CatalogConfig::Custom {
        catalog: faulty.clone(),
        warehouse: format!(
            "file://{}",
            std::fs::canonicalize(dir.path()).unwrap().display()
        ),
    };
    let options = TableOptions::default().embedding_dimension(DIM);
    let table = SalesHistory::ensure_with(&config, "slow", options)
        .await
        .unwrap();
    faulty.slow_next_load(Duration::from_millis(1500));
    let refreshing = tokio::spawn({
        let table = table.clone();
        async move { table.refresh().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    table.append(sample(5, DIM, 9)).await.expect("append");
    let after_commit = table.iceberg_table().metadata().last_sequence_number();
    assert_eq!(after_commit, 1);
    refreshing.await.unwrap().expect("slow refresh");
    assert_eq!(
        table.iceberg_table().metadata().last_sequence_number(),
        after_commit,
        "the slow refresh's older version replaced the newer one"
    );
    assert_eq!(table.scan().count().await.unwrap(), 5);
}

#[tokio::test]
async fn reads_see_other_writers_as_the_freshness_policy_says() {
    let t = local_table(DIM).await;
    let options = TableOptions::default().embedding_dimension(DIM);
    // Another process's handle (its own cache), as a replica would have.
    let reader = SalesHistory::ensure_with(&t.config, "test", options)
        .await
        .unwrap();
    let cached = reader.clone().freshness(Freshness::Cached);
    let bounded = reader
        .clone()
        .freshness(Freshness::MaxAge(Duration::from_secs(3600)));
    assert_eq!(reader.scan().count().await.unwrap(), 0);

    t.table.append(sample(10, DIM, 1)).await.unwrap();
    // Cached and a young bounded cache keep the version they have...
    assert_eq!(cached.scan().count().await.unwrap(), 0);
    assert_eq!(bounded.scan().count().await.unwrap(), 0);
    // ...the default reloads first and sees the commit, without reopening.
    assert_eq!(reader.scan().count().await.unwrap(), 10);
    assert_eq!(reader.snapshots().await.unwrap().len(), 1);
    // Clones share the cache: the reload above moved it for all of them.
    assert_eq!(cached.scan().count().await.unwrap(), 10);

    t.table.append(sample(5, DIM, 2)).await.unwrap();
    let zero_age = reader.clone().freshness(Freshness::MaxAge(Duration::ZERO));
    assert_eq!(zero_age.scan().count().await.unwrap(), 15);
    assert_eq!(zero_age.snapshots().await.unwrap().len(), 2);
}

/// `n` real processes load into the same fresh stage at the same moment; returns each one's
/// wall time. All must succeed.
fn cold_start(n: usize, catalog_args: &[String], env: &[(&str, &str)]) -> Vec<Duration> {
    let children: Vec<_> = (0..n)
        .map(|i| {
            let started = Instant::now();
            let child = Command::new(crate::support::example("load_sample_sales_data"))
                .args(["--num-records", "100", "--seed", &i.to_string(), "--quiet"])
                .args(["--stage", "cold"])
                .args(catalog_args)
                .envs(env.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn load_sample_sales_data");
            (started, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(started, child)| {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "a replica failed to start:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            started.elapsed()
        })
        .collect()
}

async fn check_cold_start(config: &CatalogConfig, n: usize, times: &[Duration], what: &str) {
    let table = SalesHistory::open(config, "cold").await.expect("one table");
    let snapshots = table.snapshots().await.unwrap();
    assert_eq!(snapshots.len(), n, "one snapshot per replica");
    assert_eq!(
        table.scan().count().await.unwrap(),
        100 * n as u64,
        "rows exact"
    );
    let products: BTreeSet<String> = table
        .scan()
        .to_records()
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{}/{}", r.product_id, r.sold_date))
        .collect();
    assert_eq!(products.len(), 100 * n, "no row twice");
    let mut ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    ms.sort_unstable();
    println!(
        "cold start on {what}: {n} processes, all succeeded, 1 table, {} rows; wall ms per process {ms:?}",
        100 * n
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_a_new_stage_all_succeed_locally() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh").to_str().unwrap().to_string();
    let times = cold_start(4, &["--warehouse".to_string(), wh.clone()], &[]);
    check_cold_start(&CatalogConfig::local(&wh), 4, &times, "SQLite").await;
}

#[cfg(all(feature = "python-tests", feature = "glue"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_a_new_stage_all_succeed_on_glue() {
    let moto = crate::moto::moto();
    let config = moto.fresh("cold-start");
    let uri = config.to_string();
    let times = cold_start(
        4,
        &["--catalog".to_string(), uri],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret-key"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    check_cold_start(&config, 4, &times, "Glue (moto)").await;
}

/// The library's tracing (ensure span, commit span, scan events) carries no credentials, and
/// tells what happened: captured with a real `tracing-subscriber`.
#[cfg(feature = "glue")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_name_what_happened_and_never_carry_secrets() {
    use std::io::Write;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        )
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    // The process-wide default: a thread-local one (`set_default`) loses events whose
    // callsites other tests' threads registered first (tracing's interest cache), which made
    // this test flaky. Only this test installs a subscriber; others' events land here too.
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");

    // An append and a scan on the local catalog...
    let t = local_table(DIM).await;
    t.table
        .append(sample(10, DIM, 1))
        .commit_id("traced-1")
        .await
        .unwrap();
    t.table
        .scan()
        .tenant("tenant-001")
        .to_batches()
        .await
        .unwrap();
    // ...and a Glue ensure with explicit credentials against a closed port.
    let glue: CatalogConfig = sales_history::GlueConfig::new("us-east-1", "s3://trace-bucket/wh")
        .glue_endpoint("http://127.0.0.1:1")
        .s3_endpoint("http://127.0.0.1:1")
        .credentials(sales_history::AwsCredentials::new(
            "AKIDTRACESECRETKEY",
            "tr4ce-s3cret-value",
        ))
        .into();
    let err = SalesHistory::ensure(&glue, "traced")
        .await
        .expect_err("closed port");
    assert!(err.is_retryable(), "{err:?}");

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("sales_history::"))
        .collect();
    let ours = ours.join("\n");
    for want in [
        "ensure",
        "commit",
        "commit_id=traced-1",
        "committed",
        "scan planned",
        "bytes_read",
    ] {
        assert!(ours.contains(want), "no `{want}` in the trace:\n{ours}");
    }
    // Our events carry neither part of the credentials; the secret key appears nowhere, not
    // even in the AWS SDK's own DEBUG events (which do print the access key id: filter
    // `aws_*` targets to INFO in production, see the README).
    for secret in ["AKIDTRACESECRETKEY", "tr4ce-s3cret-value"] {
        assert!(!ours.contains(secret), "a credential in our trace:\n{ours}");
    }
    assert!(
        !text.contains("tr4ce-s3cret-value"),
        "the secret key in a trace"
    );
}

#[cfg(all(feature = "python-tests", feature = "glue", feature = "s3tables"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_a_new_stage_all_succeed_on_s3_tables() {
    let moto = crate::moto::moto();
    let bucket = aws_sdk_s3tables::Client::new(&moto.sdk_config().await)
        .create_table_bucket()
        .name("cold-start-s3t")
        .send()
        .await
        .expect("table bucket");
    let config: CatalogConfig = sales_history::S3TablesConfig::new(bucket.arn())
        .endpoint(moto.endpoint())
        .s3_endpoint(moto.endpoint())
        .into();
    let times = cold_start(
        4,
        &["--catalog".to_string(), config.to_string()],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret-key"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    // The test process reads with the same credentials, from the environment of the config.
    let config = match config {
        CatalogConfig::S3Tables(t) => CatalogConfig::S3Tables(t.credentials(
            sales_history::AwsCredentials::new("testing", "testing-secret-key"),
        )),
        other => other,
    };
    check_cold_start(&config, 4, &times, "S3 Tables (moto)").await;
}

/// On the local catalog, a refresh reads one SQLite row, and `metadata.json` only when the
/// row moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_reads_metadata_only_when_the_local_catalog_moved() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::refresh_reads_metadata_only_when_the_catalog_moved(
        &CatalogConfig::local(dir.path()),
        "probe",
    )
    .await;
}

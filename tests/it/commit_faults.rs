//! The commit loop under faults injected **below the swap** (`sales_history::faults`): the loop
//! production runs is the loop under test, on each catalog's real swap (SQLite; Glue and S3
//! Tables on moto), for an append and for a compaction.
//!
//! Each case pushes one fault, runs the operation, and checks the outcome the loop's policy
//! promises, the rows in the table, and the files left behind (unreferenced files under the
//! table's location; on S3 Tables, where this crate never deletes, that no DELETE was sent):
//!
//! | fault | outcome | files left |
//! |---|---|---|
//! | conflict | lands on the 2nd attempt | none |
//! | refusal | the catalog's error, not retryable | none |
//! | lost answer | lands (found by commit id) | none |
//! | 5xx (not applied) | `CommitStateUnknown`; a retry with the same commit id lands once | the attempt's files, kept |
//! | storage fault at a staged manifest / manifest list / metadata file | a retryable storage error | none |

use sales_history::faults::{StagedWrite, SwapFault};
use sales_history::{CatalogConfig, Error, SalesHistory, TableOptions};

use crate::support::{DIM, sample};

/// What a case must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Landed { attempts: u32 },
    Refused,
    Unknown,
    StorageError,
}

fn cases() -> Vec<(&'static str, SwapFault, Expect)> {
    vec![
        (
            "conflict",
            SwapFault::Conflict,
            Expect::Landed { attempts: 2 },
        ),
        ("refusal", SwapFault::Refused, Expect::Refused),
        (
            "lost answer",
            SwapFault::LostAnswer,
            Expect::Landed { attempts: 1 },
        ),
        ("5xx", SwapFault::ServerError, Expect::Unknown),
        (
            "storage: manifest",
            SwapFault::StagedWrite(StagedWrite::Manifest),
            Expect::StorageError,
        ),
        (
            "storage: manifest list",
            SwapFault::StagedWrite(StagedWrite::ManifestList),
            Expect::StorageError,
        ),
        (
            "storage: metadata file",
            SwapFault::StagedWrite(StagedWrite::MetadataFile),
            Expect::StorageError,
        ),
    ]
}

/// Counts (and then removes) the files under the table's location that nothing references;
/// `None` where this crate may not list or delete (S3 Tables).
async fn leftovers(table: &SalesHistory, listable: bool) -> Option<usize> {
    if !listable {
        return None;
    }
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    let found = table
        .remove_orphan_files()
        .older_than(later)
        .await
        .expect("orphan removal");
    Some(found.deleted_files.len())
}

/// Runs every case for appends and compactions on `table`; returns the matrix rows.
async fn matrix(catalog: &str, table: &SalesHistory, listable: bool) -> Vec<String> {
    let faults = table.inject_commit_faults();
    let mut rows = table.scan().count().await.expect("count");
    let mut out = Vec::new();
    let mut seed = 100;
    for operation in ["append", "compaction"] {
        for (name, fault, expect) in cases() {
            seed += 1;
            if operation == "compaction" {
                // Something to compact: two more small files per month touched.
                for s in [seed * 10, seed * 10 + 1] {
                    table.append(sample(6, DIM, s)).await.expect("setup append");
                    rows += 6;
                }
                assert_eq!(leftovers(table, listable).await.unwrap_or(0), 0);
            }
            let injected = faults.injected();
            faults.push([fault]);
            let commit_id = format!("faults-{}-{seed}", catalog.replace(' ', "-"));
            let outcome: Result<(u32, u64), Error> = if operation == "append" {
                table
                    .append(sample(5, DIM, seed))
                    .commit_id(commit_id.clone())
                    .await
                    .map(|o| {
                        let s = o.committed().expect("committed").clone();
                        (s.attempts, 5)
                    })
            } else {
                table.compact().await.map(|r| (r.attempts, 0))
            };
            assert_eq!(
                faults.injected(),
                injected + 1,
                "{catalog}/{operation}/{name}: the fault was injected"
            );
            let result = match (expect, &outcome) {
                (Expect::Landed { attempts }, Ok((got, added))) => {
                    assert_eq!(*got, attempts, "{catalog}/{operation}/{name}");
                    rows += added;
                    format!("lands, {got} attempt(s)")
                }
                (
                    Expect::Refused,
                    Err(
                        e @ Error::Catalog {
                            retryable: false, ..
                        },
                    ),
                ) => {
                    assert!(!e.is_retryable());
                    "refused, not retryable".to_string()
                }
                (Expect::Unknown, Err(e @ Error::CommitStateUnknown { .. })) => {
                    assert!(e.is_retryable());
                    "CommitStateUnknown (kept)".to_string()
                }
                (Expect::StorageError, Err(e @ Error::Storage { .. })) => {
                    assert!(e.is_retryable(), "{e:?}");
                    "storage error, retryable".to_string()
                }
                (expect, got) => {
                    panic!("{catalog}/{operation}/{name}: expected {expect:?}, got {got:?}")
                }
            };
            table.refresh().await.expect("refresh");
            assert_eq!(
                table.scan().count().await.expect("count"),
                rows,
                "{catalog}/{operation}/{name}: rows"
            );
            let left = leftovers(table, listable).await;
            match (expect, left) {
                (Expect::Unknown, Some(n)) => assert!(
                    n > 0,
                    "{catalog}/{operation}/{name}: an unknown outcome keeps its files"
                ),
                (_, Some(n)) => assert_eq!(n, 0, "{catalog}/{operation}/{name}: files left"),
                (_, None) => {}
            }
            if expect == Expect::Unknown && operation == "append" {
                // Exactly once: the same commit id appends (the first did not land) once.
                let again = table
                    .append(sample(5, DIM, seed))
                    .commit_id(commit_id.clone())
                    .await
                    .expect("retry after an unknown outcome");
                assert!(again.committed().is_some(), "{again:?}");
                rows += 5;
                let twice = table
                    .append(sample(5, DIM, seed))
                    .commit_id(commit_id)
                    .await
                    .expect("a third try");
                assert!(
                    matches!(twice, sales_history::AppendOutcome::AlreadyCommitted { .. }),
                    "{twice:?}"
                );
                let snaps: Vec<_> = table
                    .snapshots()
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| (s.operation, s.added_rows, s.commit_id))
                    .collect();
                assert_eq!(
                    table.scan().count().await.expect("count"),
                    rows,
                    "{catalog}/{operation}/{name}: {snaps:#?}"
                );
            }
            let left = left.map_or("n/a (never deleted here)".to_string(), |n| n.to_string());
            out.push(format!(
                "| {catalog} | {operation} | {name} | {result} | {left} |"
            ));
        }
    }
    assert_eq!(faults.pending(), 0);
    out
}

fn print(rows: &[String]) {
    println!("| catalog | operation | fault | outcome | files left |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_below_the_swap_on_the_local_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig::local(dir.path());
    let table = SalesHistory::ensure_with(
        &config,
        "commit_faults",
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    table.append(sample(10, DIM, 1)).await.expect("baseline");
    print(&matrix("SQLite", &table, true).await);
}

#[cfg(all(feature = "python-tests", feature = "glue"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_below_the_swap_on_glue() {
    let config = crate::moto::moto().fresh("commit-faults");
    let table = SalesHistory::ensure_with(
        &config,
        "commit_faults",
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    table.append(sample(10, DIM, 1)).await.expect("baseline");
    print(&matrix("Glue", &table, true).await);
}

#[cfg(all(feature = "python-tests", feature = "glue", feature = "s3tables"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_below_the_swap_on_s3_tables() {
    use crate::moto::{FaultProxy, moto};
    use sales_history::{AwsCredentials, S3TablesConfig};
    let client = aws_sdk_s3tables::Client::new(&moto().sdk_config().await);
    let bucket = client
        .create_table_bucket()
        .name("commit-faults")
        .send()
        .await
        .expect("create table bucket");
    // Storage through a logging proxy: the loop must never send a DELETE to a table bucket.
    let proxy = FaultProxy::start(&moto().endpoint());
    let config: CatalogConfig = S3TablesConfig::new(bucket.arn())
        .endpoint(moto().endpoint())
        .s3_endpoint(proxy.endpoint())
        .credentials(AwsCredentials::new("testing", "testing-secret-key"))
        .into();
    let table = SalesHistory::ensure_with(
        &config,
        "commit_faults",
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    table.append(sample(10, DIM, 1)).await.expect("baseline");
    proxy.clear();
    let rows = matrix("S3 Tables", &table, false).await;
    let stats = proxy.stats();
    let deletes = stats["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter(|e| e["method"] == "DELETE")
        .count();
    assert_eq!(deletes, 0, "no DELETE is ever sent to a table bucket");
    print(&rows);
    // The maintenance task says S3 Tables manages this, and does nothing.
    let maintainer = table
        .maintainer()
        .every(std::time::Duration::from_millis(50))
        .start()
        .expect("maintainer");
    let mut watch = maintainer.watch();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        watch.wait_for(|s| s.managed_by_catalog),
    )
    .await
    .expect("the task reports it")
    .expect("watch");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stats = maintainer.stop().await;
    assert!(stats.managed_by_catalog && stats.runs == 0, "{stats:?}");
}

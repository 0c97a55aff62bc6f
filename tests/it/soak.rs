//! Soak: 4 writers × 50 appends on Glue + S3 with faults injected at random (seeded) in the
//! catalog (conflicts, throttling, refusals, lost answers) and in storage (failing and slow
//! requests through the proxy). The final table holds exactly the appends reported successful.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sales_history::{AppendOutcome, CatalogConfig, Column, Error, SalesHistory, TableOptions};

use crate::faulty_catalog::{Fault, FaultyCatalog};
use crate::moto::{FaultProxy, moto};
use crate::support::{DIM, pyiceberg, sample};

const WRITERS: usize = 4;
const APPENDS: usize = 50;
const ROWS: usize = 3;
const SEED: u64 = 20261126;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_with_random_faults_loses_and_duplicates_nothing() {
    let moto = moto();
    moto.create_bucket("soak");
    let proxy = FaultProxy::start(&moto.endpoint());
    let real: CatalogConfig = moto
        .glue_config("soak")
        .s3_endpoint(proxy.endpoint())
        .into();
    SalesHistory::ensure_with(
        &real,
        "soak",
        TableOptions::default().embedding_dimension(DIM),
    )
    .await
    .expect("ensure");
    // Storage: 2% of PUTs fail once with a 500 (retried by the storage layer), 1% of metadata
    // reads are slow.
    proxy.set_rules(serde_json::json!([
        { "method": "PUT", "path_regex": ".*", "times": -1, "probability": 0.02, "seed": SEED, "action": "status", "status": 500 },
        { "method": "GET", "path_regex": r"\.metadata\.json", "times": -1, "probability": 0.01, "seed": SEED + 1, "action": "delay", "seconds": 0.3 }
    ]));

    let attempted = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let mut catalogs = Vec::new();
    for w in 0..WRITERS {
        let faulty = FaultyCatalog::new(crate::support::raw_catalog(&real).await);
        faulty.randomize(
            SEED + w as u64,
            vec![
                (Fault::Conflict, 60),
                (Fault::Throttle, 40),
                (Fault::AccessDenied, 20),
                (Fault::LostAnswer, 30),
                (Fault::LostAnswerAndReload, 20),
            ],
        );
        catalogs.push(faulty.clone());
        let config = CatalogConfig::Custom {
            catalog: faulty,
            warehouse: "s3://soak/warehouse".into(),
        };
        let attempted = attempted.clone();
        handles.push(tokio::spawn(async move {
            let table = SalesHistory::open(&config, "soak").await.expect("open");
            let mut committed = Vec::new();
            let (mut failed, mut unknown_resolved) = (0usize, 0usize);
            for a in 0..APPENDS {
                let mut rows = sample(ROWS, DIM, (w * 1000 + a) as u64);
                for (r, row) in rows.iter_mut().enumerate() {
                    row.product_id = format!("w{w}-a{a}-r{r}");
                }
                let id = format!("soak-w{w}-a{a}");
                attempted.fetch_add(1, Ordering::Relaxed);
                let mut outcome = table.append(rows.clone()).commit_id(&id).await;
                // An unknown outcome is resolved by retrying with the same commit id.
                let mut tries = 0;
                while matches!(outcome, Err(Error::CommitStateUnknown { .. })) && tries < 5 {
                    tries += 1;
                    outcome = table.append(rows.clone()).commit_id(&id).await;
                    unknown_resolved += 1;
                }
                match outcome {
                    Ok(AppendOutcome::Committed(_))
                    | Ok(AppendOutcome::AlreadyCommitted { .. }) => {
                        committed.push(format!("w{w}-a{a}"))
                    }
                    Ok(other) => panic!("unexpected outcome {other:?}"),
                    Err(_) => failed += 1,
                }
            }
            (committed, failed, unknown_resolved, table.commit_stats())
        }));
    }
    let mut committed = BTreeSet::new();
    let (mut failed, mut resolved, mut conflicts, mut throttled) = (0, 0, 0, 0);
    for h in handles {
        let (c, f, r, stats) = h.await.expect("writer");
        committed.extend(c);
        failed += f;
        resolved += r;
        conflicts += stats.conflicts;
        throttled += stats.throttled;
    }
    let storage_faults = proxy.stats()["injected"].as_u64().unwrap_or(0);
    proxy.clear();
    let catalog_faults: u64 = catalogs.iter().map(|c| c.injected_total()).sum();

    // The table equals exactly the appends reported successful.
    let table = SalesHistory::open(&real, "soak").await.expect("reopen");
    let batches = table
        .scan()
        .select([Column::ProductId])
        .to_batches()
        .await
        .expect("scan");
    let mut ids = Vec::new();
    for b in &batches {
        let a = arrow_array::cast::AsArray::as_string::<i32>(b.column(0));
        ids.extend(a.iter().map(|s| s.unwrap_or_default().to_string()));
    }
    let unique: BTreeSet<&String> = ids.iter().collect();
    let duplicates = ids.len() - unique.len();
    let appends_found: BTreeSet<String> = ids
        .iter()
        .filter_map(|id| id.rsplit_once("-r").map(|(a, _)| a.to_string()))
        .collect();
    let expected_rows = committed.len() * ROWS;
    println!(
        "soak: {} appends tried, {} reported successful, {failed} failed; faults injected: {catalog_faults} catalog + {storage_faults} storage; conflicts retried {conflicts}, throttles retried {throttled}, unknown outcomes resolved {resolved}; rows expected {expected_rows}, found {}, duplicates {duplicates}",
        attempted.load(Ordering::Relaxed),
        committed.len(),
        ids.len()
    );
    assert_eq!(duplicates, 0);
    assert_eq!(
        appends_found, committed,
        "the table differs from the successful appends"
    );
    assert_eq!(ids.len(), expected_rows);
    assert_eq!(table.snapshots().await.unwrap().len(), committed.len());
    assert!(
        catalog_faults > 0 && failed > 0,
        "the soak injected too few faults to mean anything"
    );

    // Metadata is valid and readable by a peer.
    let report = SalesHistory::verify(&real, "soak").await.expect("verify");
    assert!(report.passed(), "{report}");
    let mut args = crate::moto::pyiceberg_glue_args(
        "read",
        "s3://soak/warehouse",
        "pricing_intelligence_soak",
    );
    args.push("--no-rows".to_string());
    let got = pyiceberg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(got["row_count"].as_u64(), Some(expected_rows as u64));
}

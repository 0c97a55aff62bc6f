//! Similarity search equals an exact brute-force computation over the scanned rows.

use std::cmp::Ordering;

use sales_history::{Column, Error, Metric, SaleRecord, ScanFilter};

use crate::support::{DIM, local_table, sample};

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn brute(rows: &[SaleRecord], q: &[f64], k: usize, metric: Metric) -> Vec<(String, f64)> {
    let qn = dot(q, q).sqrt();
    let mut scored: Vec<(f64, (String, String, i64))> = rows
        .iter()
        .filter_map(|r| {
            let v = r.embedding.as_ref()?;
            let s = match metric {
                Metric::Dot => dot(q, v),
                Metric::Cosine => {
                    let n = dot(v, v).sqrt();
                    if n == 0.0 {
                        return None;
                    }
                    dot(q, v) / (qn * n)
                }
                _ => q
                    .iter()
                    .zip(v)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt(),
            };
            Some((
                s,
                (
                    r.tenant_id.clone(),
                    r.product_id.clone(),
                    r.sold_date.timestamp_micros(),
                ),
            ))
        })
        .collect();
    scored.sort_by(|a, b| {
        let by_score = match metric {
            Metric::L2 => a.0.total_cmp(&b.0),
            _ => b.0.total_cmp(&a.0),
        };
        if by_score == Ordering::Equal {
            a.1.cmp(&b.1)
        } else {
            by_score
        }
    });
    scored
        .into_iter()
        .take(k)
        .map(|(s, key)| (key.1, s))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_equal_brute_force_for_every_metric_and_filter() {
    let t = local_table(DIM).await;
    let mut rows = sample(400, DIM, 31);
    for r in rows.iter_mut().step_by(17) {
        r.embedding = None;
    }
    // Two appends: results must merge across files and snapshots.
    t.table.append(rows[..150].to_vec()).await.unwrap();
    t.table.append(rows[150..].to_vec()).await.unwrap();
    let all = t.table.scan().to_records().await.unwrap();
    let mut query = rows[3].embedding.clone().unwrap();
    query[0] += 0.05;

    let filter = ScanFilter::new()
        .tenants(["tenant-001", "tenant-002"])
        .year(2025);
    let filtered: Vec<SaleRecord> = all
        .iter()
        .filter(|r| ["tenant-001", "tenant-002"].contains(&r.tenant_id.as_str()))
        .filter(|r| chrono::Datelike::year(&r.sold_date) == 2025)
        .cloned()
        .collect();
    assert!(filtered.len() > 20);
    for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
        for (name, f, rows) in [
            ("no filter", ScanFilter::new(), &all),
            ("tenants + 2025", filter.clone(), &filtered),
        ] {
            let got = t
                .table
                .similar_to(query.clone(), 10)
                .metric(metric)
                .filter(f)
                .await
                .unwrap();
            let want = brute(rows, &query, 10, metric);
            let got_pairs: Vec<(String, f64)> = got
                .iter()
                .map(|s| (s.record.product_id.clone(), s.score))
                .collect();
            assert_eq!(got_pairs.len(), 10, "{metric:?} {name}");
            for (g, w) in got_pairs.iter().zip(&want) {
                assert_eq!(g.0, w.0, "{metric:?} {name}: {got_pairs:?} vs {want:?}");
                assert!(
                    (g.1 - w.1).abs() < 1e-12,
                    "{metric:?} {name}: {} vs {}",
                    g.1,
                    w.1
                );
            }
            // Results are whole records.
            assert!(
                got.iter()
                    .all(|s| s.record.embedding.as_ref().is_some_and(|e| e.len() == DIM))
            );
        }
    }
    // The nearest to a stored vector (cosine) is that row itself.
    let exact = t
        .table
        .similar_to(rows[5].embedding.clone().unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(exact[0].record.product_id, rows[5].product_id);
    assert!((exact[0].score - 1.0).abs() < 1e-12);

    // k larger than the rows: every row with an embedding, in order.
    let many = t
        .table
        .similar_to(query.clone(), 10_000)
        .metric(Metric::L2)
        .await
        .unwrap();
    assert_eq!(
        many.len(),
        all.iter().filter(|r| r.embedding.is_some()).count()
    );
    assert!(many.windows(2).all(|w| w[0].score <= w[1].score));
}

#[tokio::test]
async fn bad_queries_and_empty_tables() {
    let t = local_table(DIM).await;
    assert!(
        t.table
            .similar_to(vec![0.5; DIM], 5)
            .await
            .unwrap()
            .is_empty(),
        "empty table"
    );
    t.table.append(sample(20, DIM, 1)).await.unwrap();
    let column_of = |r: Result<Vec<sales_history::SimilarSale>, Error>| match r {
        Err(Error::InvalidValue { column, .. }) => Some(column),
        _ => None,
    };
    assert_eq!(
        column_of(t.table.similar_to(vec![0.5; DIM - 1], 5).await),
        Some(Column::Embedding)
    );
    let mut nan = vec![0.5; DIM];
    nan[2] = f64::NAN;
    assert_eq!(
        column_of(t.table.similar_to(nan, 5).await),
        Some(Column::Embedding)
    );
    assert_eq!(
        column_of(t.table.similar_to(vec![0.0; DIM], 5).await),
        Some(Column::Embedding)
    );
    // A zero vector is fine for dot and L2.
    assert_eq!(
        t.table
            .similar_to(vec![0.0; DIM], 5)
            .metric(Metric::L2)
            .await
            .unwrap()
            .len(),
        5
    );
    assert!(
        t.table
            .similar_to(vec![0.5; DIM], 0)
            .await
            .unwrap()
            .is_empty()
    );
    // A filter that matches nothing.
    let none = t
        .table
        .similar_to(vec![0.5; DIM], 5)
        .filter(ScanFilter::new().tenant("nobody"))
        .await
        .unwrap();
    assert!(none.is_empty());
}

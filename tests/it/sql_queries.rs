//! The seed's 12 queries (`sql/sales_history_queries.sql`): our engine (`SalesHistory::sql`)
//! against DuckDB over the same table read by pyiceberg, same SQL text, results equal in
//! order (floating values within a relative tolerance).

use std::path::Path;
use std::process::Command;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_schema::{DataType, TimeUnit};
use sales_history::sample_queries;

use crate::support::{local_table, python, sample};

#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Num(f64),
    Text(String),
}

impl Cell {
    fn close_to(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Num(a), Cell::Num(b)) => (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0),
            (a, b) => a == b,
        }
    }
}

/// The DuckDB peer's answer for every query.
fn duckdb(warehouse: &Path, namespace: &str) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/duckdb_queries.py");
    let out = Command::new(python())
        .arg(script)
        .args(["--warehouse", &warehouse.display().to_string()])
        .args(["--namespace", namespace])
        .output()
        .expect("run duckdb_queries.py");
    assert!(
        out.status.success(),
        "duckdb_queries.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("duckdb_queries.py prints JSON")
}

/// Our result as column names and rows of comparable cells.
fn cells(batches: &[RecordBatch]) -> (Vec<String>, Vec<Vec<Cell>>) {
    let names = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<Vec<Cell>> = batch.columns().iter().map(column_cells).collect();
        for i in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[i].clone()).collect());
        }
    }
    (names, rows)
}

fn column_cells(array: &arrow_array::ArrayRef) -> Vec<Cell> {
    use arrow_array::Array;
    let cast = |t: &DataType| arrow_cast::cast(array, t).expect("cast");
    let dt = array.data_type();
    let nums: Vec<Option<f64>> = if matches!(dt, DataType::Timestamp(_, _)) {
        let micros = cast(&DataType::Timestamp(TimeUnit::Microsecond, None));
        let ints = arrow_cast::cast(&micros, &DataType::Int64).expect("cast");
        let ints = ints.as_primitive::<Int64Type>();
        ints.iter().map(|v| v.map(|v| v as f64)).collect()
    } else if dt.is_numeric() || matches!(dt, DataType::Date32) {
        let target = if matches!(dt, DataType::Date32) {
            DataType::Int32
        } else {
            dt.clone()
        };
        let f = arrow_cast::cast(&cast(&target), &DataType::Float64).expect("cast");
        f.as_primitive::<Float64Type>().iter().collect()
    } else {
        let s = cast(&DataType::Utf8);
        return s
            .as_string::<i32>()
            .iter()
            .map(|v| v.map_or(Cell::Null, |v| Cell::Text(v.to_string())))
            .collect();
    };
    nums.into_iter()
        .map(|v| v.map_or(Cell::Null, Cell::Num))
        .collect()
}

fn json_cell(v: &serde_json::Value) -> Cell {
    match v {
        serde_json::Value::Null => Cell::Null,
        serde_json::Value::Number(n) => Cell::Num(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Cell::Text(s.clone()),
        other => Cell::Text(other.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twelve_queries_match_duckdb() {
    let t = local_table(8).await;
    t.table.append(sample(1500, 8, 61)).await.expect("append");
    t.table.append(sample(700, 8, 62)).await.expect("append");
    let theirs = duckdb(t.dir.path(), "pricing_intelligence_test");
    let theirs = theirs["queries"].as_array().expect("queries").clone();
    let queries = sample_queries();
    assert_eq!(queries.len(), 12);
    assert_eq!(theirs.len(), 12);
    for (q, other) in queries.iter().zip(&theirs) {
        assert_eq!(other["number"].as_u64(), Some(q.number as u64));
        let batches = t
            .table
            .sql(&q.sql)
            .await
            .unwrap_or_else(|e| panic!("query {} ({}) failed: {e}", q.number, q.name));
        let (names, rows) = cells(&batches);
        let their_names: Vec<String> = other["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            names, their_names,
            "query {} ({}) columns",
            q.number, q.name
        );
        let their_rows: Vec<Vec<Cell>> = other["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.as_array().expect("row").iter().map(json_cell).collect())
            .collect();
        assert!(
            !rows.is_empty(),
            "query {} ({}) returned no rows",
            q.number,
            q.name
        );
        assert_eq!(
            rows.len(),
            their_rows.len(),
            "query {} ({}) row count",
            q.number,
            q.name
        );
        for (i, (a, b)) in rows.iter().zip(&their_rows).enumerate() {
            let same = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.close_to(y));
            assert!(
                same,
                "query {} ({}) row {i}: ours {a:?}, DuckDB {b:?}",
                q.number, q.name
            );
        }
    }
}

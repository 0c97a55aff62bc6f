//! Vector-search benchmark: the table's index ([`SalesHistory::index_embeddings`]) against our
//! exact search, and (with `--peers`) LanceDB IVF_PQ and FAISS IVF-PQ / HNSW on the same
//! vectors and queries, in one run. Recall@k against the exact answer, p50/p99 latency without
//! and with a one-tenant filter, index build rows/s, index bytes.
//!
//! ```text
//! cargo run --release --example bench_vector -- [--rows 1000000] [--queries 50] \
//!     [--probes 8,16,32] [--embedding-page-bytes B] [--warehouse DIR] \
//!     [--peers --peer-python PY] [--json]
//! ```
//! `--warehouse DIR` keeps the table (and its index) between runs; a table with fewer rows
//! is filled up. The peers need `numpy faiss-cpu lancedb` in `--peer-python`'s environment:
//! `python/bench_vector_peers.py` reads the vectors this run exports (f32, row order of one
//! scan) and the exact answers it computed.

#[path = "common/number.rs"]
mod number;
#[path = "common/report.rs"]
mod report;
#[path = "common/stats.rs"]
mod stats;
#[path = "common/table_props.rs"]
mod table_props;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType};
use clap::Parser;
use futures::TryStreamExt;
use sales_history::sample::{SampleConfig, SampleGenerator};
use sales_history::{
    CatalogConfig, Column, DEFAULT_EMBEDDING_PAGE_BYTES, EMBEDDING_PAGE_SIZE_PROPERTY,
    SalesHistory, ScanFilter, SimilarSale, TableOptions,
};
use serde_json::json;

/// Vector-search benchmark: our index vs our exact search (and LanceDB / FAISS with --peers),
/// recall@k, p50/p99 latency with and without a tenant filter, build rows/s, index bytes.
#[derive(Debug, Parser)]
#[command(name = "bench_vector", verbatim_doc_comment)]
struct Args {
    /// Rows in the table.
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = number::parse::<usize>)]
    rows: usize,
    /// Embedding length.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = number::parse::<usize>)]
    dim: usize,
    /// Tenants of the sample data.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = number::parse::<usize>)]
    tenants: usize,
    /// Queries (fresh vectors from the same generator, another seed).
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = number::parse::<usize>)]
    queries: usize,
    /// Neighbours per query.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = number::parse::<usize>)]
    k: usize,
    /// Probe settings to measure (comma-separated).
    #[arg(long, value_name = "LIST", default_value = "8,16,32")]
    probes: String,
    /// Candidates re-ranked per result, settings to measure (comma-separated).
    #[arg(long, value_name = "LIST", default_value = "1,2")]
    refine: String,
    /// Lists of the codebook (default: about √rows).
    #[arg(long, value_name = "N")]
    lists: Option<usize>,
    /// Exact searches timed (each reads every embedding).
    #[arg(long, value_name = "N", default_value_t = 3)]
    exact_runs: usize,
    /// Keep the table here (default: a scratch directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    warehouse: Option<PathBuf>,
    /// Also run LanceDB and FAISS (python/bench_vector_peers.py).
    #[arg(long)]
    peers: bool,
    /// Python with numpy, faiss-cpu and lancedb.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    peer_python: PathBuf,
    /// Byte cap of the handle's index cache, in MiB (the crate's default is 512).
    #[arg(long, value_name = "MIB", default_value_t = 2048)]
    cache_mib: u64,
    /// Train and encode the index again even when the table has one.
    #[arg(long)]
    rebuild: bool,
    /// Bytes of an embedding data page in the table's files (the table property
    /// `sales-history.embedding-page-size-bytes`), set when this run creates the table; a kept
    /// table keeps its own.
    #[arg(long, value_name = "BYTES", value_parser = number::parse::<usize>)]
    embedding_page_bytes: Option<usize>,

    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    report::exit_on_error(run(args).await);
}

type Key = (String, String, i64);

fn key_of(s: &SimilarSale) -> Key {
    (
        s.record.tenant_id.clone(),
        s.record.product_id.clone(),
        s.record.sold_date.timestamp_micros(),
    )
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return f64::NAN;
    }
    ms[((ms.len() - 1) as f64 * p).round() as usize]
}

async fn run(args: Args) -> anyhow::Result<()> {
    let list = |text: &str, flag: &str| -> anyhow::Result<Vec<usize>> {
        text.split(',')
            .map(|p| p.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("{flag} takes numbers separated by commas"))
    };
    let (probes, refines) = (
        list(&args.probes, "--probes")?,
        list(&args.refine, "--refine")?,
    );
    let settings: Vec<(usize, usize)> = refines
        .iter()
        .flat_map(|r| probes.iter().map(move |p| (*p, *r)))
        .collect();
    if args.k == 0 || args.queries == 0 || args.dim == 0 {
        bail!("--k, --queries and --dim must be positive");
    }
    let (dir, scratch) = match &args.warehouse {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("bench_vector-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let catalog = CatalogConfig::local(&dir);
    let table = SalesHistory::ensure_with(
        &catalog,
        "bench",
        TableOptions::default().embedding_dimension(args.dim),
    )
    .await?;
    table.set_index_cache_bytes(args.cache_mib << 20);
    let sample = |seed: u64| {
        SampleGenerator::new(
            SampleConfig::default()
                .seed(seed)
                .tenants(args.tenants)
                .embedding_dimension(args.dim),
        )
    };

    // 1. The table.
    let have = table.scan().count().await? as usize;
    if let (0, Some(bytes)) = (have, args.embedding_page_bytes) {
        table_props::set_properties(
            &table,
            &dir,
            vec![(EMBEDDING_PAGE_SIZE_PROPERTY.into(), bytes.to_string())],
        )
        .await?;
    }
    let embedding_page_bytes = table
        .iceberg_table()
        .metadata()
        .properties()
        .get(EMBEDDING_PAGE_SIZE_PROPERTY)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(DEFAULT_EMBEDDING_PAGE_BYTES);
    let mut load = None;
    if have < args.rows {
        let mut generator = sample(7);
        if have > 0 {
            generator.take_records(have);
        }
        let t0 = Instant::now();
        let mut left = args.rows - have;
        while left > 0 {
            let n = left.min(20_000);
            table.append(generator.take_records(n)).await?;
            left -= n;
        }
        load = Some(t0.elapsed());
        eprintln!("loaded {} rows in {:.1?}", args.rows - have, t0.elapsed());
    }
    let rows = table.scan().count().await?;
    let plan = table.scan().plan().await?;
    let data_bytes: u64 = plan.files.iter().map(|f| f.size_bytes).sum();
    let raw_embedding_bytes = rows * args.dim as u64 * 8;

    // 2. The index.
    let mut build = table.index_embeddings();
    if args.rebuild {
        build = build.rebuild();
    }
    if let Some(l) = args.lists {
        build = build.lists(l);
    }
    let report = build.await?;
    eprintln!("index: {report:?}");
    let index_bytes = report.index_bytes;
    let build_rows_s = if report.rows_indexed > 0 {
        report.rows_indexed as f64 / report.duration.as_secs_f64()
    } else {
        f64::NAN
    };

    // 3. Queries, tenants, and the exact answers in one pass over the table (every query
    //    scored against every row, no filter and within the query's tenant).
    let queries: Vec<Vec<f64>> = sample(99)
        .take_records(args.queries)
        .into_iter()
        .map(|r| r.embedding.context("a sample row without an embedding"))
        .collect::<anyhow::Result<_>>()?;
    let tenants: Vec<String> = sample(7)
        .take_records(args.queries * 3)
        .into_iter()
        .map(|r| r.tenant_id)
        .step_by(3)
        .collect();
    let t0 = Instant::now();
    let export = dir.join("bench_vector_export");
    std::fs::create_dir_all(&export)?;
    let mut vectors = std::io::BufWriter::new(std::fs::File::create(export.join("vectors.f32"))?);
    let mut row_tenants: Vec<String> = Vec::new();
    let mut row_of: HashMap<Key, u64> = HashMap::new();
    let k = args.k;
    let mut best: Vec<Vec<(f64, u64)>> = vec![Vec::new(); queries.len()];
    let mut best_t: Vec<Vec<(f64, u64)>> = vec![Vec::new(); queries.len()];
    let qn: Vec<f64> = queries
        .iter()
        .map(|q| q.iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    let mut stream = table.scan().stream().await?;
    let mut next_row = 0u64;
    while let Some(batch) = stream.try_next().await? {
        let emb = batch
            .column_by_name(Column::Embedding.name())
            .context("embedding")?
            .as_list::<i32>();
        let values = emb.values().as_primitive::<Float64Type>().values();
        let offsets = emb.value_offsets();
        let tenant = arrow_cast::cast(
            batch
                .column_by_name(Column::TenantId.name())
                .context("tenant")?,
            &arrow_schema::DataType::Utf8,
        )?;
        let product = arrow_cast::cast(
            batch
                .column_by_name(Column::ProductId.name())
                .context("product")?,
            &arrow_schema::DataType::Utf8,
        )?;
        let (tenant, product) = (tenant.as_string::<i32>(), product.as_string::<i32>());
        let date = batch
            .column_by_name(Column::SoldDate.name())
            .context("date")?
            .as_primitive::<TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            let row = next_row;
            next_row += 1;
            let (s, e) = (offsets[i] as usize, offsets[i + 1] as usize);
            let v = &values[s..e];
            let t = tenant.value(i).to_string();
            row_of.insert(
                (t.clone(), product.value(i).to_string(), date.value(i)),
                row,
            );
            let mut buf = Vec::with_capacity(args.dim * 4);
            for x in v
                .iter()
                .chain(std::iter::repeat_n(&0.0, args.dim - v.len().min(args.dim)))
            {
                buf.extend_from_slice(&(*x as f32).to_le_bytes());
            }
            vectors.write_all(&buf[..args.dim * 4])?;
            if v.len() != args.dim {
                row_tenants.push(t);
                continue;
            }
            let vn = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            for (qi, q) in queries.iter().enumerate() {
                let dot: f64 = q.iter().zip(v).map(|(a, b)| a * b).sum();
                let score = dot / (qn[qi] * vn);
                for (list, ok) in [(&mut best[qi], true), (&mut best_t[qi], t == tenants[qi])] {
                    if ok && (list.len() < k || score > list[list.len() - 1].0) {
                        list.push((score, row));
                        list.sort_by(|a, b| b.0.total_cmp(&a.0));
                        list.truncate(k);
                    }
                }
            }
            row_tenants.push(t);
        }
    }
    vectors.flush()?;
    eprintln!(
        "exact answers for {} queries in {:.1?}",
        queries.len(),
        t0.elapsed()
    );
    let truth: Vec<Vec<u64>> = best
        .iter()
        .map(|l| l.iter().map(|x| x.1).collect())
        .collect();
    let truth_t: Vec<Vec<u64>> = best_t
        .iter()
        .map(|l| l.iter().map(|x| x.1).collect())
        .collect();
    let recall = |got: &[SimilarSale], want: &[u64]| -> f64 {
        if want.is_empty() {
            return 1.0;
        }
        let ids: Vec<u64> = got
            .iter()
            .filter_map(|s| row_of.get(&key_of(s)).copied())
            .collect();
        want.iter().filter(|w| ids.contains(w)).count() as f64 / want.len() as f64
    };

    // 4. Our exact search (a few runs: each reads every embedding).
    let mut exact_times = Vec::new();
    let mut exact_t_times = Vec::new();
    for (qi, q) in queries.iter().enumerate().take(args.exact_runs) {
        let t = Instant::now();
        let got = table.similar_to(q.clone(), k).exact().await?;
        exact_times.push(t.elapsed());
        let r = recall(&got, &truth[qi]);
        if r < 1.0 {
            eprintln!("warning: exact search recall {r} on query {qi}");
        }
        let t = Instant::now();
        table
            .similar_to(q.clone(), k)
            .filter(ScanFilter::new().tenant(tenants[qi].clone()))
            .exact()
            .await?;
        exact_t_times.push(t.elapsed());
    }
    let exact_p50 = pct(&exact_times, 0.5);
    let exact_t_p50 = pct(&exact_t_times, 0.5);

    // 5. The index, per setting, with a warm cache (a service's steady state): every query
    //    runs once first with the most probes (the first, cold pass is reported apart).
    let max_probes = probes.iter().copied().max().unwrap_or(8);
    let mut cold = Vec::new();
    for (qi, q) in queries.iter().enumerate() {
        let t = Instant::now();
        table.similar_to(q.clone(), k).probes(max_probes).await?;
        cold.push(t.elapsed());
        table
            .similar_to(q.clone(), k)
            .probes(max_probes)
            .filter(ScanFilter::new().tenant(tenants[qi].clone()))
            .await?;
    }
    let (cold_p50, cold_p99) = (pct(&cold, 0.5), pct(&cold, 0.99));
    let mut ours = Vec::new();
    for &(p, refine) in &settings {
        let (mut times, mut times_t, mut rec, mut rec_t) = (vec![], vec![], 0.0, 0.0);
        let mut scored = 0usize;
        let (mut plan_ms, mut index_ms, mut rerank_ms, mut reranked) = (0.0, 0.0, 0.0, 0usize);
        // The same phases of the tenant-filtered queries.
        let (mut t_plan_ms, mut t_index_ms, mut t_rerank_ms, mut t_exact_ms, mut t_scored) =
            (0.0, 0.0, 0.0, 0.0, 0usize);
        for (qi, q) in queries.iter().enumerate() {
            let t = Instant::now();
            let (got, m) = table
                .similar_to(q.clone(), k)
                .probes(p)
                .refine(refine)
                .with_metrics()
                .await?;
            times.push(t.elapsed());
            scored += m.entries_scored;
            plan_ms += m.planning.as_secs_f64() * 1e3;
            index_ms += m.index_time.as_secs_f64() * 1e3;
            rerank_ms += m.rerank_time.as_secs_f64() * 1e3;
            reranked += m.candidates_reranked;
            rec += recall(&got, &truth[qi]);
            let t = Instant::now();
            let (got, m) = table
                .similar_to(q.clone(), k)
                .probes(p)
                .refine(refine)
                .filter(ScanFilter::new().tenant(tenants[qi].clone()))
                .with_metrics()
                .await?;
            times_t.push(t.elapsed());
            t_plan_ms += m.planning.as_secs_f64() * 1e3;
            t_index_ms += m.index_time.as_secs_f64() * 1e3;
            t_rerank_ms += m.rerank_time.as_secs_f64() * 1e3;
            t_exact_ms += m.exact_time.as_secs_f64() * 1e3;
            t_scored += m.entries_scored;
            rec_t += recall(&got, &truth_t[qi]);
        }
        let n = queries.len() as f64;
        ours.push(json!({
            "probes": p,
            "refine": refine,
            "recall": rec / n,
            "p50_ms": pct(&times, 0.5),
            "p99_ms": pct(&times, 0.99),
            "tenant_recall": rec_t / n,
            "tenant_p50_ms": pct(&times_t, 0.5),
            "tenant_p99_ms": pct(&times_t, 0.99),
            "entries_scored_mean": scored as f64 / n,
            "mean_planning_ms": plan_ms / n,
            "mean_scoring_ms": index_ms / n,
            "mean_rerank_ms": rerank_ms / n,
            "mean_reranked": reranked as f64 / n,
            "tenant_mean_planning_ms": t_plan_ms / n,
            "tenant_mean_scoring_ms": t_index_ms / n,
            "tenant_mean_rerank_ms": t_rerank_ms / n,
            "tenant_mean_exact_ms": t_exact_ms / n,
            "tenant_entries_scored_mean": t_scored as f64 / n,
            "speedup_vs_exact": exact_p50 / pct(&times, 0.5),
        }));
    }

    // 6. Peers on the exported vectors.
    let mut peers = serde_json::Value::Null;
    if args.peers {
        let mut qbuf = Vec::new();
        for q in &queries {
            for x in q {
                qbuf.extend_from_slice(&(*x as f32).to_le_bytes());
            }
        }
        std::fs::write(export.join("queries.f32"), qbuf)?;
        std::fs::write(
            export.join("meta.json"),
            serde_json::to_vec(&json!({
                "rows": next_row, "dim": args.dim, "k": k,
                "truth": truth, "truth_tenant": truth_t,
                "query_tenants": tenants,
            }))?,
        )?;
        std::fs::write(
            export.join("tenants.json"),
            serde_json::to_vec(&row_tenants)?,
        )?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/bench_vector_peers.py");
        let out = std::process::Command::new(&args.peer_python)
            .arg(script)
            .arg(&export)
            .output()
            .context("running python/bench_vector_peers.py")?;
        if !out.status.success() {
            bail!(
                "bench_vector_peers.py failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        peers = serde_json::from_slice(&out.stdout).context("peer output is JSON")?;
    }
    let _ = std::fs::remove_dir_all(&export);

    let result = json!({
        "rows": rows, "dim": args.dim, "k": k, "queries": queries.len(), "tenants": args.tenants,
        "cache_mib": args.cache_mib, "embedding_page_bytes": embedding_page_bytes,
        "load_s": load.map(|d| d.as_secs_f64()),
        "index": {
            "lists": report.lists, "build_s": report.duration.as_secs_f64(),
            "build_rows_per_s": build_rows_s, "bytes": index_bytes,
            "share_of_raw_embedding_bytes": index_bytes as f64 / raw_embedding_bytes as f64,
            "share_of_data_file_bytes": index_bytes as f64 / data_bytes as f64,
        },
        "exact": { "p50_ms": exact_p50, "tenant_p50_ms": exact_t_p50, "runs": exact_times.len() },
        "cold_pass": { "probes": max_probes, "p50_ms": cold_p50, "p99_ms": cold_p99 },
        "ours": ours,
        "peers": peers,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "{} rows × {} dims ({} KiB embedding pages), {} queries, k = {k}; index: {} lists, built in {:.1} s ({:.0} rows/s), {:.1} MB = {:.1}% of the raw embeddings ({:.1}% of the data files)",
            rows,
            args.dim,
            embedding_page_bytes / 1024,
            queries.len(),
            report.lists,
            report.duration.as_secs_f64(),
            build_rows_s,
            index_bytes as f64 / 1e6,
            100.0 * index_bytes as f64 / raw_embedding_bytes as f64,
            100.0 * index_bytes as f64 / data_bytes as f64
        );
        println!(
            "| system | setting | recall@{k} | p50 ms | p99 ms | tenant recall | tenant p50 ms | tenant p99 ms |"
        );
        println!("|---|---|--:|--:|--:|--:|--:|--:|");
        println!("| ours exact | – | 1.000 | {exact_p50:.1} | – | 1.000 | {exact_t_p50:.1} | – |");
        println!(
            "| ours index, cold cache | probes {max_probes}, first pass | – | {cold_p50:.1} | {cold_p99:.1} | – | – | – |"
        );
        for o in &ours {
            eprintln!(
                "probes {}: mean planning {:.1} ms, scoring {:.1} ms ({} entries), re-rank {:.1} ms ({} candidates)",
                o["probes"],
                o["mean_planning_ms"],
                o["mean_scoring_ms"],
                o["entries_scored_mean"],
                o["mean_rerank_ms"],
                o["mean_reranked"]
            );
            eprintln!(
                "  tenant: planning {:.1} ms, scoring {:.1} ms ({} entries), re-rank {:.1} ms, exact part {:.1} ms",
                o["tenant_mean_planning_ms"],
                o["tenant_mean_scoring_ms"],
                o["tenant_entries_scored_mean"],
                o["tenant_mean_rerank_ms"],
                o["tenant_mean_exact_ms"]
            );
            println!(
                "| ours index | probes {} refine {} | {:.3} | {:.1} | {:.1} | {:.3} | {:.1} | {:.1} |",
                o["probes"],
                o["refine"],
                o["recall"].as_f64().unwrap_or(f64::NAN),
                o["p50_ms"].as_f64().unwrap_or(f64::NAN),
                o["p99_ms"].as_f64().unwrap_or(f64::NAN),
                o["tenant_recall"].as_f64().unwrap_or(f64::NAN),
                o["tenant_p50_ms"].as_f64().unwrap_or(f64::NAN),
                o["tenant_p99_ms"].as_f64().unwrap_or(f64::NAN)
            );
        }
        if let Some(list) = peers.get("results").and_then(|r| r.as_array()) {
            for p in list {
                println!(
                    "| {} | {} | {:.3} | {:.1} | {:.1} | {} | {} | {} |",
                    p["system"].as_str().unwrap_or("?"),
                    p["setting"].as_str().unwrap_or(""),
                    p["recall"].as_f64().unwrap_or(f64::NAN),
                    p["p50_ms"].as_f64().unwrap_or(f64::NAN),
                    p["p99_ms"].as_f64().unwrap_or(f64::NAN),
                    p["tenant_recall"]
                        .as_f64()
                        .map_or("–".into(), |v| format!("{v:.3}")),
                    p["tenant_p50_ms"]
                        .as_f64()
                        .map_or("–".into(), |v| format!("{v:.1}")),
                    p["tenant_p99_ms"]
                        .as_f64()
                        .map_or("–".into(), |v| format!("{v:.1}")),
                );
            }
            for b in peers
                .get("builds")
                .and_then(|b| b.as_array())
                .into_iter()
                .flatten()
            {
                println!("build {}: {}", b["system"].as_str().unwrap_or("?"), b);
            }
        }
    }
    if scratch {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

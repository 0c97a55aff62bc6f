//! The run's tables, JSON document and targets.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::beside::{self, Beside};
use crate::figures::{fmt_n, verdict};
use crate::soak::{Row, Soak, maintainer_json};
use crate::stats::median;
use crate::{Settings, Variant};

/// One target: what was measured against what limit.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub measured: String,
    /// `None`: not measured in this run (a variant or phase missing).
    pub holds: Option<bool>,
}

impl Target {
    fn new(name: impl Into<String>, measured: impl Into<String>, holds: Option<bool>) -> Self {
        Target {
            name: name.into(),
            measured: measured.into(),
            holds,
        }
    }
}

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{b:.0} B")
    }
}

fn last_of(rows: &[Row], variant: Variant) -> Option<&Row> {
    rows.iter()
        .filter(|r| r.variant == variant.name())
        .max_by_key(|r| r.commits)
}

pub fn targets(
    settings: &Settings,
    rows: &[Row],
    soak: Option<&Soak>,
    beside: Option<&Beside>,
) -> Vec<Target> {
    let mut out = Vec::new();
    let task_latencies = soak.and_then(|s| {
        s.latencies
            .iter()
            .find(|(v, _)| *v == Variant::Task)
            .map(|(_, l)| l)
    });
    match (last_of(rows, Variant::Task), task_latencies) {
        (Some(last), Some(lat)) => {
            let (base, label) = if lat.len() >= 1000 {
                (median(&lat[100..1000]), "commits 100–1,000".to_string())
            } else {
                let n = (settings.every as usize).min(lat.len());
                (median(&lat[..n]), format!("commits 1–{}", fmt_n(n as f64)))
            };
            out.push(Target::new(
                "task: commit p50, last window ≤ 1.25 × p50 early",
                format!(
                    "{:.1} ms vs {:.1} ms ({label}): {:.2}×",
                    last.commit_p50_ms,
                    base,
                    last.commit_p50_ms / base
                ),
                Some(last.commit_p50_ms <= 1.25 * base),
            ));
            out.push(Target::new(
                "task: tenant-month plan ≤ 50 ms",
                format!(
                    "{:.1} ms at {} commits",
                    last.plan_ms,
                    fmt_n(last.commits as f64)
                ),
                Some(last.plan_ms <= 50.0),
            ));
            out.push(Target::new(
                "task: metadata.json ≤ 256 KiB",
                fmt_bytes(last.metadata_json_bytes),
                Some(last.metadata_json_bytes as f64 <= 256.0 * KIB),
            ));
            out.push(Target::new(
                "task: metadata dir ≤ 64 MiB",
                format!(
                    "{} in {} files",
                    fmt_bytes(last.metadata_bytes),
                    last.metadata_files
                ),
                Some(last.metadata_bytes as f64 <= 64.0 * MIB),
            ));
            out.push(Target::new(
                "task: manifests in the current snapshot ≤ 200",
                last.manifests.to_string(),
                Some(last.manifests <= 200),
            ));
        }
        _ => out.push(Target::new("task: (variant not run)", "", None)),
    }
    // merge vs nomerge at the last checkpoint both reached.
    let at = |v: Variant| -> BTreeSet<u64> {
        rows.iter()
            .filter(|r| r.variant == v.name())
            .map(|r| r.commits)
            .collect()
    };
    let common = at(Variant::Merge)
        .intersection(&at(Variant::NoMerge))
        .max()
        .copied();
    match common {
        Some(c) => {
            let find = |v: Variant, first: bool| {
                rows.iter()
                    .find(|r| r.variant == v.name() && r.commits == c)
                    .map_or(
                        f64::NAN,
                        |r| if first { r.plan_first_ms } else { r.plan_ms },
                    )
            };
            for (first, name) in [
                (false, "merge: plan ≤ ⅕ of nomerge at the same commit"),
                (
                    true,
                    "merge: first plan by a fresh reader (manifests from storage) ≤ ⅕ of nomerge's",
                ),
            ] {
                let (m, nm) = (find(Variant::Merge, first), find(Variant::NoMerge, first));
                out.push(Target::new(
                    name,
                    format!(
                        "{m:.1} ms vs {nm:.1} ms at {} commits: {:.2}×",
                        fmt_n(c as f64),
                        m / nm
                    ),
                    Some(m <= nm / 5.0),
                ));
            }
        }
        None => out.push(Target::new(
            "merge: plan ≤ ⅕ of nomerge (merge and nomerge not both run)",
            "",
            None,
        )),
    }
    match soak.map(|s| &s.quarter_peaks_kb) {
        Some(q) if q.len() == 4 && q[0] > 0 => {
            let ratio = q[3] as f64 / q[0] as f64;
            out.push(Target::new(
                "peak RSS, last quarter ≤ 1.2 × first quarter",
                format!(
                    "{:.0} MiB vs {:.0} MiB: {ratio:.2}×",
                    q[3] as f64 / KIB,
                    q[0] as f64 / KIB
                ),
                Some(ratio <= 1.2),
            ));
        }
        _ => out.push(Target::new("peak RSS per quarter (not measured)", "", None)),
    }
    match beside {
        Some(b) => out.push(Target::new(
            "compaction beside a writer every 100 ms lands within 5 s",
            format!(
                "{}{:.2} s, {} attempts, {} writer commits during it",
                b.error.as_deref().map_or(String::new(), |e| format!(
                    "FAILED ({}) after ",
                    e.replace('\n', " ")
                )),
                b.elapsed.as_secs_f64(),
                b.attempts,
                b.writer_commits_during
            ),
            Some(b.error.is_none() && b.elapsed <= beside::LIMIT && b.rows_ok),
        )),
        None => out.push(Target::new(
            "compaction beside a writer (not run: --beside-writer)",
            "",
            None,
        )),
    }
    out
}

pub fn document(
    settings: &Settings,
    filesystem: &str,
    rows: &[Row],
    soak: Option<&Soak>,
    beside: Option<&Beside>,
    targets: &[Target],
) -> Value {
    json!({
        "settings": settings.to_json(),
        "filesystem": filesystem,
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "rss_quarter_peaks_kb": soak.map(|s| s.quarter_peaks_kb.clone()),
        "rss_peaks_reset_per_quarter": soak.map(|s| s.peaks_reset),
        "maintainer": soak.and_then(|s| s.maintainer.as_ref()).map(maintainer_json),
        "beside_writer": beside.map(Beside::to_json),
        "targets": targets.iter().map(|t| json!({
            "target": t.name, "measured": t.measured,
            "verdict": t.holds.map(verdict),
        })).collect::<Vec<_>>(),
    })
}

pub fn print_text(
    settings: &Settings,
    filesystem: &str,
    rows: &[Row],
    soak: Option<&Soak>,
    beside: Option<&Beside>,
    targets: &[Target],
) {
    let m = &settings.maintain_every;
    println!(
        "bench_soak: commits of {} rows ({}-dim, one month {}, {} tenants) via {}; reads: tenant {} in that month; tables on {}",
        settings.rows,
        settings.dim,
        settings.month.format("%Y-%m"),
        settings.tenants,
        if settings.appender {
            "an Appender (push, flush)"
        } else {
            "table.append"
        },
        crate::TENANT,
        filesystem
    );
    println!(
        "task: Maintainer every {:?}, after_commits {:?}, min_small_files {}, orphans_older_than {:?}; table: history.expire.max-snapshot-age-ms={}, min-snapshots-to-keep={}{}",
        m,
        settings.maintain_after_commits,
        settings.min_small_files,
        settings.orphans_older_than,
        settings.max_snapshot_age.as_millis(),
        settings.min_snapshots_to_keep,
        settings
            .min_count_to_merge
            .map(|n| format!("; all tables: commit.manifest.min-count-to-merge={n}"))
            .unwrap_or_default()
    );
    let checkpoints: BTreeSet<u64> = rows.iter().map(|r| r.commits).collect();
    for c in checkpoints {
        println!("\n### after {} commits\n", fmt_n(c as f64));
        println!(
            "| variant | commit p50 ms | commit p99 ms | plan ms | count ms | metadata.json | metadata dir | live data files | manifests | snapshots |"
        );
        println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for v in &settings.variants {
            let Some(r) = rows
                .iter()
                .find(|r| r.variant == v.name() && r.commits == c)
            else {
                continue;
            };
            println!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} files, {} | {} | {} | {} |",
                r.variant,
                r.commit_p50_ms,
                r.commit_p99_ms,
                r.plan_ms,
                r.count_ms,
                fmt_bytes(r.metadata_json_bytes),
                r.metadata_files,
                fmt_bytes(r.metadata_bytes),
                r.live_data_files,
                r.manifests,
                r.snapshots
            );
        }
        if let Some(m) = rows
            .iter()
            .find(|r| r.commits == c && r.maintainer.is_some())
            .and_then(|r| r.maintainer.as_ref())
        {
            println!(
                "\ntask's maintainer so far: {} runs ({} failed), {} compactions of {} files ({} retried attempts), {} snapshots expired, {} files deleted, last run {:.2} s{}",
                m["runs"],
                m["failed_runs"],
                m["compactions"],
                m["files_compacted"],
                m["compaction_retries"],
                m["snapshots_expired"],
                m["files_deleted"],
                m["last_run_s"].as_f64().unwrap_or(f64::NAN),
                m["last_error"]
                    .as_str()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(s) = soak {
        println!(
            "\npeak RSS per quarter of our variants' run ({}): {}",
            if s.peaks_reset {
                "VmHWM reset at each quarter"
            } else {
                "VmHWM since the start: clear_refs refused"
            },
            s.quarter_peaks_kb
                .iter()
                .map(|k| format!("{:.0} MiB", *k as f64 / KIB))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(b) = beside {
        println!(
            "\ncompaction beside a writer: {} small files; {:.2} s, {} attempts, {} → {} files, {} rows rewritten; writer: {} commits ({} during the compaction), p50 {:.1} ms, p99 {:.1} ms; rows {}",
            b.files_before,
            b.elapsed.as_secs_f64(),
            b.attempts,
            b.files_removed,
            b.files_added,
            b.rows_rewritten,
            b.writer_commits,
            b.writer_commits_during,
            b.writer.p50 * 1e3,
            b.writer.p99 * 1e3,
            if b.rows_ok { "all there" } else { "MISMATCH" }
        );
        if let Some(e) = &b.error {
            println!("the compaction FAILED: {e}");
        }
    }
    println!("\n## Targets\n");
    for t in targets {
        match t.holds {
            Some(ok) => println!("{:<6} {}: {}", verdict(ok), t.name, t.measured),
            None => println!("{:<6} {}", "n/a", t.name),
        }
    }
}

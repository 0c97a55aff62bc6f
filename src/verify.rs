//! The seed's verification script, natively: [`SalesHistory::verify`] inspects a table and
//! reports one [`Check`] per property (✓/✗ with details) instead of failing on the first.

use std::collections::{BTreeMap, HashSet};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, TimestampMicrosecondType};
use futures::TryStreamExt;
use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use parquet::basic::Compression;
use parquet::file::metadata::ParquetMetaDataReader;
use serde_json::json;

use crate::catalog::CatalogConfig;
use crate::error::{Error, IcebergResultExt, Result};
use crate::month::Month;
use crate::record::Price;
use crate::schema::{self, Column, TABLE_NAME};
use crate::table::{SalesHistory, namespace_for_stage};

/// One verification check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// Short name, e.g. `schema`.
    pub name: String,
    /// Whether the check passed (always `true` for information).
    pub passed: bool,
    /// `true` for information rather than a check: something that differs from the seed's
    /// layout in a compatible way (an optional column, another codec). Never a failure.
    pub info: bool,
    /// What was found.
    pub detail: String,
}

/// The outcome of [`SalesHistory::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// `pricing_intelligence_{stage}.sales_history`.
    pub table: String,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
    /// Rows in the current snapshot (0 when the table could not be read).
    pub rows: u64,
    /// Rows per `YYYY-MM` month.
    pub rows_per_month: BTreeMap<String, u64>,
}

impl VerifyReport {
    /// `true` when every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        json!({
            "table": self.table,
            "passed": self.passed(),
            "rows": self.rows,
            "rows_per_month": self.rows_per_month,
            "checks": self.checks.iter().map(|c| json!({
                "name": c.name, "passed": c.passed, "info": c.info, "detail": c.detail,
            })).collect::<Vec<_>>(),
        })
        .to_string()
    }

    fn add(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_string(),
            passed,
            info: false,
            detail: detail.into(),
        });
    }

    fn note(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_string(),
            passed: true,
            info: true,
            detail: detail.into(),
        });
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "verify {}", self.table)?;
        for c in &self.checks {
            let mark = match (c.info, c.passed) {
                (true, _) => "ℹ",
                (false, true) => "✓",
                (false, false) => "✗",
            };
            writeln!(f, "  {mark} {:<16} {}", c.name, c.detail)?;
        }
        let checks = self.checks.iter().filter(|c| !c.info).count();
        let failed = self.checks.iter().filter(|c| !c.passed).count();
        let notes = self.checks.len() - checks;
        write!(f, "{} passed, {failed} failed", checks - failed)?;
        if notes > 0 {
            write!(f, ", {notes} notes")?;
        }
        Ok(())
    }
}

impl SalesHistory {
    /// Verifies the table: it exists in the catalog, its schema, required flags, partition
    /// spec, format v2 + Parquet + Snappy (in the files' column chunks, not only the property),
    /// row counts per month, a sample query, data quality (nulls in required columns,
    /// embedding length and finiteness, prices in range, duplicate
    /// `(tenant_id, product_id, sold_date)`), and on Glue the fields Athena reads.
    ///
    /// Problems with the table are reported as failed checks; only a failure to reach the
    /// catalog at all is an `Err`.
    pub async fn verify(config: &CatalogConfig, stage: &str) -> Result<VerifyReport> {
        let namespace = namespace_for_stage(stage)?;
        let mut report = VerifyReport {
            table: format!("{namespace}.{TABLE_NAME}"),
            checks: Vec::new(),
            rows: 0,
            rows_per_month: BTreeMap::new(),
        };
        let connected = config.connect_existing().await?;
        let ident = TableIdent::new(NamespaceIdent::new(namespace), TABLE_NAME.to_string());
        let table = match connected.catalog.load_table(&ident).await {
            Ok(t) => t,
            Err(e) => {
                report.add(
                    "table exists",
                    false,
                    format!("cannot load: {}", config.classify(e)),
                );
                return Ok(report);
            }
        };
        report.add(
            "table exists",
            true,
            table.metadata().location().to_string(),
        );
        check_layout(&table, &mut report);
        check_specs(&table, &mut report).await;
        check_files(&table, &mut report).await;
        check_rows(&table, &mut report).await;
        #[cfg(feature = "glue")]
        if let CatalogConfig::Glue(glue) = config {
            check_glue(glue, &table, &mut report).await;
        }
        Ok(report)
    }
}

fn check_layout(table: &Table, report: &mut VerifyReport) {
    let diffs = schema::drift(table.metadata());
    let (spec, rest): (Vec<_>, Vec<_>) =
        diffs.into_iter().partition(|d| d.starts_with("partition"));
    let (format, columns): (Vec<_>, Vec<_>) = rest.into_iter().partition(|d| {
        d.contains("property")
            || d.contains("format version")
            || d.contains("embedding-dimension")
            || d.contains("write.parquet")
    });
    let summary = |v: &Vec<String>, ok: &str| {
        if v.is_empty() {
            ok.to_string()
        } else {
            v.join("; ")
        }
    };
    report.add(
        "schema",
        columns.is_empty(),
        summary(
            &columns,
            "12 columns, ids 1-12, required flags as specified",
        ),
    );
    let metadata = table.metadata();
    let ok = match crate::Layout::of(metadata.default_partition_spec()) {
        Some(layout) => format!(
            "{layout}: {} (spec {} of {})",
            crate::layout::describe_spec(
                metadata.default_partition_spec(),
                metadata.current_schema()
            ),
            metadata.default_partition_spec_id(),
            metadata.partition_specs_iter().len()
        ),
        None => String::new(),
    };
    report.add("partition spec", spec.is_empty(), summary(&spec, &ok));
    report.add(
        "format",
        format.is_empty(),
        summary(&format, "Iceberg v2, Parquet"),
    );
    for note in schema::layout_notes(table.metadata()) {
        report.note("layout", note);
    }
}

async fn check_files(table: &Table, report: &mut VerifyReport) {
    let tasks = match plan(table).await {
        Ok(t) => t,
        Err(e) => {
            report.add("data files", false, format!("cannot plan the scan: {e}"));
            return;
        }
    };
    let io = table.file_io();
    let mut problems = Vec::new();
    let mut chunks = 0usize;
    let mut codecs: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (path, size, records) in &tasks {
        match footer(io, path, *size).await {
            Ok(meta) => {
                let rows: i64 = meta.row_groups().iter().map(|rg| rg.num_rows()).sum();
                if Some(rows as u64) != *records {
                    problems.push(format!(
                        "{path}: {rows} rows in the file, {records:?} in the manifest"
                    ));
                }
                for rg in meta.row_groups() {
                    for c in rg.columns() {
                        chunks += 1;
                        *codecs.entry(codec_name(c.compression())).or_default() += 1;
                    }
                }
            }
            Err(e) => problems.push(format!("{path}: {e}")),
        }
    }
    let codec_text = match codecs.len() {
        0 => String::new(),
        1 => format!(
            ", all {}",
            codecs.keys().next().copied().unwrap_or_default()
        ),
        _ => {
            let each: Vec<String> = codecs.iter().map(|(c, n)| format!("{n} {c}")).collect();
            format!(" ({})", each.join(", "))
        }
    };
    if codecs.keys().any(|c| *c != "SNAPPY") {
        report.note(
            "codecs",
            format!("column chunks not in SNAPPY (the seed's codec){codec_text}"),
        );
    }
    if problems.is_empty() {
        report.add(
            "data files",
            true,
            format!(
                "{} Parquet files, {chunks} column chunks{codec_text}",
                tasks.len()
            ),
        );
    } else {
        let n = problems.len();
        problems.truncate(3);
        report.add(
            "data files",
            false,
            format!("{n} problems: {}", problems.join("; ")),
        );
    }
}

/// The codec's name without its level (`ZSTD`, not `ZSTD(ZstdLevel(1))`).
fn codec_name(c: Compression) -> &'static str {
    match c {
        Compression::UNCOMPRESSED => "UNCOMPRESSED",
        Compression::SNAPPY => "SNAPPY",
        Compression::GZIP(_) => "GZIP",
        Compression::LZO => "LZO",
        Compression::BROTLI(_) => "BROTLI",
        Compression::LZ4 => "LZ4",
        Compression::ZSTD(_) => "ZSTD",
        Compression::LZ4_RAW => "LZ4_RAW",
    }
}

/// What lives under each partition spec (a table whose layout evolved has several): an
/// information line per spec with live files, rows, and which is the default.
async fn check_specs(table: &Table, report: &mut VerifyReport) {
    let metadata = table.metadata();
    if metadata.partition_specs_iter().len() < 2 {
        return;
    }
    let live = match crate::commit::live(table).await {
        Ok(l) => l,
        Err(e) => {
            report.add(
                "partition specs",
                false,
                format!("cannot list live files: {e}"),
            );
            return;
        }
    };
    let mut per_spec: BTreeMap<i32, (usize, u64)> = BTreeMap::new();
    for l in &live {
        let e = per_spec.entry(l.spec_id).or_default();
        e.0 += 1;
        e.1 += l.file.record_count();
    }
    let mut specs: Vec<_> = metadata.partition_specs_iter().collect();
    specs.sort_by_key(|s| s.spec_id());
    for spec in specs {
        let (files, rows) = per_spec.get(&spec.spec_id()).copied().unwrap_or_default();
        let name =
            crate::Layout::of(spec).map_or_else(|| "not ours".to_string(), |l| l.to_string());
        let default = if spec.spec_id() == metadata.default_partition_spec_id() {
            ", default"
        } else {
            ""
        };
        report.note(
            "partition specs",
            format!(
                "spec {} ({name}{default}) {}: {files} files, {rows} rows",
                spec.spec_id(),
                crate::layout::describe_spec(spec, metadata.current_schema())
            ),
        );
    }
}

async fn plan(table: &Table) -> Result<Vec<(String, u64, Option<u64>)>> {
    if table.metadata().current_snapshot().is_none() {
        return Ok(Vec::new());
    }
    let tasks: Vec<_> = table
        .scan()
        .build()
        .or_ours()?
        .plan_files()
        .await
        .or_ours()?
        .try_collect()
        .await
        .or_ours()?;
    Ok(tasks
        .into_iter()
        .map(|t| (t.data_file_path, t.file_size_in_bytes, t.record_count))
        .collect())
}

/// Reads only the Parquet footer of a file.
async fn footer(
    io: &iceberg::io::FileIO,
    path: &str,
    size: u64,
) -> Result<parquet::file::metadata::ParquetMetaData> {
    let reader = io.new_input(path).or_ours()?.reader().await.or_ours()?;
    if size < 8 {
        return Err(Error::config(path, "file is too small to be Parquet"));
    }
    let tail = reader.read(size - 8..size).await.or_ours()?;
    let tail: [u8; 8] = tail
        .as_ref()
        .try_into()
        .map_err(|_| Error::config(path, "short read"))?;
    let len = parquet::file::metadata::FooterTail::try_from(tail)?.metadata_length() as u64;
    if len + 8 > size {
        return Err(Error::config(path, "corrupt footer length"));
    }
    let buf = reader.read(size - 8 - len..size - 8).await.or_ours()?;
    Ok(ParquetMetaDataReader::decode_metadata(&buf)?)
}

async fn check_rows(table: &Table, report: &mut VerifyReport) {
    match quality(table).await {
        Ok(q) => {
            let expected: Option<u64> = table.metadata().current_snapshot().and_then(|s| {
                s.summary()
                    .additional_properties
                    .get("total-records")?
                    .parse()
                    .ok()
            });
            let counted = q.rows;
            report.rows = counted;
            report.rows_per_month = q.per_month;
            let ok = expected.is_none_or(|e| e == counted);
            report.add(
                "row count",
                ok,
                format!(
                    "{counted} rows in {} months (snapshot summary: {expected:?})",
                    report.rows_per_month.len()
                ),
            );
            report.add(
                "sample query",
                q.sample.is_some() || counted == 0,
                q.sample.unwrap_or_else(|| "table is empty".to_string()),
            );
            let issues = q.issues;
            report.add(
                "data quality",
                issues.is_empty(),
                if issues.is_empty() {
                    "no nulls in required columns, embeddings complete and finite, prices in range, no duplicates".to_string()
                } else {
                    issues.join("; ")
                },
            );
        }
        Err(e) => report.add("row count", false, format!("cannot read the rows: {e}")),
    }
}

struct Quality {
    rows: u64,
    per_month: BTreeMap<String, u64>,
    sample: Option<String>,
    issues: Vec<String>,
}

async fn quality(table: &Table) -> Result<Quality> {
    let mut q = Quality {
        rows: 0,
        per_month: BTreeMap::new(),
        sample: None,
        issues: Vec::new(),
    };
    if table.metadata().current_snapshot().is_none() {
        return Ok(q);
    }
    let dimension = schema::embedding_dimension_of(table.metadata())?;
    let cols = [
        Column::ProductId,
        Column::TenantId,
        Column::SoldPrice,
        Column::SoldDate,
        Column::Embedding,
    ];
    let mut stream = table
        .scan()
        .select(cols.map(|c| c.name()))
        .build()
        .or_ours()?
        .to_arrow()
        .await
        .or_ours()?;
    let mut seen = HashSet::new();
    let (mut nulls, mut bad_emb, mut bad_price, mut dups) = (0u64, 0u64, 0u64, 0u64);
    while let Some(batch) = stream.try_next().await.or_ours()? {
        let col = |c: Column| {
            batch
                .column_by_name(c.name())
                .cloned()
                .ok_or_else(|| Error::invalid(c, None, "missing in scan"))
        };
        let (pid, tid, price, date, emb) = (
            col(Column::ProductId)?,
            col(Column::TenantId)?,
            col(Column::SoldPrice)?,
            col(Column::SoldDate)?,
            col(Column::Embedding)?,
        );
        nulls +=
            (pid.null_count() + tid.null_count() + price.null_count() + date.null_count()) as u64;
        let pid = arrow_cast::cast(&pid, &arrow_schema::DataType::Utf8)?;
        let tid = arrow_cast::cast(&tid, &arrow_schema::DataType::Utf8)?;
        let (pid, tid) = (pid.as_string::<i32>(), tid.as_string::<i32>());
        let price = price.as_primitive::<Decimal128Type>();
        let date = date.as_primitive::<TimestampMicrosecondType>();
        let emb = emb.as_list::<i32>();
        let values = emb.values().as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            q.rows += 1;
            let key = Month::of_micros(date.value(i)).to_string();
            *q.per_month.entry(key.clone()).or_default() += 1;
            if q.sample.is_none() && tid.is_valid(i) {
                q.sample = Some(format!(
                    "tenant {} in {key}: product {}",
                    tid.value(i),
                    pid.value(i)
                ));
            }
            if price.is_valid(i) && Price::check_cents(price.value(i)).is_err() {
                bad_price += 1;
            }
            if emb.is_valid(i) {
                let (s, e) = (
                    emb.value_offsets()[i] as usize,
                    emb.value_offsets()[i + 1] as usize,
                );
                if e - s != dimension || !values.values()[s..e].iter().all(|v| v.is_finite()) {
                    bad_emb += 1;
                }
            }
            if !seen.insert(row_key(tid.value(i), pid.value(i), date.value(i))) {
                dups += 1;
            }
        }
    }
    for (n, what) in [
        (nulls, "nulls in required columns"),
        (bad_emb, "embeddings of the wrong length or not finite"),
        (bad_price, "prices outside decimal(10,2) or negative"),
        (dups, "duplicate (tenant_id, product_id, sold_date)"),
    ] {
        if n > 0 {
            q.issues.push(format!("{n} {what}"));
        }
    }
    // Check the sample query through the public filter path too.
    Ok(q)
}

/// A 128-bit digest of a row's `(tenant_id, product_id, sold_date)`: the duplicate check
/// keeps 16 bytes a row, not both strings (tens of MB for millions of rows, not hundreds).
/// Two rows that differ share a digest with odds of about n² / 2¹²⁹.
fn row_key(tenant: &str, product: &str, micros: i64) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        // SipHash with fixed keys: the same digest for the same row within a run.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        (tenant, product, micros).hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

#[cfg(feature = "glue")]
async fn check_glue(glue: &crate::GlueConfig, table: &Table, report: &mut VerifyReport) {
    let client = glue.glue_client().await;
    let got = client
        .get_table()
        .database_name(table.identifier().namespace().join("."))
        .name(table.identifier().name())
        .set_catalog_id(glue.catalog_id.clone())
        .send()
        .await;
    let t = match got.as_ref().ok().and_then(|r| r.table()) {
        Some(t) => t,
        None => {
            report.add("glue/athena", false, "GetTable failed");
            return;
        }
    };
    let mut problems = Vec::new();
    let params = t.parameters().cloned().unwrap_or_default();
    if !params
        .get("table_type")
        .is_some_and(|v| v.eq_ignore_ascii_case("ICEBERG"))
    {
        problems.push("table_type is not ICEBERG".to_string());
    }
    if params.get("metadata_location").map(String::as_str) != table.metadata_location() {
        problems.push("metadata_location does not match the catalog's table".to_string());
    }
    let sd = t.storage_descriptor();
    if sd.and_then(|s| s.location()) != Some(table.metadata().location()) {
        problems.push("StorageDescriptor location differs from the table location".to_string());
    }
    let cols: Vec<(String, String)> = sd
        .map(|s| {
            s.columns()
                .iter()
                .map(|c| {
                    (
                        c.name().to_string(),
                        c.r#type().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let want: Vec<(String, String)> = Column::ALL
        .iter()
        .map(|c| (c.name().to_string(), c.athena_type().to_string()))
        .collect();
    if cols != want {
        problems.push(format!(
            "StorageDescriptor columns {cols:?} differ from {want:?}"
        ));
    }
    report.add(
        "glue/athena",
        problems.is_empty(),
        if problems.is_empty() {
            "table_type=ICEBERG, metadata_location current, 12 columns with Athena types"
                .to_string()
        } else {
            problems.join("; ")
        },
    );
}

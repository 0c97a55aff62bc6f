//! Typed, fast, correct access to the pricing-intelligence `sales_history` Apache Iceberg
//! table.
//!
//! `sales_history` lives in `pricing_intelligence_{stage}`; it has twelve columns
//! ([`Column`]), is partitioned by `month(sold_date)`, and is stored as Parquet with Snappy
//! in Iceberg format v2. This crate creates the table, validates and appends rows (one atomic
//! snapshot per append, optimistic commits with retries) and scans them back, on the embedded
//! local default (SQLite catalog + a warehouse directory).
//!
//! ```no_run
//! use chrono::{TimeZone, Utc};
//! use sales_history::{CatalogConfig, SaleRecord, SalesHistory};
//!
//! # async fn run() -> sales_history::Result<()> {
//! let table = SalesHistory::ensure(&CatalogConfig::local("./warehouse"), "dev").await?;
//! let sale = SaleRecord::builder("sku-1", "tenant-a", "129.99".parse()?,
//!         Utc.with_ymd_and_hms(2025, 6, 1, 10, 30, 0).unwrap())
//!     .category("handbags")
//!     .brand("Acme")
//!     .embedding(vec![0.0; table.embedding_dimension()])
//!     .build()?;
//! let outcome = table.append(vec![sale]).await?;
//! println!("{outcome:?}");
//! let rows = table.scan().tenant("tenant-a").to_records().await?;
//! assert_eq!(rows.len(), 1);
//! # Ok(()) }
//! ```
//!
//! Iceberg stays an implementation detail: errors are this crate's [`Error`] kinds (the
//! underlying error is their `source()`), and iceberg types appear only in the escape hatches,
//! for callers who need iceberg itself: [`CatalogConfig::Custom`] (any iceberg `Catalog`),
//! [`SalesHistory::iceberg_table`] (the cached `Table`), and the layout as iceberg values in
//! [`schema`] (`iceberg_schema`, `partition_spec`, [`Column::iceberg_type`]).
//!
//! Bad input never reaches storage: every append is validated first and fails with
//! [`Error::InvalidValue`] (naming the column and row) or [`Error::BatchSchemaMismatch`],
//! leaving the table and the warehouse as they were.
#![deny(missing_docs)]
#![warn(rust_2018_idioms, unreachable_pub, rustdoc::broken_intra_doc_links)]

pub mod ann;
mod batch;
mod catalog;
mod classify;
mod commit;
mod error;
mod file_writer;
mod layout;
mod lru;
#[cfg(feature = "fault-injection")]
pub mod faults {
    //! Fault injection at the commit loop's catalog swap and staged writes (feature
    //! `fault-injection`, for tests); see
    //! [`SalesHistory::inject_commit_faults`](crate::SalesHistory::inject_commit_faults).
    pub use crate::catalog::swap::faulty::{CommitFaults, StagedWrite, SwapFault};
}
pub mod iam;
mod month;
mod ops;
mod parquet_props;
mod position;
mod record;
#[cfg(feature = "sample-data")]
pub mod sample;
mod scan;
pub mod schema;
mod similarity;
mod sort;
#[cfg(feature = "sql")]
mod sql;
mod table;
mod tasks;
#[cfg(test)]
mod test_rng;
mod verify;
mod write;

pub use ann::{IndexEmbeddings, IndexReport, SimilarityMetrics};
#[cfg(feature = "glue")]
pub use catalog::GlueConfig;
#[cfg(feature = "s3tables")]
pub use catalog::S3TablesConfig;
#[cfg(any(feature = "glue", feature = "s3tables"))]
pub use catalog::{AwsCredentials, Secret};
pub use catalog::{
    CATALOG_ENV, CatalogConfig, CommitStats, LOCAL_CATALOG_FILE, LOCAL_CATALOG_NAME,
};
pub use commit::CommitSummary;
pub use commit::{
    MANIFEST_MERGE_ENABLED_PROPERTY, MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY,
    MANIFEST_TARGET_SIZE_BYTES_PROPERTY, METADATA_DELETE_AFTER_COMMIT_PROPERTY,
};
pub use error::{BoxError, Error, Result};
pub use file_writer::EMBEDDING_ENCODE_ENV;
pub use layout::{
    Layout, MAX_TENANT_BUCKETS, TENANT_BUCKET_PARTITION_FIELD_NAME, TENANT_PARTITION_FIELD_NAME,
};
pub use ops::compact::{COMPACT_READ_ENV, DEFAULT_TARGET_FILE_SIZE, TARGET_FILE_SIZE_PROPERTY};
pub use ops::maintainer::{DEFAULT_MAX_SNAPSHOTS, DEFAULT_ORPHANS_EVERY};
pub use ops::maintenance::{
    DEFAULT_MAX_SNAPSHOT_AGE_MS, MAX_SNAPSHOT_AGE_PROPERTY, MIN_SNAPSHOTS_TO_KEEP_PROPERTY,
};
pub use ops::{
    Append, AppendOutcome, Appender, AppenderBuilder, AppenderStats, Compact, CompactionReport,
    DeleteReport, DeleteWhere, EvolveLayout, EvolveReport, ExpireSnapshots, Maintainer,
    MaintainerBuilder, MaintainerStats, MaintenanceReport, RemoveOrphanFiles, TenantScope,
};
pub use parquet_props::{
    COMPRESSION_LEVEL_PROPERTY, Codec, DEFAULT_EMBEDDING_PAGE_BYTES, DEFAULT_PAGE_ROW_LIMIT,
    DEFAULT_ROW_GROUP_ROWS, DICTIONARY_MIN_ROWS, EMBEDDING_ENCODING_PROPERTY,
    EMBEDDING_PAGE_SIZE_PROPERTY, EmbeddingEncoding,
};
pub use position::{POSITION_PROPERTY_PREFIX, SourcePosition};
pub use record::{
    MAX_FUTURE_SKEW_MICROS, MIN_SOLD_DATE, Price, SaleRecord, SaleRecordBuilder, Season,
};
pub use scan::{
    BatchStream, DEFAULT_BATCH_SIZE, DEFAULT_EMBEDDING_BATCH_SIZE, DEFAULT_READ_BUFFER_BYTES,
    EMBEDDING_DECODE_ENV, EmbeddingDecoder, PartialSaleRecord, PlannedDataFile, SCAN_PLANNER_ENV,
    Scan, ScanFilter, ScanMetrics, ScanPlan, ScanStream,
};
pub use schema::Column;
pub use similarity::{DEFAULT_REFINE, Metric, SimilarSale, SimilarTo};
#[cfg(feature = "sql")]
pub use sql::{SAMPLE_QUERIES_SQL, SQL_TABLE_NAME, SampleQuery, parse_queries, sample_queries};
pub use table::{
    COMMIT_ID_PROPERTY, EnsurePlan, Freshness, SalesHistory, SnapshotInfo, TableOptions,
    WRITER_PROPERTY, namespace_for_stage,
};
pub use verify::{Check, VerifyReport};

/// The README's Rust examples, compiled (and, where they use the local catalog, run) as doc
/// tests so that they cannot go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The cores this process may use (`std::thread::available_parallelism`, at least 1), asked
/// once: on Linux each ask reads the cgroup files, which costs more than planning a small scan.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

//! The append operation: validate → group rows by month → Parquet (Snappy) per partition, on
//! all cores → one `fast_append` snapshot.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{RecordBatch, UInt32Array};
use chrono::{DateTime, Datelike};
use iceberg::ErrorKind;
use iceberg::io::FileIO;
use iceberg::spec::{DataFile, DataFileFormat, Literal, PartitionKey, Struct, TableMetadata};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, LocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};

use crate::batch::{conform, records_to_batch};
use crate::error::{Error, Result};
use crate::parquet_props::writer_properties;
use crate::record::SaleRecord;
use crate::schema::{Column, PARTITION_FIELD_NAME};
use crate::table::{COMMIT_ID_PROPERTY, SalesHistory, WRITER_PROPERTY};

/// Rows handed to the Parquet writer at a time (compact copies made with `take`).
const CHUNK_ROWS: usize = 1024;

/// What an awaited [`Append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendOutcome {
    /// One new snapshot holds all the appended rows.
    Committed(CommitSummary),
    /// A snapshot with this commit id is already in the table: nothing was written again.
    AlreadyCommitted {
        /// The snapshot that carries the commit id.
        snapshot_id: i64,
        /// The commit id that was found.
        commit_id: String,
    },
    /// There were no rows: no files were written and no snapshot was created.
    NothingToCommit,
}

impl AppendOutcome {
    /// The summary of a new snapshot, if one was committed.
    pub fn committed(&self) -> Option<&CommitSummary> {
        match self {
            AppendOutcome::Committed(s) => Some(s),
            _ => None,
        }
    }
}

/// What one committed append added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitSummary {
    /// The new snapshot's id.
    pub snapshot_id: i64,
    /// The commit id stored in the snapshot summary under [`COMMIT_ID_PROPERTY`].
    pub commit_id: String,
    /// Rows appended.
    pub rows: u64,
    /// Data files added (at least one per month touched).
    pub data_files: usize,
    /// Bytes of Parquet written.
    pub bytes: u64,
}

enum Input {
    Records(Vec<SaleRecord>),
    Batches(Vec<RecordBatch>),
}

/// An append in preparation; `.await` it to run it.
///
/// ```no_run
/// # async fn f(table: &sales_history::SalesHistory, rows: Vec<sales_history::SaleRecord>) -> sales_history::Result<()> {
/// let outcome = table.append(rows).with_commit_id("ingest-2025-06-01-batch-7").await?;
/// println!("{outcome:?}");
/// # Ok(()) }
/// ```
#[must_use = "an append does nothing until it is awaited"]
pub struct Append<'a> {
    table: &'a SalesHistory,
    input: Input,
    commit_id: Option<String>,
    parallelism: Option<usize>,
}

impl<'a> Append<'a> {
    pub(crate) fn from_records(table: &'a SalesHistory, records: Vec<SaleRecord>) -> Self {
        Self::new(table, Input::Records(records))
    }

    pub(crate) fn from_batches(table: &'a SalesHistory, batches: Vec<RecordBatch>) -> Self {
        Self::new(table, Input::Batches(batches))
    }

    fn new(table: &'a SalesHistory, input: Input) -> Self {
        Append {
            table,
            input,
            commit_id: None,
            parallelism: None,
        }
    }

    /// Tags the snapshot with a caller-chosen id (1–128 printable ASCII characters).
    ///
    /// When a snapshot with this id is already in the table, the append writes nothing and
    /// returns [`AppendOutcome::AlreadyCommitted`], so a retry after a crash or a lost answer
    /// never appends twice. Without it a random UUID is used.
    pub fn with_commit_id(mut self, commit_id: impl Into<String>) -> Self {
        self.commit_id = Some(commit_id.into());
        self
    }

    /// How many partitions are encoded at once (default: the available cores).
    pub fn with_parallelism(mut self, tasks: usize) -> Self {
        self.parallelism = Some(tasks.max(1));
        self
    }

    async fn run(self) -> Result<AppendOutcome> {
        let table = self.table;
        let caller_id = self.commit_id.is_some();
        let commit_id = match self.commit_id {
            Some(id) => check_commit_id(id)?,
            None => uuid::Uuid::new_v4().to_string(),
        };
        let dimension = table.embedding_dimension();
        // 1. Validate everything before anything is written.
        let batches = match self.input {
            Input::Records(records) if records.is_empty() => Vec::new(),
            Input::Records(records) => {
                vec![conform(&records_to_batch(&records)?, 0, 0, dimension)?]
            }
            Input::Batches(batches) => {
                let mut offset = 0;
                let mut out = Vec::with_capacity(batches.len());
                for (i, b) in batches.iter().enumerate() {
                    if b.num_rows() > 0 {
                        out.push(conform(b, i, offset, dimension)?);
                    }
                    offset += b.num_rows();
                }
                out
            }
        };
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(AppendOutcome::NothingToCommit);
        }
        if caller_id {
            table.refresh().await?;
            if let Some(found) = find_commit(&table.current(), &commit_id) {
                return Ok(AppendOutcome::AlreadyCommitted {
                    snapshot_id: found,
                    commit_id,
                });
            }
        }
        // 2. Write one set of files per month.
        let current = table.current();
        let tasks = self
            .parallelism
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let files = match write_partitions(&current, &batches, tasks, &commit_id, &written).await {
            Ok(files) => files,
            Err(e) => {
                delete_files(current.file_io(), &take_all(&written)).await;
                return Err(e);
            }
        };
        drop(batches);
        // 3. Commit them as one snapshot.
        let bytes = files.iter().map(DataFile::file_size_in_bytes).sum();
        let data_files = files.len();
        let summary_props = HashMap::from([
            (COMMIT_ID_PROPERTY.to_string(), commit_id.clone()),
            (
                WRITER_PROPERTY.to_string(),
                concat!("sales-history/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ]);
        let tx = Transaction::new(&current);
        let commit = tx
            .fast_append()
            .with_check_duplicate(false)
            .set_snapshot_properties(summary_props)
            .add_data_files(files)
            .apply(tx)
            .map(|tx| tx.commit(table.catalog.as_ref()));
        let result = match commit {
            Ok(fut) => fut.await,
            Err(e) => Err(e),
        };
        match result {
            Ok(new_table) => {
                let snapshot_id = find_commit(&new_table, &commit_id);
                table.set_current(new_table);
                let snapshot_id = snapshot_id.ok_or_else(|| {
                    Error::from(iceberg::Error::new(
                        ErrorKind::Unexpected,
                        format!("committed table has no snapshot with commit id {commit_id}"),
                    ))
                })?;
                Ok(AppendOutcome::Committed(CommitSummary {
                    snapshot_id,
                    commit_id,
                    rows: rows as u64,
                    data_files,
                    bytes,
                }))
            }
            Err(e) => {
                self_heal_after_failed_commit(
                    table, &current, commit_id, &written, e, rows, data_files, bytes,
                )
                .await
            }
        }
    }
}

/// After a commit error: if the snapshot did land (an answer lost on the way back), report it
/// as committed; if it certainly did not, delete the files written for it.
#[allow(clippy::too_many_arguments)]
async fn self_heal_after_failed_commit(
    table: &SalesHistory,
    current: &Table,
    commit_id: String,
    written: &Mutex<Vec<String>>,
    error: iceberg::Error,
    rows: usize,
    data_files: usize,
    bytes: u64,
) -> Result<AppendOutcome> {
    match table.refresh().await {
        Ok(()) => {
            if let Some(snapshot_id) = find_commit(&table.current(), &commit_id) {
                return Ok(AppendOutcome::Committed(CommitSummary {
                    snapshot_id,
                    commit_id,
                    rows: rows as u64,
                    data_files,
                    bytes,
                }));
            }
            delete_files(current.file_io(), &take_all(written)).await;
            if error.kind() == ErrorKind::CatalogCommitConflicts {
                Err(Error::CommitConflict {
                    table: table.name(),
                    source: Box::new(error),
                })
            } else {
                Err(error.into())
            }
        }
        // Outcome unknown: keep the files, they may be referenced.
        Err(_) => Err(Error::CommitStateUnknown {
            table: table.name(),
            commit_id,
            source: Box::new(error),
        }),
    }
}

fn check_commit_id(id: String) -> Result<String> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(id)
    } else {
        Err(Error::config(
            "commit_id",
            format!("{id:?} must be 1-128 printable ASCII characters without spaces"),
        ))
    }
}

/// The snapshot whose summary carries `commit_id`, if any.
pub(crate) fn find_commit(table: &Table, commit_id: &str) -> Option<i64> {
    table
        .metadata()
        .snapshots()
        .find(|s| {
            s.summary()
                .additional_properties
                .get(COMMIT_ID_PROPERTY)
                .map(String::as_str)
                == Some(commit_id)
        })
        .map(|s| s.snapshot_id())
}

fn take_all(written: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(&mut *written.lock().unwrap_or_else(PoisonError::into_inner))
}

async fn delete_files(io: &FileIO, paths: &[String]) {
    for p in paths {
        // Best effort: a file that was never created is fine to miss.
        let _ = io.delete(p).await;
    }
}

/// Months since 1970-01 of a timestamp in µs (Iceberg's `month` transform).
pub(crate) fn month_ordinal(micros: i64) -> i32 {
    DateTime::from_timestamp_micros(micros)
        .map_or(0, |d| (d.year() - 1970) * 12 + d.month0() as i32)
}

/// Rows of one month: `(batch index, row indices)` pairs.
struct MonthWork {
    month: i32,
    rows: usize,
    parts: Vec<(usize, Vec<u32>)>,
}

fn group_by_month(batches: &[RecordBatch]) -> Vec<MonthWork> {
    let mut months: HashMap<i32, MonthWork> = HashMap::new();
    for (bi, batch) in batches.iter().enumerate() {
        let dates = batch
            .column(Column::SoldDate.index())
            .as_primitive::<TimestampMicrosecondType>();
        let mut per_batch: HashMap<i32, Vec<u32>> = HashMap::new();
        for (row, micros) in dates.values().iter().enumerate() {
            per_batch
                .entry(month_ordinal(*micros))
                .or_default()
                .push(row as u32);
        }
        for (month, idx) in per_batch {
            let w = months.entry(month).or_insert(MonthWork {
                month,
                rows: 0,
                parts: Vec::new(),
            });
            w.rows += idx.len();
            w.parts.push((bi, idx));
        }
    }
    let mut work: Vec<MonthWork> = months.into_values().collect();
    // Largest first, so the last task to finish has the least left to do.
    work.sort_by(|a, b| b.rows.cmp(&a.rows).then(a.month.cmp(&b.month)));
    work
}

/// Writes each month to its own Parquet file(s) with `tasks` workers; returns the data files.
async fn write_partitions(
    table: &Table,
    batches: &[RecordBatch],
    tasks: usize,
    commit_id: &str,
    written: &Arc<Mutex<Vec<String>>>,
) -> Result<Vec<DataFile>> {
    let metadata = table.metadata();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().as_ref().clone();
    let props = writer_properties(metadata.properties())?;
    let locations = MonthDirectories {
        data_location: data_location(metadata),
        written: written.clone(),
    };
    let names = DefaultFileNameGenerator::new(
        format!("00000-{}", sanitize(commit_id)),
        Some(uuid::Uuid::new_v4().simple().to_string()),
        DataFileFormat::Parquet,
    );
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        ParquetWriterBuilder::new(props, schema.clone()),
        table.file_io().clone(),
        locations,
        names,
    );
    let queue = Arc::new(Mutex::new(VecDeque::from(group_by_month(batches))));
    let tasks = tasks.clamp(
        1,
        queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            .max(1),
    );
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let task = MonthTask {
            queue: queue.clone(),
            builder: DataFileWriterBuilder::new(rolling.clone()),
            batches: batches.to_vec(),
            key: PartitionKey::new(spec.clone(), schema.clone(), Struct::empty()),
        };
        handles.push(tokio::spawn(task.run()));
    }
    let mut files = Vec::new();
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(f)) => files.extend(f),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(join) => {
                first_error.get_or_insert(Error::from(iceberg::Error::new(
                    ErrorKind::Unexpected,
                    format!("a partition writer task failed: {join}"),
                )));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(files),
    }
}

type MonthWriter = iceberg::writer::base_writer::data_file_writer::DataFileWriter<
    ParquetWriterBuilder,
    MonthDirectories,
    DefaultFileNameGenerator,
>;

/// One encoding task: takes months off the shared queue (largest first) and writes each with
/// its own writer, so at most one month is being encoded per task (bounded memory, like
/// iceberg's `ClusteredWriter`). A finished month is closed (last row group flushed, file
/// written and fsynced by the storage layer) in the background while the next month is
/// encoded; at most one close is pending per task.
struct MonthTask {
    queue: Arc<Mutex<VecDeque<MonthWork>>>,
    builder:
        DataFileWriterBuilder<ParquetWriterBuilder, MonthDirectories, DefaultFileNameGenerator>,
    batches: Vec<RecordBatch>,
    key: PartitionKey,
}

type Closing = tokio::task::JoinHandle<iceberg::Result<Vec<DataFile>>>;

impl MonthTask {
    async fn run(self) -> Result<Vec<DataFile>> {
        let mut files = Vec::new();
        let mut closing: Option<Closing> = None;
        let encoded = self.encode_all(&mut files, &mut closing).await;
        // Even after an error, wait for a pending close: its file must exist (or not)
        // before the caller deletes what was written.
        let last = match closing {
            Some(handle) => join_close(handle).await,
            None => Ok(Vec::new()),
        };
        encoded?;
        files.extend(last?);
        Ok(files)
    }

    async fn encode_all(
        &self,
        files: &mut Vec<DataFile>,
        closing: &mut Option<Closing>,
    ) -> Result<()> {
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(work) = next else { return Ok(()) };
            let mut writer = self.encode(&work).await?;
            if let Some(previous) = closing.take() {
                files.extend(join_close(previous).await?);
            }
            *closing = Some(tokio::spawn(async move { writer.close().await }));
        }
    }

    /// Feeds one month to a new writer as compact chunks (`take`, not slices: iceberg's
    /// NaN-count visitor rescans a sliced list column's whole parent values).
    async fn encode(&self, work: &MonthWork) -> Result<MonthWriter> {
        let key = self
            .key
            .copy_with_data(Struct::from_iter([Some(Literal::int(work.month))]));
        let mut writer = self.builder.build(Some(key)).await?;
        for (bi, rows) in &work.parts {
            for chunk in rows.chunks(CHUNK_ROWS) {
                let idx = UInt32Array::from(chunk.to_vec());
                let part = arrow_select::take::take_record_batch(&self.batches[*bi], &idx)?;
                writer.write(part).await?;
            }
        }
        Ok(writer)
    }
}

async fn join_close(handle: Closing) -> Result<Vec<DataFile>> {
    match handle.await {
        Ok(files) => Ok(files?),
        Err(join) => Err(Error::from(iceberg::Error::new(
            ErrorKind::Unexpected,
            format!("closing a data file failed: {join}"),
        ))),
    }
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// Where data files go: `write.data.path`, else `{table location}/data` (as Java does).
fn data_location(metadata: &TableMetadata) -> String {
    let props = metadata.properties();
    props
        .get("write.data.path")
        .or_else(|| props.get("write.folder-storage.path"))
        .cloned()
        .unwrap_or_else(|| format!("{}/data", metadata.location().trim_end_matches('/')))
}

/// Puts files under `sold_date_month=YYYY-MM/` (the directory names Java and pyiceberg use;
/// iceberg-rust's default would be `sold_date_month=651`) and records every path handed out so
/// a failed append can delete what it wrote.
#[derive(Clone, Debug)]
struct MonthDirectories {
    data_location: String,
    written: Arc<Mutex<Vec<String>>>,
}

impl LocationGenerator for MonthDirectories {
    fn generate_location(&self, partition_key: Option<&PartitionKey>, file_name: &str) -> String {
        let month = partition_key
            .and_then(|k| k.data().fields().first().cloned().flatten())
            .and_then(|l| match l {
                Literal::Primitive(iceberg::spec::PrimitiveLiteral::Int(m)) => Some(m),
                _ => None,
            });
        let path = match month {
            Some(m) => {
                let (y, mo) = (1970 + m.div_euclid(12), m.rem_euclid(12) + 1);
                format!(
                    "{}/{PARTITION_FIELD_NAME}={y:04}-{mo:02}/{file_name}",
                    self.data_location
                )
            }
            None => format!("{}/{file_name}", self.data_location),
        };
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(path.clone());
        path
    }
}

impl<'a> IntoFuture for Append<'a> {
    type Output = Result<AppendOutcome>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_ordinal_matches_iceberg() {
        // 2024-03-15 → (2024-1970)*12 + 2 = 650
        assert_eq!(month_ordinal(1_710_460_800_000_000), 650);
        assert_eq!(month_ordinal(0), 0);
    }

    #[test]
    fn commit_ids_are_checked() {
        assert!(check_commit_id("batch-7".into()).is_ok());
        assert!(check_commit_id(String::new()).is_err());
        assert!(check_commit_id("has space".into()).is_err());
        assert!(check_commit_id("x".repeat(129)).is_err());
    }
}

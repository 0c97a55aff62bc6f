//! The one data-file writer: rows grouped by the partition of the table's default spec (a
//! [`Layout`]: month, or tenant/bucket + month) → Parquet files (the table's codec and
//! `write.parquet.*` settings) in `[tenant_id=…/]sold_date_month=YYYY-MM/` directories,
//! partitions encoded in parallel. Used by every operation that writes data files.
//!
//! Every path the writer creates is recorded in the caller's list as the file is named (before
//! it exists), whether the write then succeeds or fails: the caller owns them (the commit loop's
//! `Owned` set decides whether they are kept or deleted).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::{RecordBatch, UInt32Array};
use arrow_schema::SchemaRef as ArrowSchemaRef;
use iceberg::spec::{DataFile, DataFileFormat, PartitionKey, Struct, TableMetadata};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, LocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};

use crate::error::{Error, IcebergResultExt, Result};
use crate::file_writer::ParquetFileBuilder;
use crate::layout::{Layout, PartitionValue};
use crate::parquet_props::{dictionaries, file_properties};
use crate::tasks::AbortOnDrop;

/// Rows handed to the Parquet writer at a time (compact copies made with `take`).
const CHUNK_ROWS: usize = 1024;

/// Writes `batches` (validated, in our layout) as data files of `table`, one set per month,
/// with up to `tasks` months encoded at once. File names start with `prefix`. Every path
/// created is pushed to `created` (also when writing fails, for the caller to discard).
pub(crate) async fn write_months(
    table: &Table,
    batches: &[RecordBatch],
    tasks: usize,
    prefix: &str,
    created: &mut Vec<String>,
) -> Result<Vec<DataFile>> {
    let ledger = Ledger::default();
    let result = write_with(table, batches, tasks, prefix, &ledger).await;
    created.extend(ledger.take());
    result
}

/// What every writer of one write shares: the table's default spec and layout, its Arrow
/// schema, the file builder (codec, `write.parquet.*`, names, directories) and sort order.
struct Setup {
    spec: iceberg::spec::PartitionSpec,
    schema: iceberg::spec::SchemaRef,
    layout: Layout,
    table_schema: ArrowSchemaRef,
    rollings: Rollings,
    order: Option<(i64, Arc<Vec<crate::sort::SortKey>>)>,
}

impl Setup {
    fn of(table: &Table, prefix: &str, ledger: &Ledger) -> Result<Setup> {
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().as_ref().clone();
        let layout = Layout::of(&spec).ok_or_else(|| Error::Unsupported {
            operation: "write".to_string(),
            reason: format!(
                "the table's partition spec {} is none of the sales_history layouts",
                crate::layout::describe_spec(&spec, &schema)
            ),
        })?;
        let props = file_properties(metadata.properties(), true)?;
        let props_small = file_properties(metadata.properties(), false)?;
        // Batches are validated against our layout; the files are written with the table's
        // own schema, which may be laxer (an adopted Athena table: optional columns and list
        // element).
        let table_schema = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).or_ours()?);
        let locations = MonthDirectories {
            data_location: data_location(metadata),
            ledger: ledger.clone(),
        };
        let names = DefaultFileNameGenerator::new(
            format!("00000-{}", sanitize(prefix)),
            Some(uuid::Uuid::new_v4().simple().to_string()),
            DataFileFormat::Parquet,
        );
        let rolling = |props| {
            RollingFileWriterBuilder::new_with_default_file_size(
                ParquetFileBuilder::new(props, schema.clone()),
                table.file_io().clone(),
                locations.clone(),
                names.clone(),
            )
        };
        let rollings = Rollings {
            with_dictionaries: rolling(props),
            without: rolling(props_small),
        };
        Ok(Setup {
            spec,
            schema,
            layout,
            table_schema,
            rollings,
            order: crate::sort::keys(metadata).map(|(id, keys)| (id, Arc::new(keys))),
        })
    }

    /// A partition key of the default spec (its value filled in per partition).
    fn key(&self) -> PartitionKey {
        PartitionKey::new(self.spec.clone(), self.schema.clone(), Struct::empty())
    }

    /// `files` with the table's sort order id (when it has one) and the spec id.
    fn finish(&self, files: Vec<DataFile>) -> Result<Vec<DataFile>> {
        match &self.order {
            Some((order_id, _)) => files
                .into_iter()
                .map(|f| crate::sort::with_sort_order_id(f, *order_id, self.spec.spec_id()))
                .collect(),
            None => Ok(files),
        }
    }
}

async fn write_with(
    table: &Table,
    batches: &[RecordBatch],
    tasks: usize,
    prefix: &str,
    ledger: &Ledger,
) -> Result<Vec<DataFile>> {
    let setup = Setup::of(table, prefix, ledger)?;
    let work = spread(group_by_partition(batches, setup.layout)?, tasks);
    let tasks = tasks.clamp(1, work.len().max(1));
    let queue = Arc::new(Mutex::new(VecDeque::from(work)));
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let task = MonthTask {
            queue: queue.clone(),
            rollings: setup.rollings.clone(),
            batches: batches.to_vec(),
            table_schema: setup.table_schema.clone(),
            key: setup.key(),
            order: setup.order.as_ref().map(|(_, keys)| keys.clone()),
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
                first_error.get_or_insert(Error::internal(format!(
                    "a partition writer task failed: {join}"
                )));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    setup.finish(files)
}

/// Writes rows of ONE partition of the default spec as they come, in the order given (the
/// caller brings them sorted): a compaction's merge. The current row group and a few batches
/// on their way to it are all it holds; every path it creates is in the result, whatever the
/// outcome.
///
/// The encoding runs in a task of its own, fed through a channel of [`WRITE_AHEAD_BATCHES`]:
/// the writer encodes (byte-stream split, Snappy, the row group's buffers) inside its `write`
/// calls, so a caller merging rows and encoding them in one task used one core for both.
pub(crate) struct PartitionStream {
    setup: Setup,
    ledger: Ledger,
    /// Batches to the writer task; `None` once closed.
    batches: Option<tokio::sync::mpsc::Sender<RecordBatch>>,
    /// The writer task: its files once the channel closes, or its first error.
    writer: Option<AbortOnDrop<Result<Vec<DataFile>>>>,
}

/// Batches a [`PartitionStream`] lets wait for its writer task (each at most a merge chunk:
/// 1,024 rows, ~8 MiB with 1024-dim embeddings).
const WRITE_AHEAD_BATCHES: usize = 2;

impl PartitionStream {
    /// A writer for `partition` (a value of the table's default spec), file names starting
    /// with `prefix`, of about `rows` rows in all.
    pub(crate) async fn open(
        table: &Table,
        partition: &Struct,
        prefix: &str,
        rows: usize,
    ) -> Result<Self> {
        let ledger = Ledger::default();
        let setup = Setup::of(table, prefix, &ledger)?;
        let key = setup.key().copy_with_data(partition.clone());
        let mut writer = setup
            .rollings
            .builder(rows)
            .build(Some(key))
            .await
            .or_ours()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(WRITE_AHEAD_BATCHES);
        let task = AbortOnDrop(tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                writer.write(batch).await.or_ours()?;
            }
            writer.close().await.or_ours()
        }));
        Ok(PartitionStream {
            setup,
            ledger,
            batches: Some(tx),
            writer: Some(task),
        })
    }

    /// Whether the table declares a sort order this crate writes in (then a merge must keep
    /// it; without one rows go as they come).
    pub(crate) fn sort_keys(&self) -> Option<(i64, Arc<Vec<crate::sort::SortKey>>)> {
        self.setup.order.clone()
    }

    /// Appends `batch` (our layout) to the partition's file: hands it to the writer task,
    /// waiting while [`WRITE_AHEAD_BATCHES`] are still on their way.
    pub(crate) async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let batch = in_table_schema(&self.setup.table_schema, batch)?;
        let sent = match &self.batches {
            Some(tx) => tx.send(batch).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer task stopped: it failed on an earlier batch.
        self.batches = None;
        Err(match self.finish_writer().await {
            Err(e) => e,
            Ok(_) => Error::internal("a partition writer stopped before it was closed"),
        })
    }

    /// Closes the last file (its entries carry the sort order id); the paths created go
    /// with the result, also on failure.
    pub(crate) async fn close(mut self) -> (Vec<String>, Result<Vec<DataFile>>) {
        self.batches = None;
        let files = self.finish_writer().await;
        let result = files.and_then(|f| self.setup.finish(f));
        (self.ledger.take(), result)
    }

    /// Gives up (after a failed read): stops the writer task and returns the paths created,
    /// for the caller to discard (once the task has stopped, so nothing writes them again).
    pub(crate) async fn abandon(mut self) -> Vec<String> {
        self.batches = None;
        if let Some(writer) = self.writer.take() {
            writer.0.abort();
            let _ = writer.await;
        }
        self.ledger.take()
    }

    /// The writer task's outcome (its files, or the error it stopped on).
    async fn finish_writer(&mut self) -> Result<Vec<DataFile>> {
        match self.writer.take() {
            Some(writer) => writer
                .await
                .map_err(|e| Error::internal(format!("a partition writer task failed: {e}")))?,
            None => Err(Error::internal(
                "a partition writer was used after it finished",
            )),
        }
    }
}

/// Rows of one partition: `(batch index, row indices)` pairs.
struct MonthWork {
    month: PartitionValue,
    rows: usize,
    parts: Vec<(usize, Vec<u32>)>,
}

/// Row indices per partition of `layout`, largest first (so the last task to finish has the
/// least left to do).
fn group_by_partition(batches: &[RecordBatch], layout: Layout) -> Result<Vec<MonthWork>> {
    let mut groups: HashMap<PartitionValue, MonthWork> = HashMap::new();
    for (bi, batch) in batches.iter().enumerate() {
        let (values, of_row) = layout.partitions_of(batch)?;
        let mut per_batch: Vec<Vec<u32>> = vec![Vec::new(); values.len()];
        for (row, group) in of_row.into_iter().enumerate() {
            per_batch[group as usize].push(row as u32);
        }
        for (value, idx) in values.into_iter().zip(per_batch) {
            let w = groups.entry(value.clone()).or_insert(MonthWork {
                month: value,
                rows: 0,
                parts: Vec::new(),
            });
            w.rows += idx.len();
            w.parts.push((bi, idx));
        }
    }
    let mut work: Vec<MonthWork> = groups.into_values().collect();
    work.sort_by(|a, b| b.rows.cmp(&a.rows).then(a.month.cmp(&b.month)));
    Ok(work)
}

/// Fewer months than tasks (a live stream's flush is usually one month): split the largest
/// months in two until every task has work, so a flush uses all cores. Each part becomes its
/// own data file of the same partition. Parts below `2 × CHUNK_ROWS` rows are not split.
fn spread(mut work: Vec<MonthWork>, tasks: usize) -> Vec<MonthWork> {
    while work.len() < tasks {
        let Some((i, _)) = work
            .iter()
            .enumerate()
            .filter(|(_, w)| w.rows >= 2 * CHUNK_ROWS)
            .max_by_key(|(_, w)| w.rows)
        else {
            break;
        };
        let big = work.swap_remove(i);
        let half = big.rows / 2;
        let (mut first, mut second) = (Vec::new(), Vec::new());
        let mut taken = 0;
        for (bi, rows) in big.parts {
            if taken >= half {
                second.push((bi, rows));
            } else if taken + rows.len() <= half {
                taken += rows.len();
                first.push((bi, rows));
            } else {
                let cut = half - taken;
                taken = half;
                first.push((bi, rows[..cut].to_vec()));
                second.push((bi, rows[cut..].to_vec()));
            }
        }
        for parts in [first, second] {
            let rows = parts.iter().map(|(_, r)| r.len()).sum();
            work.push(MonthWork {
                month: big.month.clone(),
                rows,
                parts,
            });
        }
    }
    work.sort_by(|a, b| b.rows.cmp(&a.rows).then(a.month.cmp(&b.month)));
    work
}

type Rolling =
    RollingFileWriterBuilder<ParquetFileBuilder, MonthDirectories, DefaultFileNameGenerator>;

/// The file builders of one write (codec, `write.parquet.*`, names, directories): with
/// dictionary pages, and without for small files (`parquet_props::dictionaries`).
#[derive(Clone)]
struct Rollings {
    with_dictionaries: Rolling,
    without: Rolling,
}

impl Rollings {
    /// A data-file writer builder (each task or stream its own) for a file of about `rows`
    /// rows.
    fn builder(
        &self,
        rows: usize,
    ) -> DataFileWriterBuilder<ParquetFileBuilder, MonthDirectories, DefaultFileNameGenerator> {
        DataFileWriterBuilder::new(if dictionaries(rows) {
            self.with_dictionaries.clone()
        } else {
            self.without.clone()
        })
    }
}

type MonthWriter = DataFileWriter<ParquetFileBuilder, MonthDirectories, DefaultFileNameGenerator>;

/// One encoding task: takes months off the shared queue (largest first) and writes each with
/// its own writer, so at most one month is being encoded per task (bounded memory, like
/// iceberg's `ClusteredWriter`). A finished month is closed (last row group flushed, file
/// written and fsynced by the storage layer) in the background while the next month is
/// encoded; at most one close is pending per task.
struct MonthTask {
    queue: Arc<Mutex<VecDeque<MonthWork>>>,
    rollings: Rollings,
    batches: Vec<RecordBatch>,
    table_schema: ArrowSchemaRef,
    key: PartitionKey,
    /// The table's sort order: each month's rows are written in it.
    order: Option<Arc<Vec<crate::sort::SortKey>>>,
}

type Closing = tokio::task::JoinHandle<iceberg::Result<Vec<DataFile>>>;

impl MonthTask {
    async fn run(self) -> Result<Vec<DataFile>> {
        let mut files = Vec::new();
        let mut closing: Option<Closing> = None;
        let encoded = self.encode_all(&mut files, &mut closing).await;
        // Even after an error, wait for a pending close: its file must exist (or not)
        // before the writer deletes what it wrote.
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

    /// Feeds one month to a new writer as compact chunks (`take`: a month's rows are scattered
    /// over the batch and written in sort order; with `SALES_HISTORY_EMBEDDING_ENCODE=iceberg`
    /// compact chunks also keep iceberg's NaN-count visitor from rescanning a sliced list
    /// column's whole child values).
    async fn encode(&self, work: &MonthWork) -> Result<MonthWriter> {
        let key = self.key.copy_with_data(work.month.to_struct());
        let mut writer = self
            .rollings
            .builder(work.rows)
            .build(Some(key))
            .await
            .or_ours()?;
        match &self.order {
            // Rows of one batch: `take` in sorted order.
            Some(keys) if work.parts.len() == 1 => {
                let bi = work.parts[0].0;
                let sorted = crate::sort::sorted_pairs(&self.batches, &work.parts, keys);
                let rows: Vec<u32> = sorted.iter().map(|&(_, r)| r as u32).collect();
                self.write_rows(&mut writer, bi, &rows).await?;
            }
            // Rows of several batches: interleaved in sorted order.
            Some(keys) => {
                let sorted = crate::sort::sorted_pairs(&self.batches, &work.parts, keys);
                let refs: Vec<&RecordBatch> = self.batches.iter().collect();
                for chunk in sorted.chunks(CHUNK_ROWS) {
                    let part = crate::sort::interleave_rows(&refs, chunk)?;
                    writer
                        .write(in_table_schema(&self.table_schema, part)?)
                        .await
                        .or_ours()?;
                }
            }
            None => {
                for (bi, rows) in &work.parts {
                    self.write_rows(&mut writer, *bi, rows).await?;
                }
            }
        }
        Ok(writer)
    }

    async fn write_rows(&self, writer: &mut MonthWriter, bi: usize, rows: &[u32]) -> Result<()> {
        for chunk in rows.chunks(CHUNK_ROWS) {
            let idx = UInt32Array::from(chunk.to_vec());
            let part = arrow_select::take::take_record_batch(&self.batches[bi], &idx)?;
            writer
                .write(in_table_schema(&self.table_schema, part)?)
                .await
                .or_ours()?;
        }
        Ok(())
    }
}

/// `batch` relabelled with the table's Arrow schema (zero-copy where only field nullability
/// or metadata differ).
fn in_table_schema(table_schema: &ArrowSchemaRef, batch: RecordBatch) -> Result<RecordBatch> {
    if batch.schema() == *table_schema {
        return Ok(batch);
    }
    // By name: the table may order its (same) columns differently.
    let columns = table_schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(a) => crate::batch::relabel_array(a, f),
            None => Err(Error::config(
                "schema",
                format!("column `{}` of the table is not in the batch", f.name()),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(table_schema.clone(), columns)?)
}

async fn join_close(handle: Closing) -> Result<Vec<DataFile>> {
    match handle.await {
        Ok(files) => files.or_ours(),
        Err(join) => Err(Error::internal(format!(
            "closing a data file failed: {join}"
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

/// The paths one write created, recorded as the location generator hands them out (the
/// only point where iceberg's writer stack tells us a file name before the file exists).
#[derive(Clone, Debug, Default)]
struct Ledger(Arc<Mutex<Vec<String>>>);

impl Ledger {
    fn record(&self, path: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(path.to_string());
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Puts files under their partition's directory (`[tenant_id=…/]sold_date_month=YYYY-MM/`)
/// and records each path in the write's ledger.
#[derive(Clone, Debug)]
struct MonthDirectories {
    data_location: String,
    ledger: Ledger,
}

impl LocationGenerator for MonthDirectories {
    fn generate_location(&self, partition_key: Option<&PartitionKey>, file_name: &str) -> String {
        let dir = partition_key
            .filter(|k| !k.spec().fields().is_empty())
            .and_then(|k| crate::layout::partition_path(k.spec(), k.data()));
        let path = match dir {
            Some(d) => format!("{}/{d}/{file_name}", self.data_location),
            None => format!("{}/{file_name}", self.data_location),
        };
        self.ledger.record(&path);
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::month::Month;

    fn work(month: i32, batches: &[usize]) -> MonthWork {
        let parts: Vec<(usize, Vec<u32>)> = batches
            .iter()
            .enumerate()
            .map(|(bi, n)| (bi, (0..*n as u32).collect()))
            .collect();
        MonthWork {
            month: PartitionValue {
                tenant: None,
                month: Month::from_ordinal(month),
            },
            rows: batches.iter().sum(),
            parts,
        }
    }

    #[test]
    fn one_big_month_is_split_so_every_task_has_work() {
        let out = spread(vec![work(650, &[3000, 2000])], 2);
        assert_eq!(out.len(), 2);
        assert_eq!(out.iter().map(|w| w.rows).sum::<usize>(), 5000);
        assert!(
            out.iter()
                .all(|w| w.month.month.ordinal() == 650 && w.rows == 2500)
        );
        // Every row exactly once.
        let mut seen: Vec<(usize, u32)> = out
            .iter()
            .flat_map(|w| {
                w.parts
                    .iter()
                    .flat_map(|(bi, r)| r.iter().map(|x| (*bi, *x)))
            })
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 5000);
        // Small months stay whole; enough months stay as they are.
        assert_eq!(spread(vec![work(650, &[1500])], 2).len(), 1);
        assert_eq!(
            spread(vec![work(650, &[9000]), work(651, &[10])], 2).len(),
            2
        );
        assert_eq!(spread(vec![work(650, &[9000])], 4).len(), 4);
    }
}

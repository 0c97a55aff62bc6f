//! [`ScanStream`] and the machinery behind it: concurrent parquet-rs readers, or iceberg's own
//! reader for files with row-level deletes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef as ArrowSchemaRef;
use futures::stream::{Stream, StreamExt, TryStreamExt};
use iceberg::scan::TableScan;
use tokio::task::JoinSet;

use super::BatchStream;
use super::metrics::{Counters, ScanMetrics};
use super::reader::{self, PlannedFile, ReadPlan};
use crate::error::{Error, IcebergResultExt, Result};
use crate::schema::Column;

/// Reads `files` with `workers` concurrent readers; batches arrive as they are decoded.
pub(super) fn spawn_readers(
    plan: Arc<ReadPlan>,
    files: Vec<PlannedFile>,
    workers: usize,
) -> BatchStream {
    let workers = workers.clamp(1, files.len().max(1));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(workers * 2);
    // Local files are read with positioned reads and decoded on the blocking pool anyway.
    // Without the `embedding` column a file's decode is short (~50 µs for a tenant layout's
    // 60-row file), and a reader on a worker thread handing every file to the pool and
    // waiting to be woken cost as much again (a month across tenants on a tenant layout is
    // hundreds of such files). Then the readers themselves live on the pool, one thread
    // each, and decode small files where they are (`read_file`'s `inline`). With embeddings
    // the hand-off is noise beside the decode, and readers on the pool measured no faster
    // with twice the peak RSS (a full scan of 4,800 files collected whole), so they stay —
    // but for a scan of one small file (one tenant's month on a tenant layout), where the
    // reader's one hop to the pool and back was ~5% of the query and there is no other
    // file to read side by side (nor another turn, unless a read buffer below the file's
    // size cuts it: those turns then decode one after another).
    // `Handle::block_on` on a pool thread needs the multi-thread runtime to drive I/O.
    let handle = tokio::runtime::Handle::current();
    let one_small_file = matches!(files.as_slice(), [f] if f.size <= reader::INLINE_TURN_BYTES);
    let on_pool = handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        && (!plan.output.contains(&Column::Embedding) || one_small_file)
        && files.iter().all(|f| f.path.starts_with("file:"));
    let queue = Arc::new(Mutex::new(VecDeque::from(files)));
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (tx, queue, plan) = (tx.clone(), queue.clone(), plan.clone());
        let worker = async move {
            let mut pending = on_pool.then(reader::Pending::default);
            loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_front();
                let read = match next {
                    Some(file) => {
                        reader::read_file(plan.clone(), &file, tx.clone(), pending.as_mut()).await
                    }
                    None => match pending.as_mut() {
                        Some(pending) => pending.flush(&plan, &tx).await.map(|_| false),
                        None => Ok(false),
                    },
                };
                match read {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                }
            }
        };
        if on_pool {
            // Stops at its next file or batch once the stream is dropped (the receiver gone).
            let handle = handle.clone();
            set.spawn_blocking(move || handle.block_on(worker));
        } else {
            set.spawn(worker);
        }
    }
    drop(tx);
    received(rx, set)
}

/// The readers' batches as they arrive; once every reader is done, a reader that panicked
/// (its sender dropped without an error sent) ends the stream with an error, not as if the
/// scan were complete. The JoinSet lives in the stream: dropping the stream aborts the
/// readers.
fn received(rx: tokio::sync::mpsc::Receiver<Result<RecordBatch>>, set: JoinSet<()>) -> BatchStream {
    futures::stream::unfold(Some((rx, set)), |state| async move {
        let (mut rx, mut set) = state?;
        if let Some(item) = rx.recv().await {
            return Some((item, Some((rx, set))));
        }
        while let Some(joined) = set.join_next().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                return Some((Err(reader::reader_failed(e)), None));
            }
        }
        None
    })
    .boxed()
}

/// Reads through iceberg's own reader (files with row-level deletes), then filters exactly
/// and projects like the parquet-rs path.
pub(super) async fn iceberg_reader(scan: &TableScan, plan: Arc<ReadPlan>) -> Result<BatchStream> {
    let stream = scan.to_arrow().await.or_ours()?;
    Ok(stream
        .map_err(Error::from_iceberg)
        .and_then(move |batch| {
            let plan = plan.clone();
            async move {
                let batch = match &plan.filter {
                    Some(f) => {
                        let keep = f.evaluate(batch.num_rows(), |c| {
                            batch.column_by_name(c.name()).cloned()
                        })?;
                        arrow_select::filter::filter_record_batch(&batch, &keep)?
                    }
                    None => batch,
                };
                let columns = plan
                    .output
                    .iter()
                    .zip(plan.schema.fields())
                    .map(|(c, field)| {
                        let a = batch.column_by_name(c.name()).ok_or_else(|| {
                            Error::invalid(*c, None, "column missing from iceberg's reader")
                        })?;
                        crate::batch::relabel_array(a, field)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(RecordBatch::try_new(plan.schema.clone(), columns)?)
            }
        })
        .boxed())
}

/// A running scan: a stream of Arrow batches (all with [`schema`](Self::schema)) and its
/// [`ScanMetrics`]. Dropping it stops the readers.
#[must_use = "streams do nothing unless polled"]
pub struct ScanStream {
    pub(super) inner: Option<BatchStream>,
    pub(super) schema: ArrowSchemaRef,
    pub(super) counters: Arc<Counters>,
    pub(super) planned: ScanMetrics,
    pub(super) remaining: Option<usize>,
}

impl std::fmt::Debug for ScanStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanStream")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl ScanStream {
    /// The schema of every batch (the selected columns, table order, Iceberg field ids).
    pub fn schema(&self) -> ArrowSchemaRef {
        self.schema.clone()
    }

    /// Metrics so far (final once the stream has ended).
    pub fn metrics(&self) -> ScanMetrics {
        self.counters.snapshot(&self.planned)
    }
}

impl Stream for ScanStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(mut batch))) => {
                if let Some(left) = this.remaining.as_mut() {
                    if batch.num_rows() >= *left {
                        batch = batch.slice(0, *left);
                        this.inner = None;
                    }
                    *left -= batch.num_rows();
                }
                Counters::add(&this.counters.rows_returned, batch.num_rows() as u64);
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.inner = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.inner = None;
                let m = this.metrics();
                tracing::debug!(
                    files_planned = m.files_planned,
                    files_read = m.files_read,
                    bytes_read = m.bytes_read,
                    rows = m.rows_returned,
                    "scan finished"
                );
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> RecordBatch {
        let a: arrow_array::ArrayRef = Arc::new(arrow_array::Int32Array::from(vec![1, 2]));
        RecordBatch::try_from_iter([("a", a)]).unwrap()
    }

    /// Readers that end normally end the stream; one that panics on the blocking pool (as an
    /// inline reader would) ends it with an error after what the others sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_that_panics_ends_the_stream_with_an_error() {
        for panics in [false, true] {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(4);
            let mut set = JoinSet::new();
            let sender = tx.clone();
            set.spawn(async move {
                let _ = sender.send(Ok(batch())).await;
            });
            set.spawn_blocking(move || {
                let _held = tx;
                assert!(!panics, "a reader's bug");
            });
            let items: Vec<Result<RecordBatch>> = received(rx, set).collect().await;
            let oks = items.iter().filter(|i| i.is_ok()).count();
            assert_eq!(oks, 1, "panics: {panics}");
            let errors: Vec<String> = items
                .iter()
                .filter_map(|i| i.as_ref().err().map(|e| e.to_string()))
                .collect();
            match panics {
                false => assert!(errors.is_empty(), "{errors:?}"),
                true => {
                    assert_eq!(errors.len(), 1, "{errors:?}");
                    assert!(errors[0].contains("panicked"), "{errors:?}");
                    assert!(errors[0].contains("the scan is incomplete"), "{errors:?}");
                    assert!(!items.last().unwrap().is_ok());
                }
            }
        }
    }
}

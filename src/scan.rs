//! Reading the table: [`Scan`] with a tenant / `sold_date` filter, projection and time travel.

use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::Datum;

use crate::batch::batch_to_records;
use crate::error::{Error, Result};
use crate::record::SaleRecord;
use crate::schema::Column;
use crate::table::SalesHistory;

/// A stream of Arrow batches from a scan.
pub type BatchStream = BoxStream<'static, Result<RecordBatch>>;

/// A scan in preparation. Filters become Iceberg predicates, so months outside a `sold_date`
/// range are pruned from the plan and Parquet row groups are skipped; rows are then filtered
/// exactly.
///
/// ```no_run
/// # async fn f(table: &sales_history::SalesHistory) -> sales_history::Result<()> {
/// use chrono::{TimeZone, Utc};
/// let march = table
///     .scan()
///     .tenant("tenant-a")
///     .sold_between(
///         Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap(),
///         Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0).unwrap(),
///     )
///     .to_records()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a scan does nothing until it is run"]
pub struct Scan<'a> {
    table: &'a SalesHistory,
    tenants: Vec<String>,
    sold_range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    columns: Option<Vec<Column>>,
    snapshot_id: Option<i64>,
}

impl<'a> Scan<'a> {
    pub(crate) fn new(table: &'a SalesHistory) -> Self {
        Scan {
            table,
            tenants: Vec::new(),
            sold_range: None,
            columns: None,
            snapshot_id: None,
        }
    }

    /// Keeps rows of this tenant (call again to add more tenants).
    pub fn tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenants.push(tenant_id.into());
        self
    }

    /// Keeps rows with `start <= sold_date < end` (half-open). An empty range is an error
    /// ([`Error::Config`]) when the scan runs.
    pub fn sold_between(mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        self.sold_range = Some((start, end));
        self
    }

    /// Reads only these columns (in table order). [`to_records`](Self::to_records) needs all.
    pub fn select(mut self, columns: impl IntoIterator<Item = Column>) -> Self {
        let mut cols: Vec<Column> = columns.into_iter().collect();
        cols.sort();
        cols.dedup();
        self.columns = Some(cols);
        self
    }

    /// Reads the table as of this snapshot instead of the current one (time travel).
    pub fn snapshot_id(mut self, snapshot_id: i64) -> Self {
        self.snapshot_id = Some(snapshot_id);
        self
    }

    fn predicate(&self) -> Result<Option<Predicate>> {
        let mut parts = Vec::new();
        match self.tenants.as_slice() {
            [] => {}
            [one] => {
                parts.push(Reference::new(Column::TenantId.name()).equal_to(Datum::string(one)))
            }
            many => parts.push(
                Reference::new(Column::TenantId.name()).is_in(many.iter().map(Datum::string)),
            ),
        }
        if let Some((start, end)) = self.sold_range {
            if start >= end {
                return Err(Error::config(
                    "sold_between",
                    format!("empty range: start {start} is not before end {end}"),
                ));
            }
            let col = Column::SoldDate.name();
            parts.push(
                Reference::new(col)
                    .greater_than_or_equal_to(Datum::timestamp_micros(start.timestamp_micros())),
            );
            parts.push(
                Reference::new(col).less_than(Datum::timestamp_micros(end.timestamp_micros())),
            );
        }
        Ok(parts.into_iter().reduce(Predicate::and))
    }

    /// Runs the scan and streams Arrow batches.
    pub async fn stream(self) -> Result<BatchStream> {
        let table = self.table.current();
        if let Some(id) = self.snapshot_id
            && table.metadata().snapshot_by_id(id).is_none()
        {
            return Err(Error::SnapshotNotFound {
                table: self.table.name(),
                snapshot_id: id,
            });
        }
        let predicate = self.predicate()?;
        let mut builder = table.scan();
        builder = match &self.columns {
            Some(cols) => builder.select(cols.iter().map(|c| c.name())),
            None => builder.select_all(),
        };
        if let Some(p) = predicate {
            builder = builder.with_filter(p);
        }
        if let Some(id) = self.snapshot_id {
            builder = builder.snapshot_id(id);
        }
        let scan = builder.build()?;
        let stream = scan.to_arrow().await?;
        Ok(stream.map_err(Error::from).boxed())
    }

    /// Runs the scan and collects all batches.
    pub async fn to_batches(self) -> Result<Vec<RecordBatch>> {
        self.stream().await?.try_collect().await
    }

    /// Runs the scan and returns typed rows. Fails with [`Error::Config`] when a projection
    /// leaves out columns (typed rows need all twelve).
    pub async fn to_records(self) -> Result<Vec<SaleRecord>> {
        if self
            .columns
            .as_ref()
            .is_some_and(|c| c.len() != Column::ALL.len())
        {
            return Err(Error::config(
                "select",
                "typed rows need every column; use to_batches() for a projection",
            ));
        }
        let mut out = Vec::new();
        let mut stream = self.stream().await?;
        while let Some(batch) = stream.next().await {
            out.extend(batch_to_records(&batch?)?);
        }
        Ok(out)
    }

    /// Counts the matching rows (reads only `product_id`).
    pub async fn count(mut self) -> Result<u64> {
        self.columns = Some(vec![Column::ProductId]);
        let mut n = 0u64;
        let mut stream = self.stream().await?;
        while let Some(batch) = stream.next().await {
            n += batch?.num_rows() as u64;
        }
        Ok(n)
    }
}

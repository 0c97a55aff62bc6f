//! [`TenantScope`]: one tenant's view of the table, by construction.
//!
//! The table is multi-tenant and services answer one tenant's questions at a time; a forgotten
//! filter would be a data leak. A scope carries its tenant into every read (as a locked filter,
//! ANDed with whatever the caller adds, so it can narrow but never widen) and every write (a
//! row of another tenant is an [`Error::InvalidValue`](crate::Error::InvalidValue) naming the row; nothing is written).

use arrow_array::RecordBatch;

use super::append::Append;
use super::appender::AppenderBuilder;
use crate::error::Result;
use crate::record::SaleRecord;
use crate::scan::{Scan, ScanFilter};
use crate::similarity::SimilarTo;
use crate::table::SalesHistory;

/// One tenant's scope of the table; built by [`SalesHistory::for_tenant`].
///
/// Every read ([`scan`](Self::scan), [`count`](Self::count), [`similar_to`](Self::similar_to),
/// `sql` with the `sql` feature) sees only the tenant's rows: its filter is pushed down to
/// partition, file, row-group and page pruning like any tenant filter, and filters added on the
/// returned builders are ANDed with it (`.tenant("other")` on a scope's scan matches nothing).
/// Every write ([`append`](Self::append), [`append_batches`](Self::append_batches),
/// [`appender`](Self::appender)) rejects a row of another tenant with
/// [`Error::InvalidValue`](crate::Error::InvalidValue) on `tenant_id`, naming the row, before anything is written.
///
/// ```no_run
/// # async fn f(table: sales_history::SalesHistory) -> sales_history::Result<()> {
/// let tenant = table.for_tenant("tenant-a")?;
/// let rows = tenant.scan().to_records().await?;            // tenant-a's rows only
/// let n = tenant.count().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TenantScope {
    table: SalesHistory,
    tenant: String,
}

impl TenantScope {
    pub(super) fn new(table: SalesHistory, tenant: String) -> Self {
        TenantScope { table, tenant }
    }
}

impl TenantScope {
    /// The scope's tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.tenant
    }

    /// The filter every read of the scope carries.
    fn filter(&self) -> ScanFilter {
        ScanFilter::new().tenant(self.tenant.clone())
    }

    /// A scan of the tenant's rows; filters added to it narrow the tenant's rows further.
    pub fn scan(&self) -> Scan {
        self.table.scan().scoped(self.filter())
    }

    /// Number of the tenant's rows (as [`Scan::count`]).
    pub async fn count(&self) -> Result<u64> {
        self.scan().count().await
    }

    /// Similar sales among the tenant's rows (as [`SalesHistory::similar_to`]).
    pub fn similar_to(&self, query: Vec<f64>, k: usize) -> SimilarTo {
        self.table.similar_to(query, k).scoped(self.filter())
    }

    /// Appends rows that must all be the tenant's (as [`SalesHistory::append`]).
    pub fn append(&self, records: impl IntoIterator<Item = SaleRecord>) -> Append {
        self.table.append(records).scoped(self.tenant.clone())
    }

    /// Appends batches whose rows must all be the tenant's (as
    /// [`SalesHistory::append_batches`]).
    pub fn append_batches(&self, batches: impl IntoIterator<Item = RecordBatch>) -> Append {
        self.table
            .append_batches(batches)
            .scoped(self.tenant.clone())
    }

    /// A streaming appender whose pushes must all be the tenant's rows.
    pub fn appender(&self) -> AppenderBuilder {
        self.table.appender().scoped(self.tenant.clone())
    }

    /// Runs one read-only SQL statement over the tenant's rows: `sales_history` in the query
    /// is a view of them (the table itself is not registered, DDL, DML and other statements
    /// are refused, and no file or URL can be named as a table).
    #[cfg(feature = "sql")]
    pub async fn sql(&self, text: &str) -> Result<Vec<RecordBatch>> {
        crate::sql::scoped_sql(&self.table, &self.tenant, text).await
    }
}

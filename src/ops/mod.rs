//! The operations on the table, and every builder's constructor in one place.
//!
//! Each write operation builds a [`Change`](crate::commit) and hands it to the one commit loop
//! ([`crate::commit::commit`]); each builder is awaited directly (`IntoFuture`):
//!
//! | constructor | builder | what it commits |
//! |---|---|---|
//! | [`SalesHistory::append`], [`SalesHistory::append_batches`] | [`Append`] | one `append` snapshot |
//! | [`SalesHistory::appender`] | [`AppenderBuilder`] → [`Appender`] | an `append` per flush |
//! | [`SalesHistory::compact`] | [`Compact`] | one `replace` snapshot |
//! | [`SalesHistory::delete_where`] | [`DeleteWhere`] | one `delete` or `overwrite` snapshot |
//! | [`SalesHistory::evolve_layout`] | [`EvolveLayout`] | a new default partition spec (no snapshot) |
//! | [`SalesHistory::expire_snapshots`] | [`ExpireSnapshots`] | snapshots removed from the metadata |
//! | [`SalesHistory::remove_orphan_files`] | [`RemoveOrphanFiles`] | nothing (deletes unreferenced files) |
//! | [`SalesHistory::maintainer`] | [`MaintainerBuilder`] → [`Maintainer`] | compactions and expiries, on a schedule |
//! | [`SalesHistory::scan`], [`SalesHistory::similar_to`], [`SalesHistory::for_tenant`] | [`Scan`], [`SimilarTo`], [`TenantScope`] | nothing (reads) |

pub(crate) mod append;
pub(crate) mod appender;
pub(crate) mod compact;
pub(crate) mod delete;
pub(crate) mod evolve;
pub(crate) mod maintainer;
pub(crate) mod maintenance;
mod merge_bin;
pub(crate) mod tenant;

use arrow_array::RecordBatch;

use crate::error::{Error, Result};
use crate::position::SourcePosition;
use crate::record::SaleRecord;
use crate::scan::{Scan, ScanFilter};
use crate::similarity::SimilarTo;
use crate::table::SalesHistory;

pub use append::{Append, AppendOutcome};
pub use appender::{Appender, AppenderBuilder, AppenderStats};
pub use compact::{Compact, CompactionReport};
pub use delete::{DeleteReport, DeleteWhere};
pub use evolve::{EvolveLayout, EvolveReport};
pub use maintainer::{Maintainer, MaintainerBuilder, MaintainerStats};
pub use maintenance::{ExpireSnapshots, MaintenanceReport, RemoveOrphanFiles};
pub use tenant::TenantScope;

impl SalesHistory {
    /// Starts an append of typed rows. Await it to validate, write and commit.
    ///
    /// See [`Append`] for options (commit id, parallelism).
    pub fn append(&self, records: impl IntoIterator<Item = SaleRecord>) -> Append {
        Append::from_records(self.clone(), records.into_iter().collect())
    }

    /// Starts an append of caller-built Arrow batches (zero-copy where the types match).
    pub fn append_batches(&self, batches: impl IntoIterator<Item = RecordBatch>) -> Append {
        Append::from_batches(self.clone(), batches.into_iter().collect())
    }

    /// Starts configuring a streaming [`Appender`] on this table.
    pub fn appender(&self) -> AppenderBuilder {
        AppenderBuilder::new(self.clone())
    }

    /// The highest committed position of `source` (`None` when nothing from it is in the
    /// table): where a restarted service resumes. Reads the table as the
    /// [`Freshness`](crate::Freshness) policy says.
    pub async fn last_committed_position(&self, source: &str) -> Result<Option<SourcePosition>> {
        let table = self.table_for_read().await?;
        Ok(crate::position::committed_in(&table, source))
    }

    /// The table's current partition [`Layout`](crate::Layout) (its default spec), as of
    /// the version this handle holds.
    pub fn layout(&self) -> Result<crate::Layout> {
        let table = self.current();
        let spec = table.metadata().default_partition_spec();
        crate::Layout::of(spec).ok_or_else(|| Error::SchemaDrift {
            table: self.name(),
            differences: vec![format!(
                "partition spec is {}, none of the sales_history layouts",
                crate::layout::describe_spec(spec, table.metadata().current_schema())
            )],
        })
    }

    /// Starts moving the table to another partition layout in place (one commit, no data
    /// rewritten); see [`EvolveLayout`].
    pub fn evolve_layout(&self, layout: crate::Layout) -> EvolveLayout {
        EvolveLayout::new(self.clone(), layout)
    }

    /// Starts a compaction of small data files into target-size files (one `replace`
    /// snapshot); see [`Compact`].
    pub fn compact(&self) -> Compact {
        Compact::new(self.clone())
    }

    /// Starts a copy-on-write delete of the rows `filter` matches (one `delete` or
    /// `overwrite` snapshot); see [`DeleteWhere`].
    pub fn delete_where(&self, filter: ScanFilter) -> DeleteWhere {
        DeleteWhere::new(self.clone(), filter)
    }

    /// Starts a snapshot expiry (by the table's retention properties unless told otherwise);
    /// see [`ExpireSnapshots`].
    pub fn expire_snapshots(&self) -> ExpireSnapshots {
        ExpireSnapshots::new(self.clone())
    }

    /// Starts a removal of orphan files (unreferenced by any snapshot or metadata file, last
    /// modified more than a day ago by default); see [`RemoveOrphanFiles`].
    pub fn remove_orphan_files(&self) -> RemoveOrphanFiles {
        RemoveOrphanFiles::new(self.clone())
    }

    /// Starts configuring the maintenance task a service runs beside its writers
    /// (compaction, snapshot expiry, orphan removal on a schedule); see [`Maintainer`].
    pub fn maintainer(&self) -> MaintainerBuilder {
        MaintainerBuilder::new(self.clone())
    }

    /// Starts a scan of the table's current snapshot.
    pub fn scan(&self) -> Scan {
        Scan::new(self.clone())
    }

    /// Finds the `k` sales whose embedding is nearest to `query`, best first; ties are broken
    /// by `(tenant_id, product_id, sold_date)`. Rows without an embedding are skipped.
    ///
    /// The query must have the table's embedding dimension, be finite, and (for cosine) be
    /// non-zero; otherwise [`Error::InvalidValue`] on `embedding`.
    pub fn similar_to(&self, query: Vec<f64>, k: usize) -> SimilarTo {
        SimilarTo::new(self.clone(), query, k)
    }

    /// A scope that reads and writes only `tenant_id`'s rows (see [`TenantScope`]). An empty
    /// or blank id is an [`Error::Config`].
    pub fn for_tenant(&self, tenant_id: impl Into<String>) -> Result<TenantScope> {
        let tenant = tenant_id.into();
        if tenant.trim().is_empty() {
            return Err(Error::config(
                "tenant_id",
                "a tenant scope needs a non-empty id",
            ));
        }
        Ok(TenantScope::new(self.clone(), tenant))
    }
}

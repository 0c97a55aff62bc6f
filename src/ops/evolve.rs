//! [`EvolveLayout`]: the table moved to another [`Layout`] in place, in one commit.

use crate::commit::{self, Change, ChangeKind};
use crate::error::{Error, Result};
use crate::layout::{Layout, describe_field, describe_spec};
use crate::table::SalesHistory;

/// Moves the table to another partition [`Layout`] in place; built by
/// [`SalesHistory::evolve_layout`].
///
/// One commit adds the layout's partition spec (or re-uses an earlier identical one) and makes
/// it the default; no data file is touched and no snapshot is added. Following the Iceberg
/// spec's rules:
/// - the `month(sold_date)` field keeps its field id; new fields get fresh ids above the
///   table's `last-partition-id`, or the id of an equivalent field of an earlier spec;
/// - old specs are never dropped: files written under them keep their partitioning and are
///   read (and pruned) under their own spec;
/// - the commit requires the default spec id and the last partition id it read, so a
///   concurrent evolve makes this one fail with [`Error::CommitConflict`] (nothing changed);
///   a concurrent append is no conflict (the evolve re-applies on top of it).
///
/// New files (appends, the appender, compaction) are written under the new spec from the
/// next commit on. [`Compact::migrate`](crate::Compact::migrate) moves old files month by
/// month.
///
/// Refused with [`Error::Config`] (nothing changed): a layout with a bad parameter (bucket
/// count 0), or the layout the table already has.
///
/// ```no_run
/// # async fn f(table: sales_history::SalesHistory) -> sales_history::Result<()> {
/// use sales_history::Layout;
/// let plan = table.evolve_layout(Layout::TenantMonth).dry_run(true).await?;
/// println!("{} → {}", plan.from, plan.to);
/// let done = table.evolve_layout(Layout::TenantMonth).await?;
/// assert_eq!(table.layout()?, Layout::TenantMonth);
/// # Ok(()) }
/// ```
#[must_use = "an evolve does nothing until it is awaited"]
#[derive(Debug, Clone)]
pub struct EvolveLayout {
    table: SalesHistory,
    layout: Layout,
    dry_run: bool,
}

/// What [`EvolveLayout`] did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EvolveReport {
    /// Nothing was committed.
    pub dry_run: bool,
    /// The layout before.
    pub from: Layout,
    /// The layout after.
    pub to: Layout,
    /// The default partition spec id before.
    pub from_spec_id: i32,
    /// The new default spec id (`None` in a dry run).
    pub to_spec_id: Option<i32>,
    /// The new spec's fields as `transform(source) as name (id N)` (`None` in a dry run).
    pub spec: Option<String>,
    /// Catalog attempts of the commit (0 in a dry run).
    pub attempts: u32,
}

impl EvolveLayout {
    pub(crate) fn new(table: SalesHistory, layout: Layout) -> Self {
        EvolveLayout {
            table,
            layout,
            dry_run: false,
        }
    }

    /// Check only: validate and report what would change, commit nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    #[tracing::instrument(name = "evolve_layout", skip_all, fields(table = %self.table.name(), to = %self.layout, dry_run = self.dry_run))]
    async fn run(self) -> Result<EvolveReport> {
        let table = &self.table;
        self.layout.validate()?;
        table.refresh().await?;
        let base = table.current();
        let metadata = base.metadata();
        let from = table.layout()?;
        if from == self.layout {
            return Err(Error::config(
                "partitioning",
                format!(
                    "the table already has the {} layout {}; nothing to evolve",
                    self.layout,
                    self.layout.spec_text()
                ),
            ));
        }
        let from_spec_id = metadata.default_partition_spec_id();
        let mut report = EvolveReport {
            dry_run: self.dry_run,
            from,
            to: self.layout,
            from_spec_id,
            to_spec_id: None,
            spec: None,
            attempts: 0,
        };
        if self.dry_run {
            return Ok(report);
        }
        if let Some(reason) = table.swap().refuses("evolve") {
            return Err(Error::Unsupported {
                operation: "evolve_layout".into(),
                reason,
            });
        }
        let kind = ChangeKind::Evolve {
            layout: self.layout,
            expect_spec_id: from_spec_id,
            expect_last_partition_id: metadata.last_partition_id(),
        };
        let change = Change::new(
            table,
            kind,
            format!("evolve-{}", uuid::Uuid::new_v4().simple()),
        );
        let landed = commit::commit(table, change).await?;
        let now = table.current();
        let spec = now.metadata().default_partition_spec();
        report.to_spec_id = Some(spec.spec_id());
        report.spec = Some(
            spec.fields()
                .iter()
                .map(|f| {
                    format!(
                        "{} (id {})",
                        describe_field(f, now.metadata().current_schema()),
                        f.field_id
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
        report.attempts = landed.attempts;
        tracing::info!(
            from = %report.from,
            to = %report.to,
            spec_id = spec.spec_id(),
            spec = %describe_spec(spec, now.metadata().current_schema()),
            "layout evolved"
        );
        Ok(report)
    }
}

impl std::future::IntoFuture for EvolveLayout {
    type Output = Result<EvolveReport>;
    type IntoFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'static>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

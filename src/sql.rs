//! SQL over the table with DataFusion (feature `sql`): [`SalesHistory::sql`] and the seed's
//! twelve sample queries ([`sample_queries`]).

use std::sync::Arc;

use arrow_array::RecordBatch;
use datafusion::prelude::SessionContext;
use iceberg_datafusion::IcebergStaticTableProvider;

use crate::schema::Column;

use crate::error::{Error, IcebergResultExt, Result};
use crate::table::SalesHistory;

/// The name the table has in SQL text.
pub const SQL_TABLE_NAME: &str = "sales_history";

/// The text of `sql/sales_history_queries.sql`: the seed's twelve queries, each introduced by
/// a line `-- Query N: Name` and ended by `;`.
pub const SAMPLE_QUERIES_SQL: &str = include_str!("../sql/sales_history_queries.sql");

/// One of the seed's sample queries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SampleQuery {
    /// 1–12, as numbered in the seed.
    pub number: usize,
    /// The seed's name (e.g. `Brand Performance Analysis`).
    pub name: String,
    /// The SQL text (comments kept, without the final `;`).
    pub sql: String,
}

/// The seed's twelve queries from [`SAMPLE_QUERIES_SQL`], in order.
///
/// ```
/// # #[cfg(feature = "sql")] {
/// let queries = sales_history::sample_queries();
/// assert_eq!(queries.len(), 12);
/// assert_eq!(queries[1].name, "Brand Performance Analysis");
/// # }
/// ```
pub fn sample_queries() -> Vec<SampleQuery> {
    parse_queries(SAMPLE_QUERIES_SQL)
}

/// Splits a file in the `-- Query N: Name` format into queries.
pub fn parse_queries(text: &str) -> Vec<SampleQuery> {
    let mut out: Vec<SampleQuery> = Vec::new();
    for line in text.lines() {
        let header = line
            .strip_prefix("-- Query ")
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(n, name)| Some((n.trim().parse::<usize>().ok()?, name.trim())));
        match (header, out.last_mut()) {
            (Some((number, name)), _) => out.push(SampleQuery {
                number,
                name: name.to_string(),
                sql: String::new(),
            }),
            (None, Some(q)) => {
                q.sql.push_str(line);
                q.sql.push('\n');
            }
            (None, None) => {}
        }
    }
    for q in &mut out {
        let trimmed = q.sql.trim_end().trim_end_matches(';').trim_end();
        q.sql = trimmed.to_string();
    }
    out
}

fn sql_error(e: datafusion::error::DataFusionError) -> Error {
    Error::Query {
        reason: e.to_string(),
    }
}

impl SalesHistory {
    /// A DataFusion session with this table registered as `sales_history` (the state this
    /// handle last saw: refresh first to see other writers' commits).
    ///
    /// Filters on `sold_date` prune months; the session can run many queries.
    pub async fn sql_context(&self) -> Result<SessionContext> {
        let provider = IcebergStaticTableProvider::try_new_from_table(self.table_for_read().await?)
            .await
            .or_ours()?;
        let ctx = SessionContext::new();
        ctx.register_table(SQL_TABLE_NAME, Arc::new(provider))
            .map_err(sql_error)?;
        Ok(ctx)
    }

    /// Runs one SQL statement over the table (registered as `sales_history`) and collects
    /// the result. Parse, planning and execution errors are [`Error::Query`].
    ///
    /// ```no_run
    /// # async fn f(table: &sales_history::SalesHistory) -> sales_history::Result<()> {
    /// let batches = table
    ///     .sql("SELECT brand, COUNT(*) AS n FROM sales_history GROUP BY brand ORDER BY n DESC")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn sql(&self, text: &str) -> Result<Vec<RecordBatch>> {
        let ctx = self.sql_context().await?;
        let frame = ctx.sql(text).await.map_err(sql_error)?;
        frame.collect().await.map_err(sql_error)
    }
}

/// One read-only statement over `tenant`'s rows: `sales_history` is registered as a view that
/// filters the table on the tenant (pushed down to pruning), the table itself under no name;
/// DDL (e.g. `CREATE EXTERNAL TABLE` over the warehouse's files), DML and other statements are
/// refused, and URL tables are off (DataFusion's default).
pub(crate) async fn scoped_sql(
    table: &SalesHistory,
    tenant: &str,
    text: &str,
) -> Result<Vec<RecordBatch>> {
    use datafusion::execution::context::SQLOptions;
    use datafusion::prelude::{col, lit};
    let provider = IcebergStaticTableProvider::try_new_from_table(table.table_for_read().await?)
        .await
        .or_ours()?;
    let ctx = SessionContext::new();
    let view = ctx
        .read_table(Arc::new(provider))
        .and_then(|frame| frame.filter(col(Column::TenantId.name()).eq(lit(tenant))))
        .map_err(sql_error)?
        .into_view();
    ctx.register_table(SQL_TABLE_NAME, view)
        .map_err(sql_error)?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(text, options)
        .await
        .map_err(sql_error)?;
    frame.collect().await.map_err(sql_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_twelve_queries_parse() {
        let q = sample_queries();
        assert_eq!(
            q.iter().map(|q| q.number).collect::<Vec<_>>(),
            (1..=12).collect::<Vec<_>>()
        );
        assert!(q.iter().all(|q| q.sql.contains("FROM sales_history")));
        assert!(q.iter().all(|q| !q.sql.ends_with(';')));
        assert_eq!(q[7].name, "Embedding Similarity Candidates");
    }
}

//! The local catalog's swap: one conditional `UPDATE` of the SQLite row iceberg's and
//! pyiceberg's SQL catalogs read.
//!
//! `UPDATE iceberg_tables SET metadata_location = staged, previous_metadata_location = expected
//! WHERE … AND metadata_location = expected`: zero rows changed is a [`SwapError::Conflict`]; a
//! busy or locked database ([`crate::classify::sqlite_busy`]) is [`SwapError::Throttled`] (the
//! statement did not run); anything else is [`SwapError::Refused`].
//!
//! The connection keeps its rollback journal (`PRAGMA journal_mode=PERSIST`): a commit zeroes
//! the journal's header instead of deleting the file, so a swap creates and deletes no file —
//! on ext4, a file create in a directory with heavy churn costs up to a millisecond, and the
//! journal was one create and one delete per commit (see CHANGELOG, "commit latency on ext4").
//! Durability is the same as the default `DELETE` mode (`synchronous=FULL`), nothing else
//! changes for other connections: a zeroed journal is not a hot journal, and pyiceberg's or
//! iceberg's SQL catalog connections (default mode) read and write the file as before.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{MetadataSwap, Proposal, SwapError, Swapped};
use crate::catalog::{LOCAL_CATALOG_FILE, LOCAL_CATALOG_NAME};
use crate::error::Error;

/// The SQLite swap, with its connection (opened on the first swap, dropped after an error).
pub(crate) struct SqliteSwap {
    path: PathBuf,
    conn: tokio::sync::Mutex<Option<sqlx::SqliteConnection>>,
}

impl std::fmt::Debug for SqliteSwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSwap")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteSwap {
    pub(crate) fn new(warehouse: &Path) -> Self {
        SqliteSwap {
            path: warehouse.join(LOCAL_CATALOG_FILE),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    fn failed(&self, what: &str, e: sqlx::Error) -> SwapError {
        let busy = crate::classify::sqlite_busy(&e);
        let error = Error::Catalog {
            message: format!("{what} the local catalog {}: {e}", self.path.display()),
            retryable: crate::classify::sqlx_retryable(&e),
            source: Box::new(e),
        };
        if busy {
            SwapError::Throttled(format!("the local catalog is busy: {error}"))
        } else {
            SwapError::Refused(error)
        }
    }
}

/// The swap's connection, opened on first use.
async fn connection<'a>(
    swap: &SqliteSwap,
    guard: &'a mut Option<sqlx::SqliteConnection>,
) -> Result<&'a mut sqlx::SqliteConnection, SwapError> {
    use sqlx::ConnectOptions;
    Ok(match guard {
        Some(c) => c,
        None => guard.insert(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&swap.path)
                .create_if_missing(false)
                .busy_timeout(std::time::Duration::from_secs(5))
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Persist)
                .connect()
                .await
                .map_err(|e| swap.failed("opening", e))?,
        ),
    })
}

#[async_trait]
impl MetadataSwap for SqliteSwap {
    async fn current_location(&self, ident: &iceberg::TableIdent) -> Option<String> {
        use sqlx::Row;
        let mut guard = self.conn.lock().await;
        let conn = connection(self, &mut guard).await.ok()?;
        let row = sqlx::query(
            "SELECT metadata_location FROM iceberg_tables \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        )
        .bind(LOCAL_CATALOG_NAME)
        .bind(ident.namespace().join("."))
        .bind(ident.name())
        .fetch_optional(&mut *conn)
        .await;
        match row {
            Ok(row) => row?.try_get::<Option<String>, _>(0).ok().flatten(),
            Err(e) => {
                tracing::debug!(error = %e, "probing the local catalog failed; the table is loaded");
                *guard = None;
                None
            }
        }
    }

    async fn swap(&self, proposal: Proposal<'_>) -> Result<Swapped, SwapError> {
        let Proposal::Location {
            ident,
            expected,
            staged,
        } = proposal
        else {
            return Err(SwapError::Refused(Error::internal(
                "the SQLite swap takes a staged metadata location",
            )));
        };
        let mut guard = self.conn.lock().await;
        let conn = connection(self, &mut guard).await?;
        let result = sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
             AND metadata_location = ?",
        )
        .bind(staged)
        .bind(expected)
        .bind(LOCAL_CATALOG_NAME)
        .bind(ident.namespace().join("."))
        .bind(ident.name())
        .bind(expected)
        .execute(&mut *conn)
        .await;
        match result {
            Ok(r) if r.rows_affected() == 1 => Ok(Swapped::AtStaged),
            Ok(_) => Err(SwapError::Conflict(format!(
                "the table's metadata location is no longer {expected}"
            ))),
            Err(e) => {
                let outcome = self.failed("updating", e);
                if matches!(outcome, SwapError::Refused(_)) {
                    *guard = None;
                }
                Err(outcome)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CatalogConfig, SalesHistory};

    /// The SQLite compare-and-swap is enforced: a swap from a location the table is not at
    /// changes nothing; from the right one it moves the table.
    #[tokio::test]
    async fn the_sqlite_swap_refuses_a_stale_location() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = CatalogConfig::local(dir.path());
        let table = SalesHistory::ensure(&config, "cas").await.expect("ensure");
        let swap = SqliteSwap::new(dir.path());
        let ident = table.iceberg_table().identifier().clone();
        let current = table
            .iceberg_table()
            .metadata_location()
            .expect("location")
            .to_string();
        let stale = format!("{current}.stale");
        let outcome = swap
            .swap(Proposal::Location {
                ident: &ident,
                expected: &stale,
                staged: "file:///elsewhere.metadata.json",
            })
            .await;
        assert!(
            matches!(outcome, Err(SwapError::Conflict(_))),
            "{outcome:?}"
        );
        table.refresh().await.expect("refresh");
        assert_eq!(
            table.iceberg_table().metadata_location(),
            Some(current.as_str())
        );
        // The right expected location swaps (to a copy of the same metadata, so it loads).
        let copy = current.replace(".metadata.json", "-copy.metadata.json");
        let io = table.iceberg_table().file_io().clone();
        let bytes = io.new_input(&current).unwrap().read().await.unwrap();
        io.new_output(&copy).unwrap().write(bytes).await.unwrap();
        swap.swap(Proposal::Location {
            ident: &ident,
            expected: &current,
            staged: &copy,
        })
        .await
        .expect("swap from the current location");
        table.refresh().await.expect("refresh");
        assert_eq!(
            table.iceberg_table().metadata_location(),
            Some(copy.as_str())
        );
    }

    /// A commit keeps the rollback journal (zeroed, not a hot journal) instead of creating and
    /// deleting it; a connection in SQLite's default mode still reads and writes the catalog
    /// afterwards, and the next commit lands.
    #[cfg(feature = "sample-data")]
    #[tokio::test]
    async fn commits_keep_the_journal_and_other_connections_are_unaffected() {
        use crate::TableOptions;
        use crate::sample::{SampleConfig, SampleGenerator};
        use sqlx::{ConnectOptions, Row};
        let dir = tempfile::tempdir().expect("tempdir");
        let config = CatalogConfig::local(dir.path());
        let table = SalesHistory::ensure_with(
            &config,
            "journal",
            TableOptions::default().embedding_dimension(8),
        )
        .await
        .expect("ensure");
        let journal = dir.path().join(format!("{LOCAL_CATALOG_FILE}-journal"));
        let rows = SampleGenerator::new(SampleConfig::default().months(1).embedding_dimension(8))
            .take_records(3);
        table.append(rows.clone()).await.expect("append");
        assert!(journal.exists(), "no persistent journal after a commit");
        let header = std::fs::read(&journal).expect("journal");
        assert!(
            header.iter().take(28).all(|b| *b == 0),
            "the journal's header is not zeroed: a hot journal"
        );
        // Another connection, default journal mode: reads the location the commit set, writes.
        let mut other = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join(LOCAL_CATALOG_FILE))
            .connect()
            .await
            .expect("connect");
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&mut other)
            .await
            .expect("pragma")
            .get(0);
        assert_eq!(mode, "delete");
        let location: String = sqlx::query(
            "SELECT metadata_location FROM iceberg_tables WHERE table_name = 'sales_history'",
        )
        .fetch_one(&mut other)
        .await
        .expect("select")
        .get(0);
        table.refresh().await.expect("refresh");
        assert_eq!(
            table.iceberg_table().metadata_location(),
            Some(location.as_str())
        );
        sqlx::query("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
            .execute(&mut other)
            .await
            .expect("write from the other connection");
        drop(other);
        table.append(rows).await.expect("the next commit");
        assert_eq!(table.scan().count().await.expect("count"), 6);
    }
}

//! The local catalog's swap: one conditional `UPDATE` of the SQLite row iceberg's and
//! pyiceberg's SQL catalogs read.
//!
//! `UPDATE iceberg_tables SET metadata_location = staged, previous_metadata_location = expected
//! WHERE … AND metadata_location = expected`: zero rows changed is a [`SwapError::Conflict`]; a
//! busy or locked database ([`crate::classify::sqlite_busy`]) is [`SwapError::Throttled`] (the
//! statement did not run); anything else is [`SwapError::Refused`].

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

#[async_trait]
impl MetadataSwap for SqliteSwap {
    async fn swap(&self, proposal: Proposal<'_>) -> Result<Swapped, SwapError> {
        use sqlx::ConnectOptions;
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
        let conn = match &mut *guard {
            Some(c) => c,
            None => guard.insert(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&self.path)
                    .create_if_missing(false)
                    .busy_timeout(std::time::Duration::from_secs(5))
                    .connect()
                    .await
                    .map_err(|e| self.failed("opening", e))?,
            ),
        };
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
}

//! Custom catalogs' swap: iceberg's own `Catalog::update_table`, for appends (iceberg's
//! `fast_append`) and snapshot expiry (iceberg's `expire_snapshots`) only.
//!
//! A custom catalog writes and names the metadata file itself inside `update_table`, and
//! iceberg 0.10.1's `TableCommit` cannot be built outside iceberg, so this swap cannot take a
//! staged metadata file: it runs iceberg's action on the version the attempt read. Rewrites
//! (compaction, `delete_where`) need a snapshot that removes files, which no iceberg 0.10.1
//! action makes: they are refused here ([`MetadataSwap::refuses`]).
//!
//! The action is pinned to the attempt's version: iceberg's transaction reloads the table
//! before committing and would silently rebase onto a newer version whose summary the attempt
//! never read, so `load_table` answers with the attempt's version, and a refused
//! `update_table` is final for the attempt (iceberg's own retry is off; the loop retries).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{
    Catalog, ErrorKind, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent,
};

use super::{MetadataSwap, Proposal, SwapError, Swapped};
use crate::catalog::GuardedCatalog;
use crate::error::Error;

/// The swap of a custom catalog.
#[derive(Debug)]
pub(crate) struct UpdateTableSwap {
    catalog: Arc<GuardedCatalog>,
}

impl UpdateTableSwap {
    pub(crate) fn new(catalog: Arc<GuardedCatalog>) -> Self {
        UpdateTableSwap { catalog }
    }
}

#[async_trait]
impl MetadataSwap for UpdateTableSwap {
    fn takes_staged_metadata(&self) -> bool {
        false
    }

    fn refuses(&self, operation: &str) -> Option<String> {
        (!matches!(operation, "append" | "expire")).then(|| {
            "a custom catalog commits through iceberg's Catalog::update_table, which iceberg \
             0.10.1 offers for appends and snapshot expiry only; rewrites need the Local, Glue \
             or S3 Tables catalog configuration"
                .to_string()
        })
    }

    async fn swap(&self, proposal: Proposal<'_>) -> Result<Swapped, SwapError> {
        let (base, result) = match proposal {
            Proposal::Append {
                base,
                files,
                properties,
            } => {
                let tx = Transaction::new(base);
                let tx = tx
                    .fast_append()
                    .with_check_duplicate(false)
                    .set_snapshot_properties(properties)
                    .add_data_files(files.to_vec())
                    .apply(tx);
                (base, tx)
            }
            Proposal::Expire {
                base,
                snapshot_ids,
                older_than_ms,
                retain_last,
            } => {
                let tx = Transaction::new(base);
                let tx = tx
                    .expire_snapshots()
                    .expire_snapshot_ids(snapshot_ids.to_vec())
                    .expire_older_than_ms(older_than_ms)
                    .retain_last(retain_last.max(1))
                    .apply(tx);
                (base, tx)
            }
            Proposal::Location { .. } => {
                return Err(SwapError::Refused(Error::internal(
                    "a custom catalog cannot take a staged metadata location",
                )));
            }
        };
        // Building the action failed before anything was sent.
        let tx = result.map_err(|e| SwapError::Refused(Error::from_iceberg(e)))?;
        let pinned = Pinned {
            base: base.clone(),
            inner: &self.catalog,
            retryable: std::sync::atomic::AtomicBool::new(false),
        };
        let result = tx.commit(&pinned).await;
        let retryable = pinned.retryable.load(std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(table) => Ok(Swapped::Table(Box::new(table))),
            Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => {
                Err(SwapError::Conflict(e.message().to_string()))
            }
            Err(e) if crate::classify::is_throttling(&e) => {
                Err(SwapError::Throttled(format!("throttled: {}", e.message())))
            }
            // The catalog's error as it was (its retryable flag is cleared for iceberg's own
            // loop, see `Pinned`): retryable (unreachable, reset, a 5xx, a gateway timeout)
            // means the request may have been applied.
            Err(e) => Err(match Error::from_iceberg(e.with_retryable(retryable)) {
                e if e.is_retryable() => SwapError::Unknown(e),
                e => SwapError::Refused(e),
            }),
        }
    }
}

/// The catalog as one attempt sees it (see the module docs). `retryable` keeps the
/// catalog's own retryable flag of a refused `update_table`, which is cleared for iceberg.
#[derive(Debug)]
struct Pinned<'a> {
    base: Table,
    inner: &'a GuardedCatalog,
    retryable: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Catalog for Pinned<'_> {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> iceberg::Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        if table == self.base.identifier() {
            Ok(self.base.clone())
        } else {
            self.inner.load_table(table).await
        }
    }

    async fn drop_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(
        &self,
        table: &TableIdent,
        metadata_location: String,
    ) -> iceberg::Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }

    async fn update_table(&self, commit: TableCommit) -> iceberg::Result<Table> {
        self.inner.update_table(commit).await.map_err(|e| {
            self.retryable
                .store(e.retryable(), std::sync::atomic::Ordering::Relaxed);
            e.with_retryable(false)
        })
    }
}

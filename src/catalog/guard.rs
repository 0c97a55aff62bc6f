//! A thin wrapper around the real catalog: the commit counters a caller can log
//! ([`CommitStats`], fed by the commit loop with the jitter it sleeps after a refused swap, so
//! writers that collided do not collide again in lockstep), and a missing Glue database/table
//! (reported by iceberg-catalog-glue as "unexpected") turned into `TableNotFound`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::{
    Catalog, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit, TableCreation, TableIdent,
};

/// Upper bound of the random pause after a conflict or a throttled commit.
const MAX_JITTER_MS: u64 = 50;

/// Counters of one table handle's commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitStats {
    /// Catalog commits that succeeded.
    pub commits: u64,
    /// Commit attempts refused because another writer committed first (then retried).
    pub conflicts: u64,
    /// Commit attempts refused by throttling (then retried).
    pub throttled: u64,
}

pub(crate) struct GuardedCatalog {
    inner: Arc<dyn Catalog>,
    commits: AtomicU64,
    attempts: AtomicU64,
    conflicts: AtomicU64,
    throttled: AtomicU64,
}

impl std::fmt::Debug for GuardedCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedCatalog")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl GuardedCatalog {
    pub(crate) fn new(inner: Arc<dyn Catalog>) -> Self {
        GuardedCatalog {
            inner,
            commits: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// Counts one swap of the commit loop: `Ok` a success, `Err(true)` a refusal by
    /// throttling, `Err(false)` a conflict. After a refusal, sleeps a random jitter.
    pub(crate) async fn record_swap(&self, outcome: std::result::Result<(), bool>) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(throttled) => {
                if throttled {
                    self.throttled.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                }
                let pause = jitter().await;
                tracing::debug!(jitter_ms = pause, throttled, "swap refused; jitter");
            }
        }
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }
}

/// Sleeps a random 0–[`MAX_JITTER_MS`] ms; returns the pause in ms.
async fn jitter() -> u64 {
    let ms = (uuid::Uuid::new_v4().as_u128() % (MAX_JITTER_MS as u128 + 1)) as u64;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[async_trait]
impl Catalog for GuardedCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        self.inner.load_table(table).await.map_err(|e| {
            // iceberg's Glue catalog reports a missing database or table as an "unexpected"
            // error carrying Glue's EntityNotFoundException: give it its proper kind here, once,
            // for every caller (open, refresh, verify, plan_ensure).
            if crate::classify::is_glue_not_found(&e) {
                iceberg::Error::new(
                    ErrorKind::TableNotFound,
                    format!("table {table} does not exist"),
                )
                .with_source(e)
            } else {
                e
            }
        })
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        // Counted, classified and retried by the commit loop (`crate::commit`), which calls
        // this only through the custom catalogs' swap.
        self.inner.update_table(commit).await
    }
}

//! A wrapper around the real catalog that fails, or drops the answer of, chosen calls — the
//! catalog side of fault injection (`iceberg::Catalog` is a public trait; nothing of ours is
//! mocked: every call that is let through reaches the real SQLite or Glue catalog).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit, TableCreation,
    TableIdent,
};

/// What to do to one `update_table` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Refuse as a concurrent modification (retryable), without reaching the catalog.
    Conflict,
    /// Refuse as throttled (as Glue's ThrottlingException surfaces), without reaching it.
    Throttle,
    /// Refuse as access denied (not retryable), without reaching it.
    AccessDenied,
    /// Let the commit through, then lose the answer.
    LostAnswer,
    /// Let the commit through, lose the answer, and fail the next `load_table` as well.
    LostAnswerAndReload,
}

/// Seeded random fault odds: (rng state, [(fault, per-mille)]).
type RandomFaults = Option<(u64, Vec<(Fault, u32)>)>;

#[derive(Debug)]
pub struct FaultyCatalog {
    inner: Arc<dyn Catalog>,
    faults: Mutex<VecDeque<Fault>>,
    /// When set, each `update_table` draws a fault with these odds (seeded).
    random: Mutex<RandomFaults>,
    /// Loads still to fail (a lost answer followed by an unreachable catalog for as long as
    /// the commit loop looks for its commit id: 4 reads).
    fail_next_load: Mutex<u32>,
    /// When set, the next `load_table` reads the table at once but answers this much later
    /// (a slow refresh whose answer arrives after newer commits).
    slow_next_load: Mutex<Option<std::time::Duration>>,
    /// When set, every `update_table` waits this long first (a stalled catalog).
    stall_updates: Mutex<Option<std::time::Duration>>,
    pub injected: Mutex<HashMap<&'static str, u64>>,
    pub updates: AtomicU64,
}

impl FaultyCatalog {
    pub fn new(inner: Arc<dyn Catalog>) -> Arc<Self> {
        Arc::new(FaultyCatalog {
            inner,
            faults: Mutex::new(VecDeque::new()),
            random: Mutex::new(None),
            fail_next_load: Mutex::new(0),
            slow_next_load: Mutex::new(None),
            stall_updates: Mutex::new(None),
            injected: Mutex::new(HashMap::new()),
            updates: AtomicU64::new(0),
        })
    }

    /// Queue faults for the next `update_table` calls, in order.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.faults.lock().unwrap().extend(faults);
    }

    /// Inject faults at random: each update draws one of `odds` (per-mille), seeded.
    #[cfg_attr(not(all(feature = "python-tests", feature = "glue")), allow(dead_code))]
    pub fn randomize(&self, seed: u64, odds: Vec<(Fault, u32)>) {
        *self.random.lock().unwrap() = Some((seed, odds));
    }

    /// Every `update_table` waits `delay` before reaching the catalog (`None`: no stall).
    pub fn stall_updates(&self, delay: Option<std::time::Duration>) {
        *self.stall_updates.lock().unwrap() = delay;
    }

    /// The next `load_table` answers `delay` after it has read the table.
    pub fn slow_next_load(&self, delay: std::time::Duration) {
        *self.slow_next_load.lock().unwrap() = Some(delay);
    }

    pub fn injected_total(&self) -> u64 {
        self.injected.lock().unwrap().values().sum()
    }

    fn next_fault(&self) -> Option<Fault> {
        if let Some(f) = self.faults.lock().unwrap().pop_front() {
            return Some(f);
        }
        let mut random = self.random.lock().unwrap();
        let (state, odds) = random.as_mut()?;
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let roll = ((*state >> 33) % 1000) as u32;
        let mut acc = 0;
        for (fault, per_mille) in odds.iter() {
            acc += per_mille;
            if roll < acc {
                return Some(*fault);
            }
        }
        None
    }

    fn count(&self, name: &'static str) {
        *self.injected.lock().unwrap().entry(name).or_default() += 1;
    }
}

#[async_trait]
impl Catalog for FaultyCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }
    async fn create_namespace(
        &self,
        ns: &NamespaceIdent,
        props: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.inner.create_namespace(ns, props).await
    }
    async fn get_namespace(&self, ns: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(ns).await
    }
    async fn namespace_exists(&self, ns: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(ns).await
    }
    async fn update_namespace(
        &self,
        ns: &NamespaceIdent,
        props: HashMap<String, String>,
    ) -> Result<()> {
        self.inner.update_namespace(ns, props).await
    }
    async fn drop_namespace(&self, ns: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(ns).await
    }
    async fn list_tables(&self, ns: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(ns).await
    }
    async fn create_table(&self, ns: &NamespaceIdent, creation: TableCreation) -> Result<Table> {
        self.inner.create_table(ns, creation).await
    }
    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        let fail = {
            let mut left = self.fail_next_load.lock().unwrap();
            let fail = *left > 0;
            *left = left.saturating_sub(1);
            fail
        };
        if fail {
            self.count("reload failed");
            return Err(Error::new(
                ErrorKind::Unexpected,
                "injected: catalog unreachable while re-reading the table",
            ));
        }
        let slow = self.slow_next_load.lock().unwrap().take();
        let loaded = self.inner.load_table(table).await;
        if let Some(delay) = slow {
            self.count("slow load");
            tokio::time::sleep(delay).await;
        }
        loaded
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
    async fn register_table(&self, table: &TableIdent, location: String) -> Result<Table> {
        self.inner.register_table(table, location).await
    }
    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        self.updates.fetch_add(1, Ordering::Relaxed);
        let stall = *self.stall_updates.lock().unwrap();
        if let Some(delay) = stall {
            tokio::time::sleep(delay).await;
        }
        match self.next_fault() {
            None => self.inner.update_table(commit).await,
            Some(Fault::Conflict) => {
                self.count("conflict");
                Err(Error::new(
                    ErrorKind::CatalogCommitConflicts,
                    "injected: concurrent modification",
                )
                .with_retryable(true))
            }
            Some(Fault::Throttle) => {
                self.count("throttle");
                Err(Error::new(
                    ErrorKind::Unexpected,
                    "Operation failed for hitting aws sdk error",
                )
                .with_source(anyhow::anyhow!(
                    "ThrottlingException: Rate exceeded (injected)"
                )))
            }
            Some(Fault::AccessDenied) => {
                self.count("access denied");
                Err(Error::new(
                    ErrorKind::Unexpected,
                    "Operation failed for hitting aws sdk error",
                )
                .with_source(anyhow::anyhow!(
                    "AccessDeniedException: not authorized (injected)"
                )))
            }
            Some(f @ (Fault::LostAnswer | Fault::LostAnswerAndReload)) => {
                self.inner.update_table(commit).await?;
                if f == Fault::LostAnswerAndReload {
                    *self.fail_next_load.lock().unwrap() = 4;
                    self.count("lost answer + reload");
                } else {
                    self.count("lost answer");
                }
                Err(Error::new(
                    ErrorKind::Unexpected,
                    "injected: connection reset before the answer arrived",
                ))
            }
        }
    }
}

//! [`SalesHistory`]: open or create the table, check it for drift, list its snapshots.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent};

use crate::catalog::swap::MetadataSwap;
use crate::catalog::{CatalogConfig, CommitStats, GuardedCatalog};
use crate::error::{Error, IcebergResultExt, Result};
use crate::schema::{
    self, DEFAULT_EMBEDDING_DIMENSION, NAMESPACE_PREFIX, TABLE_NAME, embedding_dimension_of,
};

/// Snapshot-summary key holding the commit id of an append made by this crate.
pub const COMMIT_ID_PROPERTY: &str = "sales-history.commit-id";
/// Snapshot-summary key naming the writer (`sales-history/{version}`).
pub const WRITER_PROPERTY: &str = "sales-history.writer";

/// Options used when [`SalesHistory::ensure_with`] creates the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableOptions {
    /// Length of every `embedding` vector (default 1024). Stored as a table property; an
    /// existing table keeps the dimension it was created with.
    pub embedding_dimension: usize,
    /// How often a conflicting commit is retried with refreshed metadata (default 20),
    /// stored as the table property `commit.retry.num-retries`.
    pub commit_retries: u32,
    /// Parquet encoding of the `embedding` elements in new data files (default
    /// `BYTE_STREAM_SPLIT`), stored as the table property
    /// [`EMBEDDING_ENCODING_PROPERTY`](crate::EMBEDDING_ENCODING_PROPERTY).
    pub embedding_encoding: crate::EmbeddingEncoding,
    /// Partitioning of a new table (default [`Layout::Month`](crate::Layout::Month), the
    /// seed's). An existing table keeps its own; move it with
    /// [`SalesHistory::evolve_layout`].
    pub layout: crate::Layout,
    /// Compression codec of new data files (default [`Codec::Snappy`](crate::Codec::Snappy),
    /// the seed's), stored as the table's `write.parquet.compression-codec` (and
    /// `write.parquet.compression-level`). An existing table keeps its own.
    pub codec: crate::Codec,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            embedding_dimension: DEFAULT_EMBEDDING_DIMENSION,
            commit_retries: schema::DEFAULT_COMMIT_RETRIES,
            embedding_encoding: crate::EmbeddingEncoding::default(),
            layout: crate::Layout::default(),
            codec: crate::Codec::default(),
        }
    }
}

impl TableOptions {
    /// Sets the commit retry budget for a table created by `ensure_with` (an existing table
    /// keeps its `commit.retry.num-retries` property).
    pub fn commit_retries(mut self, retries: u32) -> Self {
        self.commit_retries = retries;
        self
    }

    /// Sets the `embedding` element encoding for a table created by `ensure_with` (an
    /// existing table keeps its property; files already written keep theirs, and readers
    /// handle both).
    pub fn embedding_encoding(mut self, encoding: crate::EmbeddingEncoding) -> Self {
        self.embedding_encoding = encoding;
        self
    }

    /// Sets the partitioning of a table created by `ensure_with` (an existing table keeps
    /// its own; see [`SalesHistory::evolve_layout`]).
    pub fn layout(mut self, layout: crate::Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Sets the compression codec of a table created by `ensure_with` (an existing table
    /// keeps its own). A level out of range is refused by `ensure_with` before anything is
    /// created.
    pub fn codec(mut self, codec: crate::Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Sets the embedding dimension for a table created by `ensure_with`.
    pub fn embedding_dimension(mut self, dimension: usize) -> Self {
        self.embedding_dimension = dimension;
        self
    }
}

/// What [`SalesHistory::plan_ensure`] found: what `ensure` would do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnsurePlan {
    /// Neither the namespace (Glue database) nor the table exists: both would be created.
    CreateNamespaceAndTable,
    /// The namespace exists, the table would be created.
    CreateTable,
    /// The table exists and matches the layout: nothing to do.
    UpToDate,
    /// The table exists and differs from the seed's layout only in ways this crate can work
    /// with (e.g. a table made by Athena DDL: optional columns, an optional list element,
    /// another codec). Each entry says what differs; `ensure` would adopt the table as it is,
    /// changing nothing.
    Compatible(Vec<String>),
    /// The table exists but has drifted; `ensure` would fail with these differences.
    Drifted(Vec<String>),
}

/// One entry of the table's snapshot history.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Snapshot id.
    pub snapshot_id: i64,
    /// Parent snapshot id (`None` for the first).
    pub parent_id: Option<i64>,
    /// When the snapshot was committed.
    pub committed_at: DateTime<Utc>,
    /// Iceberg operation (`append`, `overwrite`, …).
    pub operation: String,
    /// Rows added by this snapshot, from its summary.
    pub added_rows: Option<u64>,
    /// Data files added by this snapshot, from its summary.
    pub added_files: Option<u64>,
    /// Commit id set by this crate's append (absent for other writers).
    pub commit_id: Option<String>,
}

/// How fresh the table state behind a read (scan, `snapshots`, `sql`, `similar_to`) must be.
///
/// Every read works on one table version (a metadata file). A handle caches the version it
/// last saw (after its own commits or a refresh); this policy says when a read reloads it from
/// the catalog first. A reload costs one catalog read: a SQLite query locally; on Glue one
/// `GetTable` plus one S3 `GET` of the metadata file (a few ms to tens of ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Freshness {
    /// Reload before every read (the default): a read started after another process's
    /// commit returned sees that commit.
    #[default]
    Latest,
    /// Reuse the cached version while it is younger than this; reload otherwise. Bounded
    /// staleness for read-heavy services.
    MaxAge(Duration),
    /// Never reload on reads; only commits and [`SalesHistory::refresh`] move the cache.
    Cached,
}

/// Reads and parses a metadata file, the parsing on the blocking pool: a table that keeps
/// thousands of snapshots has a metadata file of megabytes, tens of milliseconds of JSON
/// (iceberg's `TableMetadata::read_from` parses in the calling task; it still reads the
/// gzip-compressed files other engines may write).
async fn read_metadata(io: &iceberg::io::FileIO, location: &str) -> iceberg::Result<TableMetadata> {
    let bytes = io.new_input(location)?.read().await?;
    if bytes.starts_with(&[0x1F, 0x8B]) {
        return TableMetadata::read_from(io, location).await;
    }
    tokio::task::spawn_blocking(move || serde_json::from_slice::<TableMetadata>(&bytes))
        .await
        .map_err(|e| {
            iceberg::Error::new(
                ErrorKind::Unexpected,
                format!("the metadata parsing task failed: {e}"),
            )
        })?
        .map_err(|e| {
            iceberg::Error::new(
                ErrorKind::DataInvalid,
                "the metadata file is not table metadata",
            )
            .with_source(e)
        })
}

/// A handle on `pricing_intelligence_{stage}.sales_history`.
///
/// Cheap to clone (the state is shared), `Send + Sync`, and every operation's builder owns
/// what it needs, so a service shares one handle across tasks and can spawn its futures:
///
/// ```no_run
/// # async fn f(table: sales_history::SalesHistory, rows: Vec<sales_history::SaleRecord>) -> sales_history::Result<()> {
/// let appending = tokio::spawn(table.append(rows).commit_id("batch-42").into_future());
/// let counting = tokio::spawn(table.scan().tenant("tenant-001").count());
/// let (appended, count) = (appending.await, counting.await);
/// # Ok(()) }
/// ```
///
/// Appends from several handles (or processes) at once are safe: commits are optimistic and
/// retried on conflict. The clones of one handle take turns to commit (an append waits for
/// at most one commit attempt of another task, e.g. the [`Maintainer`](crate::Maintainer)'s),
/// so tasks sharing a handle never conflict with each other. The cached table version only moves forward. Reads follow the
/// handle's [`Freshness`] policy (default [`Freshness::Latest`]).
#[derive(Clone)]
pub struct SalesHistory {
    pub(crate) shared: Arc<Shared>,
    freshness: Freshness,
}

/// The state all clones of a handle share.
pub(crate) struct Shared {
    pub(crate) config: CatalogConfig,
    pub(crate) catalog: Arc<GuardedCatalog>,
    pub(crate) ident: TableIdent,
    cached: Mutex<Cached>,
    embedding_dimension: usize,
    /// The catalog's compare-and-swap, used by the commit loop (replaceable by the
    /// fault-injection wrapper in tests).
    swap: std::sync::RwLock<Arc<dyn MetadataSwap>>,
    /// Serializes the commit attempts of all clones of this handle (see
    /// [`crate::commit`]): in one process, a writer and the maintenance task never conflict.
    pub(crate) commit_gate: tokio::sync::Mutex<()>,
    /// Vector index parts read by searches (byte-capped).
    pub(crate) index_cache: crate::ann::IndexCache,
    /// Live data files of recent snapshots, manifest by manifest: what scans and similarity
    /// searches prune per filter instead of planning.
    pub(crate) live_files: crate::commit::LiveCache,
    /// Parsed footers (with page index) of the data files scans and searches read.
    pub(crate) footers: Arc<crate::scan::FooterCache>,
}

/// The table version a handle last saw and when it was loaded or committed.
struct Cached {
    table: Table,
    seen_at: Instant,
}

const _: () = {
    const fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<SalesHistory>();
};

impl std::fmt::Debug for SalesHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesHistory")
            .field("table", &self.name())
            .field("embedding_dimension", &self.shared.embedding_dimension)
            .field("freshness", &self.freshness)
            .finish_non_exhaustive()
    }
}

/// Checks a stage name and returns the namespace `pricing_intelligence_{stage}`.
///
/// Stages become Glue database names: 1–64 characters of lowercase ASCII letters, digits
/// and `_`.
pub fn namespace_for_stage(stage: &str) -> Result<String> {
    let ok = !stage.is_empty()
        && stage.len() <= 64
        && stage
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(Error::config(
            "stage",
            format!(
                "`{stage}` must be 1-64 characters of lowercase letters, digits and `_` (it becomes the Glue database name)"
            ),
        ));
    }
    Ok(format!("{NAMESPACE_PREFIX}{stage}"))
}

impl SalesHistory {
    /// Opens the table, creating its namespace and the table when missing (idempotent),
    /// with default [`TableOptions`].
    ///
    /// Fails with [`Error::SchemaDrift`] when an existing table's schema, partition spec,
    /// codec or format version disagree with this crate's layout.
    pub async fn ensure(config: &CatalogConfig, stage: &str) -> Result<Self> {
        Self::ensure_with(config, stage, TableOptions::default()).await
    }

    /// Like [`ensure`](Self::ensure), with options for a table that gets created.
    #[tracing::instrument(name = "ensure", skip_all, fields(catalog = %config, stage))]
    pub async fn ensure_with(
        config: &CatalogConfig,
        stage: &str,
        options: TableOptions,
    ) -> Result<Self> {
        let namespace = namespace_for_stage(stage)?;
        if options.embedding_dimension == 0 || options.embedding_dimension > 65_536 {
            return Err(Error::config(
                "embedding_dimension",
                format!("{} is not within 1..=65536", options.embedding_dimension),
            ));
        }
        options.layout.validate()?;
        options.codec.validate()?;
        let connected = config.connect().await?;
        let catalog = connected.catalog;
        let ns = NamespaceIdent::new(namespace.clone());
        let ident = TableIdent::new(ns.clone(), TABLE_NAME.to_string());
        // S3 Tables assigns the location itself (and refuses one set by us).
        let location = (!config.assigns_locations())
            .then(|| format!("{}/{namespace}.db/{TABLE_NAME}", connected.warehouse_uri));
        let table = Self::load_or_create(catalog.as_ref(), &ns, &ident, location, options)
            .await
            .map_err(|e| config.classify(e))?;
        Self::checked(config, catalog, ident, table)
    }

    /// Finds out what [`ensure`](Self::ensure) would do, changing nothing (for a local
    /// catalog whose `catalog.db` does not exist yet, not even creating the directory).
    pub async fn plan_ensure(config: &CatalogConfig, stage: &str) -> Result<EnsurePlan> {
        let namespace = namespace_for_stage(stage)?;
        if let CatalogConfig::Local { warehouse } = config
            && !warehouse.join(crate::LOCAL_CATALOG_FILE).exists()
        {
            return Ok(EnsurePlan::CreateNamespaceAndTable);
        }
        let connected = config.connect().await?;
        let catalog = connected.catalog;
        let ns = NamespaceIdent::new(namespace);
        let ident = TableIdent::new(ns.clone(), TABLE_NAME.to_string());
        let exists = |r: iceberg::Result<bool>| r.map_err(|e| config.classify(e));
        if !exists(catalog.namespace_exists(&ns).await)? {
            return Ok(EnsurePlan::CreateNamespaceAndTable);
        }
        if !exists(catalog.table_exists(&ident).await)? {
            return Ok(EnsurePlan::CreateTable);
        }
        let table = catalog
            .load_table(&ident)
            .await
            .map_err(|e| config.classify(e))?;
        let differences = schema::drift(table.metadata());
        if !differences.is_empty() {
            return Ok(EnsurePlan::Drifted(differences));
        }
        let notes = schema::layout_notes(table.metadata());
        Ok(if notes.is_empty() {
            EnsurePlan::UpToDate
        } else {
            EnsurePlan::Compatible(notes)
        })
    }

    async fn load_or_create(
        catalog: &dyn Catalog,
        ns: &NamespaceIdent,
        ident: &TableIdent,
        location: Option<String>,
        options: TableOptions,
    ) -> iceberg::Result<Table> {
        // Race-safe: replicas may start together on a new stage. A concurrent creator's
        // "already exists" (namespace or table) means: load it and check it like any table.
        if !catalog.namespace_exists(ns).await? {
            match catalog.create_namespace(ns, Default::default()).await {
                Ok(_) => tracing::info!(namespace = %ns.join("."), "namespace created"),
                Err(e) if crate::classify::already_exists(&e) => {
                    tracing::info!(namespace = %ns.join("."), "namespace created concurrently by another process")
                }
                Err(e) => return Err(e),
            }
        }
        if catalog.table_exists(ident).await? {
            tracing::debug!("table exists; loading it");
            return load_created(catalog, ident).await;
        }
        let creation =
            TableCreation::builder()
                .name(TABLE_NAME.to_string())
                .location_opt(location)
                .schema(schema::iceberg_schema())
                .partition_spec(options.layout.partition_spec().map_err(|e| {
                    iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string())
                })?)
                .sort_order(schema::sort_order())
                .properties(schema::table_properties(&options))
                .build();
        match catalog.create_table(ns, creation).await {
            Ok(t) => {
                tracing::info!(location = %t.metadata().location(), "table created");
                Ok(t)
            }
            Err(e) if crate::classify::already_exists(&e) => {
                tracing::info!("table created concurrently by another process; loading it");
                load_created(catalog, ident).await
            }
            Err(e) => Err(e),
        }
    }

    /// Opens an existing table without creating anything; [`Error::TableNotFound`] when the
    /// namespace or table is missing, [`Error::SchemaDrift`] when it has drifted.
    #[tracing::instrument(name = "open", skip_all, fields(catalog = %config, stage))]
    pub async fn open(config: &CatalogConfig, stage: &str) -> Result<Self> {
        let namespace = namespace_for_stage(stage)?;
        let connected = config.connect_existing().await?;
        let ident = TableIdent::new(NamespaceIdent::new(namespace), TABLE_NAME.to_string());
        let table = connected.catalog.load_table(&ident).await.map_err(|e| {
            // (A missing Glue database arrives as TableNotFound: see catalog/guard.rs.)
            if matches!(
                e.kind(),
                ErrorKind::TableNotFound | ErrorKind::NamespaceNotFound
            ) {
                Error::TableNotFound {
                    table: format!("{}.{}", ident.namespace().join("."), ident.name()),
                }
            } else {
                config.classify(e)
            }
        })?;
        Self::checked(config, connected.catalog, ident, table)
    }

    fn checked(
        config: &CatalogConfig,
        catalog: Arc<GuardedCatalog>,
        ident: TableIdent,
        table: Table,
    ) -> Result<Self> {
        let differences = schema::drift(table.metadata());
        let name = format!("{}.{}", ident.namespace().join("."), ident.name());
        if !differences.is_empty() {
            return Err(Error::SchemaDrift {
                table: name,
                differences,
            });
        }
        let embedding_dimension = embedding_dimension_of(table.metadata())?;
        let swap = crate::catalog::swap::for_config(config, &catalog);
        Ok(SalesHistory {
            shared: Arc::new(Shared {
                config: config.clone(),
                catalog,
                ident,
                cached: Mutex::new(Cached {
                    table,
                    seen_at: Instant::now(),
                }),
                embedding_dimension,
                swap: std::sync::RwLock::new(swap),
                commit_gate: tokio::sync::Mutex::new(()),
                index_cache: crate::ann::IndexCache::default(),
                live_files: crate::commit::LiveCache::default(),
                footers: Arc::new(crate::scan::FooterCache::new(
                    crate::scan::DEFAULT_FOOTER_CACHE_BYTES,
                )),
            }),
            freshness: Freshness::default(),
        })
    }

    /// This handle with another read [`Freshness`] policy (clones share the cached state,
    /// each keeps its own policy).
    ///
    /// ```no_run
    /// # fn f(table: sales_history::SalesHistory) {
    /// use std::time::Duration;
    /// use sales_history::Freshness;
    /// let dashboard = table.clone().freshness(Freshness::MaxAge(Duration::from_secs(5)));
    /// # }
    /// ```
    pub fn freshness(mut self, freshness: Freshness) -> Self {
        self.freshness = freshness;
        self
    }

    /// The table version a read should use, reloaded first when the [`Freshness`] policy
    /// asks for it.
    pub(crate) async fn table_for_read(&self) -> Result<Table> {
        let reload = match self.freshness {
            Freshness::Latest => true,
            Freshness::MaxAge(age) => self.lock_cached().seen_at.elapsed() > age,
            Freshness::Cached => false,
        };
        if reload {
            self.refresh().await?;
        }
        Ok(self.current())
    }

    fn lock_cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.shared
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `pricing_intelligence_{stage}.sales_history`.
    pub fn name(&self) -> String {
        let ident = &self.shared.ident;
        format!("{}.{}", ident.namespace().join("."), ident.name())
    }

    /// The namespace (Glue database) holding the table.
    pub fn namespace(&self) -> String {
        self.shared.ident.namespace().join(".")
    }

    pub(crate) fn config(&self) -> &CatalogConfig {
        &self.shared.config
    }

    pub(crate) fn catalog(&self) -> &GuardedCatalog {
        &self.shared.catalog
    }

    /// The catalog's compare-and-swap (see [`crate::catalog::swap`]).
    pub(crate) fn swap(&self) -> Arc<dyn MetadataSwap> {
        self.shared
            .swap
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Wraps this handle's catalog swap (shared by its clones) in the fault-injection
    /// wrapper and returns the queue to push faults into (feature `fault-injection`, for
    /// tests: the commit loop under test is the one production runs).
    #[cfg(feature = "fault-injection")]
    pub fn inject_commit_faults(&self) -> Arc<crate::faults::CommitFaults> {
        let faults = Arc::new(crate::faults::CommitFaults::default());
        let mut swap = self
            .shared
            .swap
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *swap = Arc::new(crate::catalog::swap::faulty::FaultySwap {
            inner: swap.clone(),
            faults: faults.clone(),
        });
        faults
    }

    /// The table's base location (`file:///…` or `s3://…`).
    pub fn location(&self) -> String {
        self.current().metadata().location().to_string()
    }

    /// Length every `embedding` must have in this table.
    pub fn embedding_dimension(&self) -> usize {
        self.shared.embedding_dimension
    }

    /// The `embedding` element encoding new data files get (the table property
    /// [`EMBEDDING_ENCODING_PROPERTY`](crate::EMBEDDING_ENCODING_PROPERTY) of the version this
    /// handle holds).
    ///
    /// # Errors
    /// [`Error::Config`] when the property names an encoding this crate cannot write.
    pub fn embedding_encoding(&self) -> Result<crate::EmbeddingEncoding> {
        crate::EmbeddingEncoding::from_properties(self.current().metadata().properties())
    }

    /// The last table state this handle saw (after its own commits or [`refresh`](Self::refresh)).
    pub fn iceberg_table(&self) -> Table {
        self.current()
    }

    pub(crate) fn current(&self) -> Table {
        self.lock_cached().table.clone()
    }

    /// Moves the cached table state to `table` unless the cache already holds a newer one
    /// (a slow commit finishing after a refresh must not move the handle back).
    ///
    /// The same version (same metadata file) keeps the cached `Table`: iceberg's manifest
    /// cache belongs to a `Table` value, so a refresh that found nothing new keeps planning
    /// warm (measured: a tenant plan after a no-op refresh 16–20 ms with a new `Table`, 2–3 ms
    /// plus the refresh's 3–7 ms with the kept one).
    pub(crate) fn advance_to(&self, table: Table) {
        let mut cached = self.lock_cached();
        let same = table.metadata_location().is_some()
            && table.metadata_location() == cached.table.metadata_location();
        if !same && version_key(&table) >= version_key(&cached.table) {
            cached.table = table;
        }
        cached.seen_at = Instant::now();
    }

    /// Reloads the table from the catalog (to see other writers' commits) and re-checks drift.
    ///
    /// The catalog is asked first where the table's metadata is (one SQLite row or one
    /// `GetTable`). Still where this handle has it: nothing is read, since a metadata file
    /// never changes once written. Elsewhere: that file is read. Where the catalog cannot say
    /// (a custom catalog) or the question fails, the table is loaded through the catalog.
    pub async fn refresh(&self) -> Result<()> {
        let held = self.current();
        let probed = self.swap().current_location(&self.shared.ident).await;
        let read = match probed {
            Some(location) if held.metadata_location() == Some(location.as_str()) => {
                self.lock_cached().seen_at = Instant::now();
                return Ok(());
            }
            Some(location) => match read_metadata(held.file_io(), &location).await {
                Ok(metadata) => Some(crate::commit::table_at(&held, metadata, location)?),
                Err(e) => {
                    tracing::debug!(error = %e, "reading the probed metadata failed; loading the table");
                    None
                }
            },
            None => None,
        };
        let table = match read {
            Some(table) => table,
            None => self
                .shared
                .catalog
                .load_table(&self.shared.ident)
                .await
                .or_ours()?,
        };
        let differences = schema::drift(table.metadata());
        if !differences.is_empty() {
            return Err(Error::SchemaDrift {
                table: self.name(),
                differences,
            });
        }
        self.advance_to(table);
        Ok(())
    }

    /// The snapshot whose summary carries `commit_id`, in the cached table state.
    pub(crate) fn find_commit(&self, commit_id: &str) -> Option<i64> {
        self.current()
            .metadata()
            .snapshots()
            .find(|s| {
                s.summary()
                    .additional_properties
                    .get(COMMIT_ID_PROPERTY)
                    .map(String::as_str)
                    == Some(commit_id)
            })
            .map(|s| s.snapshot_id())
    }

    /// [`find_commit`](Self::find_commit) after a refresh: whether the commit id is in the
    /// table as the catalog has it now.
    pub(crate) async fn find_commit_fresh(&self, commit_id: &str) -> Result<Option<i64>> {
        self.refresh().await?;
        Ok(self.find_commit(commit_id))
    }

    /// Counters of this handle's commits: successes, conflicts and throttles retried.
    pub fn commit_stats(&self) -> CommitStats {
        self.shared.catalog.stats()
    }

    /// The snapshot history, oldest first (reloaded first as the [`Freshness`] policy says).
    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let table = self.table_for_read().await?;
        let mut out: Vec<SnapshotInfo> = table
            .metadata()
            .snapshots()
            .map(|s| {
                let props = &s.summary().additional_properties;
                let count = |k: &str| props.get(k).and_then(|v| v.parse().ok());
                SnapshotInfo {
                    snapshot_id: s.snapshot_id(),
                    parent_id: s.parent_snapshot_id(),
                    committed_at: DateTime::from_timestamp_millis(s.timestamp_ms())
                        .unwrap_or_default(),
                    operation: s.summary().operation.as_str().to_string(),
                    added_rows: count("added-records"),
                    added_files: count("added-data-files"),
                    commit_id: props.get(COMMIT_ID_PROPERTY).cloned(),
                }
            })
            .collect();
        out.sort_by_key(|s| (s.committed_at, s.snapshot_id));
        Ok(out)
    }

    /// The current snapshot id, if the table has any data.
    pub fn current_snapshot_id(&self) -> Option<i64> {
        self.current().metadata().current_snapshot_id()
    }
}

/// Orders table versions. The catalog's history of metadata files is numbered
/// (`{version:05}-{uuid}.metadata.json`, as iceberg-rust, pyiceberg and Java write them, and
/// only one file per number ever wins the catalog's swap), so the number comes first; then the
/// last sequence number and the update time (for locations without a number). A
/// metadata-only change (snapshot expiry) keeps the sequence number and carries this host's
/// clock, so it could not be ordered by those alone.
fn version_key(table: &Table) -> (i64, i64, i64) {
    let m = table.metadata();
    let number = table
        .metadata_location()
        .and_then(|l| l.rsplit('/').next())
        .and_then(|f| f.split('-').next())
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or(-1);
    (number, m.last_sequence_number(), m.last_updated_ms())
}

/// Loads a table another process may have just created. S3 Tables creates a table in three
/// calls (create, write metadata, set the metadata location): a racing loader can find it
/// without a metadata location yet, which is worth a short wait, not a failure.
async fn load_created(catalog: &dyn Catalog, ident: &TableIdent) -> iceberg::Result<Table> {
    let mut pause = Duration::from_millis(50);
    for _ in 0..8 {
        match catalog.load_table(ident).await {
            Err(e) if e.message().contains("metadata location") => {
                tracing::debug!(error = %e, "table has no metadata location yet; waiting");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
    catalog.load_table(ident).await
}

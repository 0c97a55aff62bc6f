//! The one commit loop: every operation that changes the table builds a [`Change`] and calls
//! [`commit`], whatever the catalog.
//!
//! One attempt: **stage** ([`stage`]: manifests, manifest list, snapshot summary, metadata file
//! on the version the handle holds) → **swap** (the catalog's [`MetadataSwap`]: applies only if
//! the table is still at that version) → **classify** the answer. One policy per outcome:
//!
//! | swap answer | what the loop does | staged files | the change's data files |
//! |---|---|---|---|
//! | `Ok` | moves the handle to the new version; deletes metadata files that fell out of the metadata log (when the table asks for it) | the table's | the table's |
//! | `Conflict` / `Throttled` (nothing changed) | jitter + backoff (`commit.retry.*`), re-reads the table (an earlier try may have landed: then done), re-validates (every file the change removes still live) and re-applies on the new version | discarded | kept for the next attempt; discarded when the budget is spent ([`Error::CommitConflict`]) or a removed file is gone |
//! | `Refused` (nothing changed) | re-reads once for the commit id (an SDK-internal retry may have landed) | discarded | discarded, the error returned |
//! | `Unknown` (may have landed) | looks for the commit id 4 times over ~1.75 s | kept | kept; [`Error::CommitStateUnknown`] unless found |
//! | staging failed (nothing sent) | — | discarded | discarded, the error returned |
//!
//! "Discarded" follows the one rule of [`Owned`]: deleted, except on S3 Tables. A custom
//! catalog's swap takes the change as iceberg's own action instead of a staged metadata file
//! (appends and snapshot expiry only; see [`crate::catalog::swap::update_table`]).
//!
//! The clones of one handle take turns (an async mutex around stage + swap, FIFO): the
//! version an attempt stages on is the handle's latest until its swap answers, so a writer
//! and the maintenance task in one process never conflict — a compaction beside a writer
//! that commits back to back lands on its first attempt instead of losing every race.
//! Other processes (and other handles) still meet optimistically, with the retries above.

mod live;
mod merge;
mod owned;
mod retry;
mod stage;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use iceberg::spec::{DataFile, Operation};
use iceberg::table::Table;

use crate::catalog::swap::{MetadataSwap, Proposal, SwapError, Swapped};
use crate::error::{Error, Result};
use crate::position::Positions;
use crate::table::SalesHistory;

pub(crate) use live::{Live, LiveCache, live, refuse_delete_files};
pub use merge::{
    MANIFEST_MERGE_ENABLED_PROPERTY, MANIFEST_MIN_COUNT_TO_MERGE_PROPERTY,
    MANIFEST_TARGET_SIZE_BYTES_PROPERTY,
};
pub(crate) use owned::Owned;
pub(crate) use retry::RetryPolicy;
pub use stage::METADATA_DELETE_AFTER_COMMIT_PROPERTY;
pub(crate) use stage::table_at;

/// What one committed append added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitSummary {
    /// The new snapshot's id.
    pub snapshot_id: i64,
    /// The commit id stored in the snapshot summary under
    /// [`COMMIT_ID_PROPERTY`](crate::COMMIT_ID_PROPERTY).
    pub commit_id: String,
    /// Rows appended.
    pub rows: u64,
    /// Data files added (at least one per month touched).
    pub data_files: usize,
    /// Bytes of Parquet written.
    pub bytes: u64,
    /// Catalog attempts it took (1 without conflicts).
    pub attempts: u32,
}

/// What a change does to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    /// New data files (append, the appender).
    Append,
    /// Files replaced by files with the same rows (compaction).
    Replace,
    /// Files removed and rows rewritten (`delete_where` that rewrites).
    Overwrite,
    /// Files removed (`delete_where` by metadata alone).
    Delete,
    /// Snapshots removed from the metadata (no new snapshot).
    Expire {
        /// The snapshots to remove.
        ids: Vec<i64>,
        /// The expiry's cut-off (ms since the epoch; `i64::MAX`: any age), for catalogs that
        /// expire through iceberg's own action.
        older_than_ms: i64,
        /// The most recent snapshots the expiry keeps (same use).
        retain_last: usize,
    },
    /// A new default partition spec (no new snapshot): the layout evolution.
    Evolve {
        /// The layout the table moves to.
        layout: crate::Layout,
        /// The default spec id the evolve read: staging refuses a base where it changed.
        expect_spec_id: i32,
        /// The last assigned partition field id it read (same use).
        expect_last_partition_id: i32,
    },
    /// A new vector index registered on the current snapshot (no new snapshot): its
    /// statistics file (`snapshot_id` is set when staged).
    Index {
        statistics: Box<iceberg::spec::StatisticsFile>,
        /// The index path the build read (`None`: none): staging refuses a base where
        /// another build landed since.
        expect: Option<String>,
    },
}

impl ChangeKind {
    /// The snapshot operation (`None` for expiry, which adds no snapshot).
    pub(crate) fn operation(&self) -> Option<Operation> {
        Some(match self {
            ChangeKind::Append => Operation::Append,
            ChangeKind::Replace => Operation::Replace,
            ChangeKind::Overwrite => Operation::Overwrite,
            ChangeKind::Delete => Operation::Delete,
            ChangeKind::Expire { .. } | ChangeKind::Evolve { .. } | ChangeKind::Index { .. } => {
                return None;
            }
        })
    }

    /// The name used in summaries, logs and refusals.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            ChangeKind::Append => "append",
            ChangeKind::Replace => "replace",
            ChangeKind::Overwrite => "overwrite",
            ChangeKind::Delete => "delete",
            ChangeKind::Expire { .. } => "expire",
            ChangeKind::Evolve { .. } => "evolve",
            ChangeKind::Index { .. } => "index",
        }
    }
}

/// One snapshot's worth of change (or a snapshot expiry), and the data files written for it.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) kind: ChangeKind,
    /// Data files the snapshot adds.
    pub(crate) added: Vec<DataFile>,
    /// The partition spec the added files were written under (the default spec of the
    /// version the writer read; `None`: the default spec of the version staged on). A
    /// concurrent layout evolve may change the default before the commit lands: the files
    /// keep the spec they were written with (a manifest of that spec).
    pub(crate) written_spec_id: Option<i32>,
    /// Paths of live data files the snapshot removes (all must still be live).
    pub(crate) removed: HashSet<String>,
    /// Stored in the summary under [`crate::COMMIT_ID_PROPERTY`].
    pub(crate) commit_id: String,
    /// Extra summary properties (e.g. what a compaction did).
    pub(crate) properties: HashMap<String, String>,
    /// Source positions of the added rows (merged with the parent's; empty for rewrites).
    pub(crate) positions: Positions,
    /// Every file written for the change (the added data files and any roll-overs): the
    /// loop hands them over, discards or keeps them with the outcome.
    pub(crate) files: Owned,
}

impl Change {
    /// A change of `kind` adding nothing yet, owning nothing yet.
    pub(crate) fn new(table: &SalesHistory, kind: ChangeKind, commit_id: String) -> Self {
        Change {
            kind,
            added: Vec::new(),
            written_spec_id: None,
            removed: HashSet::new(),
            commit_id,
            properties: HashMap::new(),
            positions: Positions::default(),
            files: Owned::for_table(table),
        }
    }

    /// Whether this change is in `table` (an earlier attempt or an answer lost on the way
    /// back): the snapshot id carrying the commit id, or — for expiry — the current snapshot
    /// once none of the expired snapshots is left.
    fn landed_in(&self, table: &SalesHistory) -> Option<i64> {
        match &self.kind {
            ChangeKind::Expire { ids, .. } => {
                let current = table.current();
                let m = current.metadata();
                ids.iter()
                    .all(|id| m.snapshot_by_id(*id).is_none())
                    .then(|| m.current_snapshot_id().unwrap_or_default())
            }
            ChangeKind::Evolve { .. } | ChangeKind::Index { .. } => {
                self.landed_in_version(&table.current())
            }
            _ => table.find_commit(&self.commit_id),
        }
    }
}

/// What a committed [`Change`] became.
#[derive(Debug, Clone)]
pub(crate) struct Landed {
    pub(crate) snapshot_id: i64,
    pub(crate) attempts: u32,
}

/// How the loop settles whether a change is in the table.
enum Settled {
    Landed(i64),
    NotLanded,
    Unknown(Error),
}

/// Re-reads the table after each pause and looks for the change: found, not found at the
/// last successful look, or no look succeeded.
async fn settle(table: &SalesHistory, change: &Change, pauses_ms: &[u64]) -> Settled {
    let mut error = None;
    for pause in pauses_ms {
        tokio::time::sleep(Duration::from_millis(*pause)).await;
        match table.refresh().await {
            Ok(()) => {
                if let Some(id) = change.landed_in(table) {
                    return Settled::Landed(id);
                }
                error = None;
            }
            Err(e) => error = Some(e),
        }
    }
    match error {
        Some(e) => Settled::Unknown(e),
        None => Settled::NotLanded,
    }
}

/// Pauses of the unknown-outcome check (as Java's commit-status check: a few looks).
const UNKNOWN_POLLS_MS: [u64; 4] = [0, 250, 500, 1000];

/// Commits `change` on the table with the table's `commit.retry.*` policy and moves the handle
/// to the new version. See the [module docs](self) for what each outcome does.
#[tracing::instrument(name = "commit", skip_all, fields(
    table = %table.name(),
    kind = change.kind.as_str(),
    commit_id = %change.commit_id,
    added = change.added.len(),
    removed = change.removed.len(),
))]
pub(crate) async fn commit(table: &SalesHistory, change: Change) -> Result<Landed> {
    let swap = table.swap();
    if let Some(reason) = swap.refuses(change.kind.as_str()) {
        change.files.discard("refused by the catalog's swap").await;
        return Err(Error::Unsupported {
            operation: change.kind.as_str().to_string(),
            reason,
        });
    }
    let retry = RetryPolicy::of(&table.current());
    let started = Instant::now();
    let mut stager = stage::Stager::default();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        // One attempt at a time per handle: the version read here stays the handle's latest
        // until the swap answers, so clones of the handle (a writer and the maintenance task)
        // never conflict with each other. Pauses and re-reads happen outside the gate.
        let gate = table.shared.commit_gate.lock().await;
        let base = table.current();
        let attempted = attempt(table, swap.as_ref(), &base, &change, &mut stager).await;
        if let Ok((new_table, _, _)) = &attempted {
            table.advance_to(new_table.clone());
        }
        drop(gate);
        let (failure, staged) = match attempted {
            Ok((new_table, staged, expired_metadata)) => {
                table.catalog().record_swap(Ok(())).await;
                let snapshot_id = change.landed_in_version(&new_table).unwrap_or_default();
                tracing::info!(snapshot_id, attempts, "committed");
                staged.hand_over();
                change.files.hand_over();
                stager.discard_unused(true).await;
                stage::delete_expired_metadata(table, swap.as_ref(), expired_metadata).await;
                return Ok(Landed {
                    snapshot_id,
                    attempts,
                });
            }
            Err(e) => e,
        };
        match failure {
            Failure::Conflict { reason, throttled } => {
                table.catalog().record_swap(Err(throttled)).await;
                let pause = retry.pause(attempts, started, throttled, !change.removed.is_empty());
                tracing::info!(attempt = attempts, %reason, throttled, retry = pause.is_some(), "swap refused");
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
                match settle(table, &change, &[0]).await {
                    Settled::Landed(id) => {
                        staged.hand_over();
                        change.files.hand_over();
                        // An earlier attempt may be the one that landed: its manifests stay.
                        stager.keep_unused();
                        return Ok(Landed {
                            snapshot_id: id,
                            attempts,
                        });
                    }
                    Settled::NotLanded => staged.discard("the swap was refused").await,
                    Settled::Unknown(e) => {
                        let error = unknown(table, &change, e);
                        staged.keep("the table could not be re-read");
                        change.files.keep("the table could not be re-read");
                        stager.keep_unused();
                        return Err(error);
                    }
                }
                if pause.is_none() {
                    change
                        .files
                        .discard("conflicts outlasted the retry budget")
                        .await;
                    stager.discard_unused(false).await;
                    return Err(conflict(table, reason));
                }
                // The next attempt re-validates: staging re-reads the manifests that list the
                // removed files (a removed file gone is a CommitConflict, nothing sent).
            }
            Failure::NotSent(e) => {
                staged.discard("staging failed").await;
                change.files.discard("staging failed").await;
                stager.discard_unused(false).await;
                return Err(e);
            }
            Failure::Refused(e) => match settle(table, &change, &[0]).await {
                Settled::Landed(id) => {
                    staged.hand_over();
                    change.files.hand_over();
                    stager.keep_unused();
                    return Ok(Landed {
                        snapshot_id: id,
                        attempts,
                    });
                }
                Settled::NotLanded => {
                    staged.discard("the catalog refused the swap").await;
                    change.files.discard("the catalog refused the swap").await;
                    stager.discard_unused(false).await;
                    return Err(e);
                }
                Settled::Unknown(_) => {
                    let error = unknown(table, &change, e);
                    staged.keep("the table could not be re-read");
                    change.files.keep("the table could not be re-read");
                    stager.keep_unused();
                    return Err(error);
                }
            },
            Failure::Unknown(e) => {
                // The staged metadata may be (or become) the table's: nothing is deleted here.
                tracing::warn!(error = %e, "swap outcome unknown; re-reading the table");
                match settle(table, &change, &UNKNOWN_POLLS_MS).await {
                    Settled::Landed(id) => {
                        staged.hand_over();
                        change.files.hand_over();
                        // An earlier attempt may be the one that landed: its manifests stay.
                        stager.keep_unused();
                        return Ok(Landed {
                            snapshot_id: id,
                            attempts,
                        });
                    }
                    Settled::NotLanded | Settled::Unknown(_) => {
                        let error = unknown(table, &change, e);
                        staged.keep("the swap's outcome is unknown");
                        change.files.keep("the swap's outcome is unknown");
                        stager.keep_unused();
                        return Err(error);
                    }
                }
            }
        }
    }
}

impl Change {
    /// [`landed_in`](Self::landed_in) on a version that is not the handle's yet.
    fn landed_in_version(&self, version: &Table) -> Option<i64> {
        let m = version.metadata();
        match &self.kind {
            ChangeKind::Expire { .. } => Some(m.current_snapshot_id().unwrap_or_default()),
            // Landed when the default spec is the layout's, under a newer spec id than the
            // one the evolve read.
            ChangeKind::Evolve {
                layout,
                expect_spec_id,
                ..
            } => (m.default_partition_spec_id() != *expect_spec_id
                && crate::Layout::of(m.default_partition_spec()) == Some(*layout))
            .then(|| m.current_snapshot_id().unwrap_or_default()),
            ChangeKind::Index { statistics, .. } => m
                .statistics_iter()
                .any(|s| s.statistics_path == statistics.statistics_path)
                .then(|| m.current_snapshot_id().unwrap_or_default()),
            _ => m
                .snapshots()
                .find(|s| {
                    s.summary()
                        .additional_properties
                        .get(crate::table::COMMIT_ID_PROPERTY)
                        == Some(&self.commit_id)
                })
                .map(|s| s.snapshot_id()),
        }
    }
}

fn unknown(table: &SalesHistory, change: &Change, e: Error) -> Error {
    Error::CommitStateUnknown {
        table: table.name(),
        commit_id: change.commit_id.clone(),
        source: Box::new(e),
    }
}

fn conflict(table: &SalesHistory, reason: String) -> Error {
    Error::CommitConflict {
        table: table.name(),
        source: reason.into(),
    }
}

/// Why one attempt did not commit.
enum Failure {
    /// Another commit got there first, or the catalog throttled: nothing changed.
    Conflict { reason: String, throttled: bool },
    /// Failed before anything was sent to the catalog: nothing changed.
    NotSent(Error),
    /// The catalog refused the swap: nothing changed (unless an earlier try landed).
    Refused(Error),
    /// The swap may or may not have been applied.
    Unknown(Error),
}

/// What a successful attempt leaves: the new version, the files it staged, and the metadata
/// files that fell out of the metadata log.
type Attempted = (Table, Owned, Vec<String>);

/// One attempt on `base`: stage (for swaps that take a staged metadata file), swap.
async fn attempt(
    table: &SalesHistory,
    swap: &dyn MetadataSwap,
    base: &Table,
    change: &Change,
    stager: &mut stage::Stager,
) -> std::result::Result<Attempted, (Failure, Owned)> {
    let mut staged = change.files.empty_like();
    if !swap.takes_staged_metadata() {
        let proposal = match &change.kind {
            ChangeKind::Expire {
                ids,
                older_than_ms,
                retain_last,
            } => Proposal::Expire {
                base,
                snapshot_ids: ids,
                older_than_ms: *older_than_ms,
                retain_last: *retain_last,
            },
            _ => Proposal::Append {
                base,
                files: &change.added,
                properties: stage::summary_properties(base, change),
            },
        };
        return match swap.swap(proposal).await {
            Ok(Swapped::Table(t)) => Ok((*t, staged, Vec::new())),
            Ok(Swapped::AtStaged) => Err((
                Failure::Unknown(Error::internal("the catalog answered without a table")),
                staged,
            )),
            Err(e) => Err((classify(e), staged)),
        };
    }
    let result = stager.stage(table, swap, base, change, &mut staged).await;
    let (metadata, location, expired) = match result {
        Ok(s) => s,
        Err(e) => return Err((Failure::NotSent(e), staged)),
    };
    let Some(expected) = base.metadata_location() else {
        return Err((
            Failure::NotSent(Error::internal("the loaded table has no metadata location")),
            staged,
        ));
    };
    let proposal = Proposal::Location {
        ident: base.identifier(),
        expected,
        staged: &location,
    };
    match swap.swap(proposal).await {
        Ok(_) => match stage::table_at(base, metadata, location) {
            Ok(t) => Ok((t, staged, expired)),
            Err(e) => Err((Failure::Unknown(e), staged)),
        },
        Err(e) => Err((classify(e), staged)),
    }
}

fn classify(e: SwapError) -> Failure {
    match e {
        SwapError::Conflict(reason) => Failure::Conflict {
            reason,
            throttled: false,
        },
        SwapError::Throttled(reason) => Failure::Conflict {
            reason,
            throttled: true,
        },
        SwapError::Refused(e) => Failure::Refused(e),
        SwapError::Unknown(e) => Failure::Unknown(e),
    }
}

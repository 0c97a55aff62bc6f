//! The fault-injection wrapper of a [`MetadataSwap`] (feature `fault-injection`, for tests):
//! the loop production runs is the loop under test, with faults injected at the swap and at
//! each staged write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::{MetadataSwap, Proposal, SwapError, Swapped};
use crate::error::Error;

/// One staged write of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StagedWrite {
    /// A manifest (the added files', or a rewritten one).
    Manifest,
    /// The manifest list.
    ManifestList,
    /// The metadata file.
    MetadataFile,
}

impl StagedWrite {
    fn of(what: &str) -> Option<Self> {
        match what {
            "manifest" => Some(StagedWrite::Manifest),
            "manifest list" => Some(StagedWrite::ManifestList),
            "metadata file" => Some(StagedWrite::MetadataFile),
            _ => None,
        }
    }
}

/// A fault for the next swap (or staged write) of a table handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SwapFault {
    /// The swap is refused as stale (nothing changed).
    Conflict,
    /// The catalog refuses the swap for good (nothing changed; like access denied).
    Refused,
    /// The swap is applied, and its answer lost (the table moved; the loop hears nothing).
    LostAnswer,
    /// A server error before the swap is applied (nothing changed; the loop cannot know).
    ServerError,
    /// The staged write fails (a storage error; nothing sent to the catalog).
    StagedWrite(StagedWrite),
}

/// The faults queued for a table handle's commits; see
/// [`SalesHistory::inject_commit_faults`](crate::SalesHistory::inject_commit_faults).
#[derive(Debug, Default)]
pub struct CommitFaults {
    queue: Mutex<VecDeque<SwapFault>>,
    injected: AtomicU64,
}

impl CommitFaults {
    /// Queues faults, injected one per matching swap or staged write, in order.
    pub fn push(&self, faults: impl IntoIterator<Item = SwapFault>) {
        self.lock().extend(faults);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Faults still queued.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<SwapFault>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the next fault if `pick` accepts it.
    fn next_if(&self, pick: impl Fn(SwapFault) -> bool) -> Option<SwapFault> {
        let mut q = self.lock();
        let fault = q.front().copied().filter(|f| pick(*f))?;
        q.pop_front();
        self.injected.fetch_add(1, Ordering::Relaxed);
        Some(fault)
    }
}

/// A swap that injects [`CommitFaults`] around the real one.
#[derive(Debug)]
pub(crate) struct FaultySwap {
    pub(crate) inner: Arc<dyn MetadataSwap>,
    pub(crate) faults: Arc<CommitFaults>,
}

#[async_trait]
impl MetadataSwap for FaultySwap {
    fn takes_staged_metadata(&self) -> bool {
        self.inner.takes_staged_metadata()
    }

    fn may_delete_files(&self) -> bool {
        self.inner.may_delete_files()
    }

    fn refuses(&self, operation: &str) -> Option<String> {
        self.inner.refuses(operation)
    }

    fn check_staged_write(&self, what: &str) -> Result<(), Error> {
        let target = StagedWrite::of(what);
        match self
            .faults
            .next_if(|f| matches!(f, SwapFault::StagedWrite(w) if Some(w) == target))
        {
            Some(_) => Err(Error::Storage {
                message: format!("injected: writing the {what} failed"),
                retryable: true,
                source: format!("injected storage fault at the {what}").into(),
            }),
            None => self.inner.check_staged_write(what),
        }
    }

    async fn current_location(&self, ident: &iceberg::TableIdent) -> Option<String> {
        self.inner.current_location(ident).await
    }

    async fn swap(&self, proposal: Proposal<'_>) -> Result<Swapped, SwapError> {
        let fault = self
            .faults
            .next_if(|f| !matches!(f, SwapFault::StagedWrite(_)));
        match fault {
            None => self.inner.swap(proposal).await,
            Some(SwapFault::Conflict) => Err(SwapError::Conflict("injected: stale".into())),
            Some(SwapFault::Refused) => Err(SwapError::Refused(Error::Catalog {
                message: "injected: AccessDenied".into(),
                retryable: false,
                source: "injected refusal".into(),
            })),
            Some(SwapFault::ServerError) => Err(SwapError::Unknown(Error::Catalog {
                message: "injected: 500 InternalFailure".into(),
                retryable: true,
                source: "injected server error".into(),
            })),
            Some(SwapFault::LostAnswer) => {
                self.inner.swap(proposal).await?;
                Err(SwapError::Unknown(Error::Unavailable {
                    service: "the catalog".into(),
                    reason: "injected: connection reset before the answer".into(),
                }))
            }
            Some(SwapFault::StagedWrite(_)) => self.inner.swap(proposal).await,
        }
    }
}

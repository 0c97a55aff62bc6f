//! Who owns written files, and the one rule for discarding them.
//!
//! Every file this crate writes for a commit — data files, manifests, manifest lists,
//! metadata files — is *owned* by the commit until the table references it. The loop ends
//! every commit in exactly one of three ways, and so every [`Owned`] set:
//!
//! | outcome | the files | call |
//! |---|---|---|
//! | landed | the table's now | [`Owned::hand_over`] |
//! | certainly not landed | deleted — **except on S3 Tables**, whose service removes unreferenced files (clients may not delete there) | [`Owned::discard`] |
//! | unknown (the swap may yet be the table's) | kept; an unreferenced one is an orphan for `remove_orphan_files` | [`Owned::keep`] |

use iceberg::io::FileIO;

use crate::table::SalesHistory;

/// Files written and not (yet) referenced by the table; see the [module docs](self).
#[derive(Debug)]
#[must_use = "written files must be handed over, discarded or kept"]
pub(crate) struct Owned {
    paths: Vec<String>,
    io: FileIO,
    may_delete: bool,
}

impl Owned {
    /// An empty set for files written into `table`'s storage.
    pub(crate) fn for_table(table: &SalesHistory) -> Self {
        Owned {
            paths: Vec::new(),
            io: table.current().file_io().clone(),
            may_delete: table.swap().may_delete_files(),
        }
    }

    /// An empty set with the same storage and rule.
    pub(crate) fn empty_like(&self) -> Self {
        Owned {
            paths: Vec::new(),
            io: self.io.clone(),
            may_delete: self.may_delete,
        }
    }

    /// Where a writer records each path it creates (before the file exists).
    pub(crate) fn paths_mut(&mut self) -> &mut Vec<String> {
        &mut self.paths
    }

    /// Splits the set: the paths `pred` picks, and the rest.
    pub(crate) fn partition(mut self, pred: impl Fn(&str) -> bool) -> (Owned, Owned) {
        let (a, b): (Vec<String>, Vec<String>) = std::mem::take(&mut self.paths)
            .into_iter()
            .partition(|p| pred(p));
        let mut picked = self.empty_like();
        let mut rest = self.empty_like();
        picked.paths = a;
        rest.paths = b;
        (picked, rest)
    }

    /// The table references the files now: nothing to do.
    pub(crate) fn hand_over(mut self) {
        self.paths.clear();
    }

    /// The commit certainly did not land: deletes the files (best effort: a file never
    /// created is fine to miss), except where this crate may not delete (S3 Tables).
    pub(crate) async fn discard(mut self, why: &str) {
        let paths = std::mem::take(&mut self.paths);
        if paths.is_empty() {
            return;
        }
        if !self.may_delete {
            tracing::info!(
                files = paths.len(),
                why,
                "not committed; files left to the catalog's unreferenced-file removal"
            );
            return;
        }
        tracing::info!(
            files = paths.len(),
            why,
            "not committed; deleting its files"
        );
        for p in &paths {
            let _ = self.io.delete(p).await;
        }
    }

    /// The outcome is unknown: the files stay (orphans for `remove_orphan_files` if the
    /// commit did not land).
    pub(crate) fn keep(mut self, why: &str) {
        let paths = std::mem::take(&mut self.paths);
        if !paths.is_empty() {
            tracing::warn!(files = paths.len(), why, "outcome unknown; files kept");
        }
    }
}

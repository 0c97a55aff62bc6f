//! [`RetryPolicy`]: the table's `commit.retry.*` properties.

use std::time::{Duration, Instant};

use iceberg::table::Table;

/// The table's `commit.retry.*` settings (iceberg's defaults when unset).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    retries: u32,
    min_wait: Duration,
    max_wait: Duration,
    total: Duration,
}

impl RetryPolicy {
    /// `commit.retry.num-retries`, `.min-wait-ms`, `.max-wait-ms`, `.total-timeout-ms`.
    pub(crate) fn of(table: &Table) -> Self {
        match table.metadata().table_properties() {
            Ok(p) => RetryPolicy {
                retries: u32::try_from(p.commit_num_retries).unwrap_or(u32::MAX),
                min_wait: Duration::from_millis(p.commit_min_retry_wait_ms),
                max_wait: Duration::from_millis(p.commit_max_retry_wait_ms),
                total: Duration::from_millis(p.commit_total_retry_timeout_ms),
            },
            Err(_) => RetryPolicy {
                retries: 4,
                min_wait: Duration::from_millis(100),
                max_wait: Duration::from_secs(60),
                total: Duration::from_secs(1800),
            },
        }
    }

    /// The pause before attempt `attempts + 1`, or `None` when the budget is spent.
    ///
    /// The pause grows exponentially up to `max-wait-ms`: writers that collided (appends
    /// racing appends) spread out. A **rewrite** that lost to another commit (`rewrite`: the
    /// change removes files, e.g. a compaction beside a streaming writer) pauses at most 8×
    /// `min-wait-ms`: sleeping longer would not make its next attempt likelier to win against
    /// a writer that commits every few hundred milliseconds, only later. Throttling (the
    /// catalog is overloaded) always backs off exponentially.
    pub(crate) fn pause(
        &self,
        attempts: u32,
        started: Instant,
        throttled: bool,
        rewrite: bool,
    ) -> Option<Duration> {
        if attempts > self.retries || started.elapsed() >= self.total {
            return None;
        }
        let cap = if rewrite && !throttled { 3 } else { 16 };
        let doublings = attempts.saturating_sub(1).min(cap);
        let factor = 2u32.saturating_pow(doublings);
        Some(self.min_wait.saturating_mul(factor).min(self.max_wait))
    }
}

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
    /// After throttling (the catalog is overloaded) the pause grows exponentially up to
    /// `max-wait-ms`. After a conflict (another commit landed: the table is making progress,
    /// not overloaded) it grows only to 8× `min-wait-ms`: sleeping longer would not make the
    /// next attempt likelier to win against a writer that commits every few hundred
    /// milliseconds, it would only delay it (a compaction beside a streaming writer).
    pub(crate) fn pause(
        &self,
        attempts: u32,
        started: Instant,
        throttled: bool,
    ) -> Option<Duration> {
        if attempts > self.retries || started.elapsed() >= self.total {
            return None;
        }
        let doublings = attempts
            .saturating_sub(1)
            .min(if throttled { 16 } else { 3 });
        let factor = 2u32.saturating_pow(doublings);
        Some(self.min_wait.saturating_mul(factor).min(self.max_wait))
    }
}

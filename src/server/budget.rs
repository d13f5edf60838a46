//! Admission of large query texts: how many bytes of them may be parsed and run at once.
//!
//! A multi-row `INSERT` of a few thousand events is under a MiB of text, but while it is
//! tokenized, parsed, turned into events and committed it holds many times that in memory
//! (tokens, syntax tree, parsed JSON, the write batch). Four bulk loaders sending 2,500-row
//! statements held ~30 MiB more at peak than the same loaders sending 250-row ones. Small
//! statements, which are nearly all statements, pass without touching the budget.
//!
//! Both protocols draw on the one budget: a simple-protocol text while it is parsed and
//! run, an extended-protocol text while it is parsed (Parse), and its text plus the values
//! bound to it while it runs (Execute). Sixteen psycopg loaders of parameterized
//! 3,000-row INSERTs peaked at 279–290 MiB when only the simple protocol was counted,
//! 206–215 MiB with both, in the same time (`bench/bulk_rss.py`).

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::sql::MAX_SQL_BYTES;

/// Query texts at least this long take a share of the budget; shorter ones are not counted
/// (their working memory is small, and the hot paths should not share a semaphore).
pub const LARGE_QUERY_BYTES: usize = 64 * 1024;
/// Bytes of large query text in flight at once: two of the largest statements accepted, so
/// one can be parsed while another is being committed and bulk loads keep their pace.
pub const LARGE_QUERY_BUDGET_BYTES: usize = 2 * MAX_SQL_BYTES;
/// The budget's unit, so permit counts stay small.
const PERMIT_BYTES: usize = 1024;

/// The budget, shared by every connection.
#[derive(Debug)]
pub struct QueryBudget {
    permits: Semaphore,
}

impl Default for QueryBudget {
    fn default() -> Self {
        Self {
            permits: Semaphore::new(LARGE_QUERY_BUDGET_BYTES / PERMIT_BYTES),
        }
    }
}

impl QueryBudget {
    /// Waits until a query text of `len` bytes fits the budget and returns its share, held
    /// until the statement has run; `None` for small texts. Waiters are served in order.
    pub async fn admit(&self, len: usize) -> Option<SemaphorePermit<'_>> {
        if len < LARGE_QUERY_BYTES {
            return None;
        }
        let share = len
            .div_ceil(PERMIT_BYTES)
            .min(LARGE_QUERY_BUDGET_BYTES / PERMIT_BYTES);
        // Never closed, so acquiring cannot fail; if it ever did, run unadmitted rather
        // than refuse the statement.
        self.permits
            .acquire_many(u32::try_from(share).unwrap_or(u32::MAX))
            .await
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_texts_wait_for_room_and_small_ones_never_do() {
        let budget = QueryBudget::default();
        assert!(budget.admit(LARGE_QUERY_BYTES - 1).await.is_none());
        let first = budget.admit(MAX_SQL_BYTES).await.expect("a share");
        let second = budget.admit(MAX_SQL_BYTES).await.expect("a share");
        // The budget is spent: a third large text waits, a small one still passes.
        let third = budget.admit(LARGE_QUERY_BYTES);
        tokio::pin!(third);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), &mut third)
                .await
                .is_err(),
            "a large text waits while the budget is spent"
        );
        assert!(budget.admit(100).await.is_none());
        drop(first);
        assert!(third.await.is_some(), "admitted once a share is returned");
        drop(second);
        // Texts above the whole budget are capped to it rather than waiting forever.
        assert!(budget.admit(10 * MAX_SQL_BYTES).await.is_some());
    }
}

//! The four services' routes and handlers, one module each. Handlers read like the original's
//! branches: authenticate, check parameters (every reason at once), touch the store, answer.

pub mod parties;
pub mod paths;
pub mod trips;
pub mod users;

use crate::db::StoreError;
use crate::problem::{Instance, Problem, detail};

/// The answer for a store failure not handled by the caller: 503 when the database is
/// unreachable (so a gateway counts it as service trouble and may retry later), else 500.
/// The cause is logged, never sent.
pub(crate) fn store_problem(
    instance: Instance,
    retry_after_secs: u32,
) -> impl Fn(StoreError) -> Problem {
    move |e| match e {
        StoreError::Unavailable(_) => {
            tracing::warn!(error = %e, "database unavailable");
            Problem::unavailable(detail::DATABASE_DOWN, instance, retry_after_secs)
        }
        other => {
            tracing::error!(error = %other, "database error");
            Problem::internal(instance)
        }
    }
}

//! The four services' routes and handlers, one module each. Handlers read like the original's
//! branches: authenticate, check parameters (every reason at once), touch the store, answer.
//!
//! What is the same in every handler is said once: the bearer check (`auth::bearer`), the
//! parameter checks (`params::Check`, `params::one_int`), the answer to a store failure
//! ([`store_problem`]), the `instance` label (one `INSTANCE` per service). The sequence of
//! those four steps is written out in each handler on purpose: it differs in which steps a
//! handler takes (registration and login take no bearer), in what it checks and in which
//! store errors it answers itself (a conflict is a 409 here, a 500 there), and a reader sees
//! a handler's whole behaviour in one place rather than in a framework around it.

pub mod parties;
pub mod paths;
pub mod trips;
pub mod users;

use axum::routing::MethodRouter;

use crate::AppState;
use crate::db::StoreError;
use crate::problem::{Instance, Problem, detail};

/// A service's routes: each path with its handlers by method. [`crate::Service::router`]
/// mounts them; [`crate::Service::paths`] lists the paths.
pub type Routes = Vec<(&'static str, MethodRouter<AppState>)>;

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

//! The API contract, `docs/openapi.yaml`, against the real services. Every operation is called
//! with valid requests and its main error cases, and every answer is checked against what the
//! contract documents for that operation and status: the status itself, the required headers
//! and their values, the media type, and the body against the response schema (`$ref`s
//! resolved here, validated with `jsonschema`). The routes the services' routers serve must be
//! exactly the contract's paths and methods, and any other method on those paths must get 405
//! with an `Allow` that lists the documented ones. Rename a field, a parameter or a route on
//! either side and a test fails.
//!
//! Each behaviour is one scenario on its own services (in-process on ephemeral ports, SQLite in
//! a temp directory, like `travel serve all`), run as a test named for it; one more test runs
//! every scenario and checks that together they see each operation succeed. What only the
//! gateway adds (its 401 challenge, 503 for an open breaker, `X-Cache`/`Age`, marked
//! `x-set-by: gateway` in the contract) is checked by the schemathesis run through `travel up`
//! (tests/contract/run.sh at the repository root).

// Test support code is not inside #[test] functions, so clippy's allow-unwrap-in-tests does
// not reach it; a panic is exactly what a failing test set-up should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod spec;

mod parties;
mod paths;
mod routing;
mod trips;
mod users;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use app::App;

/// A scenario's run, boxed so that scenarios can be listed.
pub type Run<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One behaviour, played against fresh services.
pub type Scenario = fn(&App) -> Run<'_>;

/// Turns `async fn name(app: &App)` scenarios of a module (in its `mod scenario`) into one
/// test each, named for the behaviour, and lists them in the module's `ALL`.
#[macro_export]
macro_rules! scenarios {
    ($($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let app = $crate::app::App::start().await;
                scenario::$name(&app).await;
            }
        )+

        /// Every scenario of this module.
        pub const ALL: &[$crate::Scenario] = &[$(boxed::$name),+];

        mod boxed {
            $(
                pub fn $name(app: &$crate::app::App) -> $crate::Run<'_> {
                    Box::pin(super::scenario::$name(app))
                }
            )+
        }
    };
}

/// Every operation of the contract answers 200 in at least one scenario.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenarios_see_every_operation_succeed() {
    let mut statuses: BTreeMap<(String, String), Vec<u16>> = BTreeMap::new();
    let all = [
        users::ALL,
        paths::ALL,
        trips::ALL,
        parties::ALL,
        routing::ALL,
    ];
    for scenario in all.into_iter().flatten() {
        let app = App::start().await;
        scenario(&app).await;
        for (path, method, status) in app.seen() {
            statuses.entry((path, method)).or_default().push(status);
        }
    }
    for (path, method, _) in spec::Contract::load().operations() {
        let got = statuses.get(&(path.clone(), method.clone()));
        assert!(
            got.is_some_and(|s| s.contains(&200)),
            "{method} {path} was never exercised successfully: {got:?}"
        );
    }
}

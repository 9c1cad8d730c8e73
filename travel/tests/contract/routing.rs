//! What the routers serve: exactly the contract's operations, 405 for other methods on them,
//! 404 elsewhere, and 401 on every protected operation without valid credentials.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use travel::Service;

use crate::app::{ADA, App, Auth, Req};

crate::scenarios!(every_protected_operation_refuses_missing_or_forged_credentials);

mod scenario {
    use reqwest::Method;

    use crate::app::{App, Auth, Req};

    pub async fn every_protected_operation_refuses_missing_or_forged_credentials(app: &App) {
        let forged = Auth::Bearer("eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MX0.c2ln");
        for (path, method, _) in app.contract.operations() {
            let method: Method = method.parse().unwrap();
            let op = app.contract.operation(&method, &path).unwrap().clone();
            if !app.contract.is_protected(&op) {
                continue;
            }
            let body = (method != Method::GET).then_some("");
            for auth in [Auth::None, forged] {
                let req = Req {
                    query: &[],
                    body,
                    auth,
                };
                app.expect(method.clone(), &path, req, 401).await;
            }
        }
    }
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

const NOTHING: Req<'static> = Req {
    query: &[],
    body: None,
    auth: Auth::None,
};

/// Every (path, method, service) the running services route, found by asking each router
/// about each of its paths ([`Service::paths`]) with every method: a method it does not
/// route gets 405. `/healthz` (added to every service) is not routed by the gateway and is
/// not part of the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routers_serve_exactly_the_contracts_operations() {
    let app = App::start().await;
    let mut routed = BTreeSet::new();
    for service in Service::ALL {
        let paths = service.paths();
        assert!(!paths.is_empty(), "{} routes nothing", service.name());
        for path in paths {
            for method in METHODS {
                let reply = app
                    .send(service, method.parse().unwrap(), path, NOTHING)
                    .await;
                if reply.status != StatusCode::METHOD_NOT_ALLOWED {
                    routed.insert((
                        path.to_owned(),
                        method.to_owned(),
                        service.name().to_owned(),
                    ));
                }
            }
        }
    }
    let documented = app.contract.operations();
    let only_routed: Vec<_> = routed.difference(&documented).collect();
    let only_documented: Vec<_> = documented.difference(&routed).collect();
    assert!(
        only_routed.is_empty() && only_documented.is_empty(),
        "routes and contract differ:\n  routed only: {only_routed:?}\n  in the contract only: {only_documented:?}"
    );
}

/// Methods the contract does not list get 405 with `Allow` naming exactly the documented
/// ones (plus HEAD where GET is), as problem JSON of the shape the contract documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_get_405_with_the_documented_ones_allowed() {
    let app = App::start().await;
    let (_, token) = app.sign_up(&ADA).await;
    let req = Req {
        auth: Auth::Bearer(&token),
        ..NOTHING
    };
    let not_allowed = &app.contract.doc["components"]["responses"]["MethodNotAllowed"];
    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, method, _) in app.contract.operations() {
        by_path.entry(path).or_default().insert(method);
    }
    for (path, documented) in &by_path {
        let service = app.contract.service(path);
        for method in METHODS.into_iter().filter(|m| !documented.contains(*m)) {
            let reply = app.send(service, method.parse().unwrap(), path, req).await;
            let what = format!("{method} {path} -> {}", reply.status.as_u16());
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{what}: {}",
                reply.body
            );
            app.contract.check_response(&what, not_allowed, &reply);
            let allow: BTreeSet<String> = reply.headers["allow"]
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| m != "HEAD")
                .collect();
            assert_eq!(&allow, documented, "{what}: Allow");
        }
    }
}

/// Paths the contract does not list get 404, as problem JSON of the documented shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_get_404() {
    let app = App::start().await;
    let (_, token) = app.sign_up(&ADA).await;
    let req = Req {
        auth: Auth::Bearer(&token),
        ..NOTHING
    };
    let not_found = &app.contract.doc["components"]["responses"]["NotFound"];
    for service in Service::ALL {
        for target in ["/", "/users", "/trip/1", "/party/join/x"] {
            let reply = app.send(service, Method::GET, target, req).await;
            let what = format!("GET {target} on {} -> {}", service.name(), reply.status);
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{what}: {}",
                reply.body
            );
            app.contract.check_response(&what, not_found, &reply);
        }
    }
}

//! `travel seed` against a `travel up` stack: the complete seed data goes in through the
//! gateway (994 valid users, duplicates renamed, 501 paths, 1000 trips, the memberships
//! spread), the users breaker never leaves closed, and a second run creates nothing.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::support::{SECRET, SEED_DIR, Stack, TRAVEL, TempDir, enc};

/// The six records whose two-letter first name the users service refuses.
const INVALID: [usize; 6] = [132, 145, 344, 574, 720, 921];

#[derive(Deserialize)]
struct UserRecord {
    login: String,
    password: String,
}

#[derive(Deserialize)]
struct PathRecord {
    startpoint: String,
}

fn read<T: serde::de::DeserializeOwned>(name: &str) -> Vec<T> {
    let text = std::fs::read_to_string(format!("{SEED_DIR}/{name}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The documented duplicate policy, written out independently of the code under test: the
/// first record with a login keeps it, later ones get `-<record index>`. Returns the users
/// that can log in, in file order.
fn expected_users(users: &[UserRecord]) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    users
        .iter()
        .enumerate()
        .filter_map(|(i, u)| {
            let login = if seen.insert(u.login.clone()) {
                u.login.clone()
            } else {
                format!("{}-{i}", u.login)
            };
            (!INVALID.contains(&i)).then(|| (login, u.password.clone()))
        })
        .collect()
}

/// The documented spread: trip i (0-based) is owned by user i mod n and joined by users
/// (11i+1) mod n and (13i+5) mod n, skipping the owner and repeats.
fn members(trip: usize, n: usize) -> BTreeSet<usize> {
    [trip % n, (trip * 11 + 1) % n, (trip * 13 + 5) % n]
        .into_iter()
        .collect()
}

async fn seed(stack: &Stack) -> (Value, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(TRAVEL)
            .args([
                "seed",
                "--data",
                SEED_DIR,
                "--gateway",
                &stack.url(""),
                "--admin",
                &stack.admin_url(""),
                "--concurrency",
                "4",
                "--json",
            ])
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("travel seed took over 10 minutes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "travel seed exited {}:\n{stderr}\n{stdout}",
        out.status
    );
    let summary = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\n{stderr}"));
    (summary, stderr)
}

/// (created, existing, rejected, failed) of one kind.
fn counts(summary: &Value, kind: &str) -> (u64, u64, u64, u64) {
    let k = &summary[kind];
    let n = |f: &str| {
        k[f].as_u64()
            .unwrap_or_else(|| panic!("{kind}.{f} in {summary}"))
    };
    (n("created"), n("existing"), n("rejected"), n("failed"))
}

fn assert_breaker_never_opened(summary: &Value) {
    let backends = summary["users_breaker"]
        .as_array()
        .unwrap_or_else(|| panic!("no breaker state: {summary}"));
    assert_eq!(backends.len(), 1, "{summary}");
    assert_eq!(backends[0]["state"], "closed", "{summary}");
    // No transition at all since the gateway started: it never opened, not even briefly.
    assert!(backends[0]["last_transition"].is_null(), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_the_whole_seed_through_the_gateway_and_reruns_as_a_no_op() {
    let users: Vec<UserRecord> = read("users_init.json");
    let paths: Vec<PathRecord> = read("paths_init.json");
    let trips: Vec<Value> = read("trips_init.json");
    assert_eq!((users.len(), paths.len(), trips.len()), (1000, 501, 1000));
    let usable = expected_users(&users);
    let n = usable.len();
    assert_eq!(n, 994);
    let joins: u64 = (0..trips.len())
        .map(|i| members(i, n).len() as u64 - 1)
        .sum();

    let tmp = TempDir::new();
    let mut stack = Stack::start(&tmp.0, Some(SECRET), "up").await;

    let (first, table) = seed(&stack).await;
    eprintln!("first run:\n{table}");
    assert_eq!(counts(&first, "users"), (994, 0, 6, 0), "{first}");
    let rejected = &first["users"]["rejected_by_reason"];
    assert_eq!(rejected.as_array().unwrap().len(), 1, "{first}");
    assert_eq!(rejected[0]["status"], 400);
    assert_eq!(
        rejected[0]["reason"],
        "User data is not valid (first_name: Name must be at leas 3 signs)"
    );
    assert_eq!(counts(&first, "paths"), (501, 0, 0, 0), "{first}");
    assert_eq!(counts(&first, "trips"), (1000, 0, 0, 0), "{first}");
    assert_eq!(counts(&first, "memberships"), (joins, 0, 0, 0), "{first}");
    assert_eq!(first["usable_users"], 994);
    assert_eq!(first["renamed_logins"], 1000 - 31);
    assert_breaker_never_opened(&first);
    assert!(table.contains("users breaker: "), "{table}");

    // What went in, read back through the gateway.
    let basic = |u: usize| Some((usable[u].0.as_str(), usable[u].1.as_str()));
    // A renamed duplicate can log in under its new login; a refused record cannot.
    let renamed = usable.iter().position(|(l, _)| l.contains('-')).unwrap();
    let (status, body) = stack.get("/auth", basic(renamed)).await;
    assert_eq!(status, 200, "{}: {body}", usable[renamed].0);
    let refused = &users[INVALID[0]];
    let login = format!("{}-{}", refused.login, INVALID[0]);
    let (status, _) = stack.get("/auth", Some((&login, &refused.password))).await;
    assert_eq!(status, 401);
    // 501 paths, each findable by its start.
    assert_eq!(stack.get("/path?id=501", basic(0)).await.0, 200);
    assert_eq!(stack.get("/path?id=502", basic(0)).await.0, 404);
    let last = &paths[500].startpoint;
    let (status, found) = stack
        .get(&format!("/path/search?startpoint={}", enc(last)), basic(0))
        .await;
    assert_eq!(status, 200, "{found}");
    assert!(found.contains(last.as_str()), "{found}");
    // Every trip a user should be in (as owner or joiner), and no other.
    for u in [0, 1, 500, n - 1] {
        let expected: BTreeSet<i64> = (0..trips.len())
            .filter(|&i| members(i, n).contains(&u))
            .map(|i| trips[i]["id"].as_i64().unwrap())
            .collect();
        let (status, body) = stack.get("/parties?limit=1000", basic(u)).await;
        assert_eq!(status, 200, "{body}");
        let got: BTreeSet<i64> = serde_json::from_str::<Vec<Value>>(&body)
            .unwrap()
            .iter()
            .map(|p| p["id_trip"].as_i64().unwrap())
            .collect();
        assert_eq!(got, expected, "memberships of user {u} ({})", usable[u].0);
    }

    // Again: everything is found, nothing is created.
    let (second, table) = seed(&stack).await;
    eprintln!("second run:\n{table}");
    assert_eq!(counts(&second, "users"), (0, 994, 6, 0), "{second}");
    assert_eq!(counts(&second, "paths"), (0, 501, 0, 0), "{second}");
    assert_eq!(counts(&second, "trips"), (0, 1000, 0, 0), "{second}");
    assert_eq!(counts(&second, "memberships"), (0, joins, 0, 0), "{second}");
    assert_breaker_never_opened(&second);
    assert_eq!(stack.get("/path?id=502", basic(0)).await.0, 404);

    let status = stack.stop("INT", Duration::from_secs(30)).await;
    assert!(status.success(), "{}", stack.stderr());
}

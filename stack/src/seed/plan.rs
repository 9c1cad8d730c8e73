//! The seed files and what `travel seed` makes of them, decided before any request so that
//! every run of the same files sends the same records: which login each user record gets,
//! and who joins which trip. Pure functions, unit-tested without a network.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The three files, in the original's format.
pub const USERS_FILE: &str = "users_init.json";
/// Paths file.
pub const PATHS_FILE: &str = "paths_init.json";
/// Trips file.
pub const TRIPS_FILE: &str = "trips_init.json";

/// One record of `users_init.json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    /// Login (not unique in the file).
    pub login: String,
    /// Password.
    pub password: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email.
    pub email: String,
    /// Title.
    pub title: String,
}

/// One record of `paths_init.json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct PathRecord {
    /// Start.
    pub startpoint: String,
    /// End.
    pub endpoint: String,
}

/// One record of `trips_init.json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct TripRecord {
    /// Trip id, chosen by the client.
    pub id: i64,
    /// Path id.
    pub id_path: i64,
    /// Name.
    pub name: String,
    /// Start time (free text).
    pub start_time: String,
    /// End time (free text).
    pub fin_time: String,
}

/// The three files' contents.
#[derive(Clone, Debug)]
pub struct SeedData {
    /// Users, in file order.
    pub users: Vec<UserRecord>,
    /// Paths, in file order.
    pub paths: Vec<PathRecord>,
    /// Trips, in file order.
    pub trips: Vec<TripRecord>,
}

/// A seed file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The directory has no such file.
    #[error(
        "{0} not found: run from the repository root (the seed data is in data/seed/) or pass --data DIR"
    )]
    Missing(PathBuf),
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not the expected JSON.
    #[error("{path} is not a JSON array of records: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

fn read<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<Vec<T>, DataError> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing(path.clone())
        } else {
            DataError::Read {
                path: path.clone(),
                source,
            }
        }
    })?;
    serde_json::from_str(&text).map_err(|source| DataError::Parse { path, source })
}

impl SeedData {
    /// Read `users_init.json`, `paths_init.json` and `trips_init.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        Ok(Self {
            users: read(dir, USERS_FILE)?,
            paths: read(dir, PATHS_FILE)?,
            trips: read(dir, TRIPS_FILE)?,
        })
    }
}

/// A user record as it will be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedUser {
    /// Index of the record in the file (0-based).
    pub index: usize,
    /// The record, with the login it is sent with.
    pub record: UserRecord,
    /// The file's login when it was changed.
    pub renamed_from: Option<String>,
    /// `--strict` only: an earlier record has the same login, so a 409 is expected.
    pub repeat: bool,
}

/// Decide the login of every user record.
///
/// The first record with a login keeps it. Without `strict`, every later one becomes
/// `<login>-<record index>` (and, should that be a login of the file too, gets `-<index>`
/// again until it is free): deterministic, and the original's records all get an account.
/// With `strict`, records go as they are and later ones are marked [`PlannedUser::repeat`].
pub fn plan_users(users: &[UserRecord], strict: bool) -> Vec<PlannedUser> {
    // Every login of the file is reserved first, so a renamed record never takes the login of
    // a later first occurrence.
    let mut taken: HashSet<String> = users.iter().map(|u| u.login.clone()).collect();
    let mut seen = HashSet::new();
    users
        .iter()
        .enumerate()
        .map(|(index, u)| {
            let mut record = u.clone();
            let first = seen.insert(u.login.clone());
            let mut renamed_from = None;
            if !first && !strict {
                let mut login = format!("{}-{index}", u.login);
                while taken.contains(&login) {
                    login = format!("{login}-{index}");
                }
                taken.insert(login.clone());
                renamed_from = Some(std::mem::replace(&mut record.login, login));
            }
            PlannedUser {
                index,
                record,
                renamed_from,
                repeat: !first && strict,
            }
        })
        .collect()
}

/// Who joins trip number `trip` (0-based position in the file) besides its owner, as indexes
/// into the `users` users that can log in: `(11·trip + 1) mod users` and
/// `(13·trip + 5) mod users`, leaving out the owner (`trip mod users`, who is a member
/// already) and repeats. Spreads memberships over every user without randomness.
pub fn joiners(trip: usize, users: usize) -> Vec<usize> {
    if users == 0 {
        return Vec::new();
    }
    let owner = trip % users;
    let mut out = Vec::with_capacity(2);
    for candidate in [(trip * 11 + 1) % users, (trip * 13 + 5) % users] {
        if candidate != owner && !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(login: &str) -> UserRecord {
        UserRecord {
            login: login.to_owned(),
            password: "pw".to_owned(),
            first_name: "Ann".to_owned(),
            last_name: "Lee".to_owned(),
            email: "a@b".to_owned(),
            title: "t".to_owned(),
        }
    }

    fn logins(plan: &[PlannedUser]) -> Vec<&str> {
        plan.iter().map(|p| p.record.login.as_str()).collect()
    }

    #[test]
    fn later_duplicates_get_their_index() {
        let users = [user("red"), user("blue"), user("red"), user("red")];
        let plan = plan_users(&users, false);
        assert_eq!(logins(&plan), ["red", "blue", "red-2", "red-3"]);
        assert_eq!(plan[2].renamed_from.as_deref(), Some("red"));
        assert_eq!(plan[1].renamed_from, None);
        assert!(plan.iter().all(|p| !p.repeat));
    }

    #[test]
    fn a_suffix_never_takes_a_login_of_the_file() {
        // "red-2" is a real login further down: record 2 must not take it.
        let users = [user("red"), user("x"), user("red"), user("red-2")];
        let plan = plan_users(&users, false);
        assert_eq!(logins(&plan), ["red", "x", "red-2-2", "red-2"]);
        let unique: HashSet<_> = logins(&plan).into_iter().collect();
        assert_eq!(unique.len(), 4);
    }

    #[test]
    fn strict_sends_as_is_and_marks_repeats() {
        let users = [user("red"), user("red"), user("blue")];
        let plan = plan_users(&users, true);
        assert_eq!(logins(&plan), ["red", "red", "blue"]);
        assert_eq!(
            plan.iter().map(|p| p.repeat).collect::<Vec<_>>(),
            [false, true, false]
        );
    }

    #[test]
    fn the_plan_is_deterministic() {
        let users: Vec<_> = (0..50).map(|i| user(["a", "b", "c"][i % 3])).collect();
        assert_eq!(plan_users(&users, false), plan_users(&users, false));
    }

    #[test]
    fn joiners_skip_the_owner_and_repeats() {
        // trip 0 of 994: owner 0, candidates 1 and 5.
        assert_eq!(joiners(0, 994), [1, 5]);
        // trip 1 of 2: owner 1, candidates (12 % 2 = 0) and (18 % 2 = 0): one joiner.
        assert_eq!(joiners(1, 2), [0]);
        // one user: only the owner, nobody joins.
        assert!(joiners(5, 1).is_empty());
        assert!(joiners(5, 0).is_empty());
        for trip in 0..1000 {
            let j = joiners(trip, 994);
            assert!(j.iter().all(|&u| u < 994 && u != trip % 994));
        }
    }
}

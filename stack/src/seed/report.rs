//! What `travel seed` did: the outcome of each request, tallied per kind of record, and the
//! final table (or JSON summary) with the users breaker's state.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// The outcome of creating one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: made by this run.
    Created,
    /// Already there (409 on a record this run owns, or found by a search).
    Existing,
    /// A 4xx answer: the server refused the record.
    Rejected {
        /// HTTP status.
        status: u16,
        /// The problem's detail (and per-field reasons).
        reason: String,
    },
    /// A 5xx answer or no answer at all: the stack is in trouble.
    Failed {
        /// HTTP status, if any answer came.
        status: Option<u16>,
        /// What went wrong.
        reason: String,
    },
}

/// One group of rejections or failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// HTTP status (`null` for a network error).
    pub status: Option<u16>,
    /// Problem detail or error.
    pub reason: String,
    /// How many records.
    pub count: u64,
}

/// The outcomes of one kind of record.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    /// Made by this run.
    pub created: u64,
    /// Already there.
    pub existing: u64,
    /// Refused with a 4xx, total.
    pub rejected: u64,
    /// 5xx or network errors, total.
    pub failed: u64,
    /// Rejections grouped by status and reason.
    pub rejected_by_reason: Vec<Reason>,
    /// Failures grouped by status and reason.
    pub failed_by_reason: Vec<Reason>,
    /// Wall time of this kind's phase.
    pub seconds: f64,
}

impl Tally {
    /// Count a list of outcomes.
    pub fn of(outcomes: &[Outcome]) -> Self {
        let mut t = Tally::default();
        let mut rejected: BTreeMap<(Option<u16>, &str), u64> = BTreeMap::new();
        let mut failed: BTreeMap<(Option<u16>, &str), u64> = BTreeMap::new();
        for o in outcomes {
            match o {
                Outcome::Created => t.created += 1,
                Outcome::Existing => t.existing += 1,
                Outcome::Rejected { status, reason } => {
                    t.rejected += 1;
                    *rejected.entry((Some(*status), reason)).or_default() += 1;
                }
                Outcome::Failed { status, reason } => {
                    t.failed += 1;
                    *failed.entry((*status, reason)).or_default() += 1;
                }
            }
        }
        let list = |m: BTreeMap<(Option<u16>, &str), u64>| {
            m.into_iter()
                .map(|((status, reason), count)| Reason {
                    status,
                    reason: reason.to_owned(),
                    count,
                })
                .collect()
        };
        t.rejected_by_reason = list(rejected);
        t.failed_by_reason = list(failed);
        t
    }
}

/// One backend of the users upstream, as the gateway's admin listener reports it.
#[derive(Clone, Debug, Serialize)]
pub struct BreakerState {
    /// Backend address.
    pub backend: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// The last transition (`from -> to: reason, N s ago`), if any since the gateway started.
    pub last_transition: Option<String>,
}

/// Everything `travel seed` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Gateway the records went through.
    pub gateway: String,
    /// Wall time of the four phases.
    pub elapsed_seconds: f64,
    /// HTTP requests sent (the gateway's own calls to `/auth` not included).
    pub requests: u64,
    /// `requests / elapsed_seconds`.
    pub requests_per_second: f64,
    /// User records whose login was changed (duplicates, without `--strict`).
    pub renamed_logins: usize,
    /// Users that can log in (created or existing): the owners and joiners of everything else.
    pub usable_users: usize,
    /// `POST /user`.
    pub users: Tally,
    /// `POST /path` (after a search for an identical path).
    pub paths: Tally,
    /// `POST /trip` (trips makes each creator a member, as the original did).
    pub trips: Tally,
    /// `POST /party/join` by the spread of other users.
    pub memberships: Tally,
    /// The users breaker at the end, per backend; `None` when the admin listener did not answer.
    pub users_breaker: Option<Vec<BreakerState>>,
    /// Why the breaker state is missing.
    pub users_breaker_error: Option<String>,
}

impl Summary {
    /// True when something failed for a reason other than a 4xx rejection.
    pub fn any_failed(&self) -> bool {
        self.kinds().iter().any(|(_, t)| t.failed > 0)
    }

    fn kinds(&self) -> [(&'static str, &Tally); 4] {
        [
            ("users", &self.users),
            ("paths", &self.paths),
            ("trips", &self.trips),
            ("memberships", &self.memberships),
        ]
    }

    /// The final table, for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>9} {:>9} {:>7} {:>8}",
            "kind", "created", "existing", "rejected", "failed", "seconds"
        );
        for (name, t) in self.kinds() {
            let _ = writeln!(
                out,
                "{:<12} {:>8} {:>9} {:>9} {:>7} {:>8.1}",
                name, t.created, t.existing, t.rejected, t.failed, t.seconds
            );
        }
        for (title, pick) in [
            (
                "rejected",
                (|t: &Tally| &t.rejected_by_reason) as fn(&Tally) -> &Vec<Reason>,
            ),
            ("failed", |t: &Tally| &t.failed_by_reason),
        ] {
            let lines: Vec<String> = self
                .kinds()
                .iter()
                .flat_map(|(name, t)| {
                    pick(t).iter().map(move |r| {
                        let status = r.status.map_or("---".to_owned(), |s| s.to_string());
                        format!("  {name:<12} {:>5} x {status} {}", r.count, r.reason)
                    })
                })
                .collect();
            if lines.is_empty() {
                let _ = writeln!(out, "{title}: none");
            } else {
                let _ = writeln!(out, "{title}:");
                for line in lines {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        if self.renamed_logins > 0 {
            let _ = writeln!(
                out,
                "{} duplicate logins were sent as <login>-<record index>.",
                self.renamed_logins
            );
        }
        let _ = writeln!(
            out,
            "{} users can log in; trips made each new trip's owner a member ({} trips created).",
            self.usable_users, self.trips.created
        );
        let _ = writeln!(
            out,
            "{} requests in {:.1} s ({:.0} req/s) through {}",
            self.requests, self.elapsed_seconds, self.requests_per_second, self.gateway
        );
        match (&self.users_breaker, &self.users_breaker_error) {
            (Some(backends), _) if !backends.is_empty() => {
                for b in backends {
                    let last = b
                        .last_transition
                        .as_deref()
                        .unwrap_or("no transition since the gateway started");
                    let _ = writeln!(out, "users breaker: {} {} ({last})", b.backend, b.state);
                }
            }
            (_, Some(e)) => {
                let _ = writeln!(out, "users breaker: unknown ({e})");
            }
            _ => {
                let _ = writeln!(out, "users breaker: no upstream named users");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_groups_reasons() {
        let bad = |s, r: &str| Outcome::Rejected {
            status: s,
            reason: r.to_owned(),
        };
        let t = Tally::of(&[
            Outcome::Created,
            Outcome::Created,
            Outcome::Existing,
            bad(400, "invalid"),
            bad(409, "exists"),
            bad(400, "invalid"),
            Outcome::Failed {
                status: None,
                reason: "timed out".to_owned(),
            },
        ]);
        assert_eq!((t.created, t.existing, t.rejected, t.failed), (2, 1, 3, 1));
        assert_eq!(
            t.rejected_by_reason,
            [
                Reason {
                    status: Some(400),
                    reason: "invalid".to_owned(),
                    count: 2
                },
                Reason {
                    status: Some(409),
                    reason: "exists".to_owned(),
                    count: 1
                },
            ]
        );
        assert_eq!(t.failed_by_reason[0].status, None);
    }
}

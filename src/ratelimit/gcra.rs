//! The Generic Cell Rate Algorithm: one number per key, the theoretical arrival time
//! (TAT) of the next request, in nanoseconds on the limiter's clock. A request is
//! admitted when the debt it would leave (`max(tat, now) + interval - now`) fits within
//! `burst` intervals. Exact (no window edges, no sampling), no timer, and time is passed
//! in, so every decision is a plain function of `(tat, now)`.

use std::time::Duration;

/// Rate `burst` per `burst × interval`, sustained one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds of quota one request costs.
    interval: u64,
    /// Most requests admitted at once from a fresh key.
    burst: u32,
}

/// What one request gets, and the headers that describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The TAT to store (unchanged when refused).
    pub tat: u64,
    /// Requests that would still be admitted right now.
    pub remaining: u32,
    /// Until the key's whole burst is available again.
    pub reset: Duration,
    /// Until the next request would be admitted; zero when admitted.
    pub retry_after: Duration,
}

impl Gcra {
    /// `interval` is clamped to at least 1 ns and `burst` to at least 1.
    pub fn new(interval: Duration, burst: u32) -> Self {
        Gcra {
            interval: u64::try_from(interval.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
            burst: burst.max(1),
        }
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// The debt a key may carry: `burst` intervals.
    pub fn limit(&self) -> u64 {
        self.interval.saturating_mul(u64::from(self.burst))
    }

    /// Time for an exhausted key to be whole again (the `w` of `RateLimit-Policy`).
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.limit())
    }

    /// Decides one request at `now` for a key whose stored TAT is `tat` (0 for a key
    /// never seen).
    ///
    /// A key never owes more than the current limit: a TAT further ahead (left by a
    /// stricter rate before a reload, or by [`Gcra::charge`]) counts as exactly exhausted,
    /// and the TAT returned on refusal is that clamped value, so an exhausted key refills
    /// at the rate now in force.
    pub fn decide(&self, tat: u64, now: u64) -> Decision {
        let limit = self.limit();
        let base = tat.max(now).min(now.saturating_add(limit));
        let next = base.saturating_add(self.interval);
        let debt = next - now;
        if debt <= limit {
            Decision {
                allowed: true,
                tat: next,
                remaining: u32::try_from((limit - debt) / self.interval).unwrap_or(u32::MAX),
                reset: Duration::from_nanos(debt),
                retry_after: Duration::ZERO,
            }
        } else {
            Decision {
                allowed: false,
                tat: base,
                remaining: 0,
                reset: Duration::from_nanos(base - now),
                retry_after: Duration::from_nanos(debt - limit),
            }
        }
    }

    /// Charges one event that already happened (a refused credential) whatever the debt,
    /// which is capped at the limit: an exhausted key, refilling at the rate.
    pub fn charge(&self, tat: u64, now: u64) -> u64 {
        let next = tat.max(now).saturating_add(self.interval);
        next.min(now.saturating_add(self.limit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// 10 per second, burst 3.
    fn gcra() -> Gcra {
        Gcra::new(Duration::from_millis(100), 3)
    }

    #[test]
    fn a_fresh_key_gets_its_whole_burst_then_is_refused() {
        let g = gcra();
        let now = 1_000 * MS;
        let mut tat = 0;
        for expected_remaining in [2, 1, 0] {
            let d = g.decide(tat, now);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            tat = d.tat;
        }
        let refused = g.decide(tat, now);
        assert!(!refused.allowed);
        assert_eq!(refused.tat, tat, "a refusal costs nothing");
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(refused.reset, Duration::from_millis(300));
        assert_eq!(refused.remaining, 0);
    }

    #[test]
    fn quota_returns_one_interval_at_a_time() {
        let g = gcra();
        let mut tat = 0;
        for _ in 0..3 {
            tat = g.decide(tat, 0).tat;
        }
        assert!(!g.decide(tat, 99 * MS).allowed);
        let d = g.decide(tat, 100 * MS);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!g.decide(d.tat, 100 * MS).allowed);
        // After the whole window, the whole burst again.
        let whole = g.decide(d.tat, 100 * MS + 300 * MS);
        assert_eq!(whole.remaining, 2);
    }

    #[test]
    fn sustained_rate_is_exact() {
        // One request every interval forever: every one admitted, never more.
        let g = gcra();
        let mut tat = 0;
        for i in 0..1000u64 {
            let d = g.decide(tat, i * 100 * MS);
            assert!(d.allowed, "request {i}");
            tat = d.tat;
        }
    }

    #[test]
    fn charge_caps_the_debt_at_the_limit() {
        let g = gcra();
        let mut tat = 0;
        for _ in 0..1000 {
            tat = g.charge(tat, 0);
        }
        assert_eq!(tat, 300 * MS);
        assert!(!g.decide(tat, 0).allowed);
        assert!(g.decide(tat, 100 * MS).allowed, "refilling at the rate");
    }

    #[test]
    fn a_debt_from_a_stricter_rate_counts_as_exhausted_under_the_new_one() {
        // One per minute, spent: the TAT is a minute ahead.
        let strict = Gcra::new(Duration::from_secs(60), 1);
        let tat = strict.decide(0, 0).tat;
        // Now ten per second: exhausted at once, whole again one interval later.
        let relaxed = Gcra::new(Duration::from_millis(100), 1);
        let refused = relaxed.decide(tat, 0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(refused.tat, 100 * MS);
        assert!(relaxed.decide(refused.tat, 100 * MS).allowed);
    }

    #[test]
    fn degenerate_parameters_are_clamped() {
        let g = Gcra::new(Duration::ZERO, 0);
        assert_eq!(g.burst(), 1);
        assert!(g.decide(0, 0).allowed);
    }
}

//! The in-process store: a moka cache bounded by entries and bytes at once. Each entry
//! weighs at least `max_bytes / max_entries`, so neither bound can be exceeded; eviction is
//! TinyLFU with LRU. Entries are keyed by their 32-byte digest rather than its 66-character
//! hex form, and moka keeps no expiry for them at all (no per-entry timer, no time-to-live
//! and so no write-order queue): freshness is judged on every read, and an entry past its
//! stale deadline is simply a miss until it is replaced or evicted by the bounds. Values are
//! held by value, one buffer each (see `CachedResponse`). All of this keeps the per-entry
//! overhead down (docs/benchmarks.md, RSS at 100k entries).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use async_trait::async_trait;
use moka::sync::Cache;

use super::{CachedResponse, Store, StoreError};

pub struct MemoryStore {
    /// Entries by value: a `CachedResponse` is one shared buffer plus its times, so the
    /// clone on a read is a reference count and no `Arc` per entry is needed.
    entries: Cache<[u8; 32], CachedResponse>,
    /// Generation counters. A counter that is missing (never bumped, or evicted) is
    /// created with a value never handed out before, so it can only orphan entries,
    /// never revive them.
    generations: Cache<String, u64>,
    next_generation: AtomicU64,
}

/// The digest an entry key (`c:` and 64 hex digits) stands for; any other string is hashed.
fn slot(key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    let hex = key
        .strip_prefix("c:")
        .map(str::as_bytes)
        .filter(|h| h.len() == 64);
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if let Some(hex) = hex {
        let decoded = out.iter_mut().zip(hex.chunks_exact(2)).all(|(byte, pair)| {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(high), Some(low)) => {
                    *byte = (high << 4) | low;
                    true
                }
                _ => false,
            }
        });
        if decoded {
            return out;
        }
    }
    out.copy_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes()).as_ref(),
    );
    out
}

impl MemoryStore {
    /// The current value of a generation counter, created fresh when it has none.
    pub fn generation(&self, key: &str) -> u64 {
        self.generations
            .get_with_by_ref(key, || self.fresh_generation())
    }

    pub fn new(max_entries: u64, max_bytes: u64) -> Self {
        let floor = (max_bytes / max_entries.max(1)).max(1);
        MemoryStore {
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(move |_key: &[u8; 32], entry: &CachedResponse| {
                    u32::try_from(entry.weight().max(floor)).unwrap_or(u32::MAX)
                })
                .build(),
            generations: Cache::builder().max_capacity(max_entries.max(1024)).build(),
            next_generation: AtomicU64::new(1),
        }
    }

    fn fresh_generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn label(&self) -> &'static str {
        "memory"
    }

    async fn current(
        &self,
        generation_key: &str,
        entry_key: &str,
    ) -> Result<(u64, Option<CachedResponse>), StoreError> {
        let generation = self.generation(generation_key);
        Ok((generation, self.entries.get(&slot(entry_key))))
    }

    async fn bump(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.generations
                .insert(key.clone(), self.fresh_generation());
        }
        Ok(())
    }

    async fn put(&self, key: String, entry: CachedResponse) -> Result<(), StoreError> {
        self.entries.insert(slot(&key), entry);
        Ok(())
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.entries.run_pending_tasks();
        let bytes = self.entries.iter().map(|(_, e)| e.weight()).sum();
        Some((self.entries.entry_count(), bytes))
    }
}

pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bytes: usize, stale_in_ms: u64) -> CachedResponse {
        let now = unix_ms(SystemTime::now());
        let body = vec![b'x'; bytes];
        CachedResponse::new(200, None, &body, now, now + stale_in_ms, now + stale_in_ms)
    }

    #[tokio::test]
    async fn bounded_by_entries_and_by_bytes() {
        let store = MemoryStore::new(100, 1_000_000);
        for i in 0..1000 {
            store.put(format!("k{i}"), entry(10, 60_000)).await.unwrap();
        }
        let (count, _) = store.usage().unwrap();
        assert!(count <= 100, "{count} entries");

        let store = MemoryStore::new(100_000, 100_000);
        for i in 0..100 {
            store
                .put(format!("k{i}"), entry(10_000, 60_000))
                .await
                .unwrap();
        }
        let (_, bytes) = store.usage().unwrap();
        assert!(bytes <= 100_000, "{bytes} bytes");
    }

    #[test]
    fn entry_keys_map_to_their_digest_and_others_are_hashed() {
        let key = super::super::key::entry_key("", "/p", "/p", None, super::super::Owner::Everyone);
        let digest = slot(&key);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(format!("c:{hex}"), key);
        assert_ne!(slot("c:zz"), slot("c:zy"));
        assert_ne!(slot(&key.to_uppercase()), digest);
    }

    /// Resident bytes per entry with 100 000 entries shaped like the seed's path objects
    /// under `GET /path?id=N` (a measurement, not a test: run it alone with
    /// `cargo test --release --lib cache::memory::tests::rss_per_entry -- --ignored
    /// --nocapture`; docs/benchmarks.md records its output).
    #[tokio::test(flavor = "current_thread")]
    #[ignore = "a measurement; run it alone"]
    async fn rss_per_entry() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/data/seed/paths_init.json");
        let paths: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(seed).unwrap()).unwrap();
        let bodies: Vec<Vec<u8>> = (1..=100_000u64)
            .map(|id| {
                let mut path = paths[(id as usize - 1) % paths.len()].clone();
                path["id"] = id.into();
                serde_json::to_vec(&path).unwrap()
            })
            .collect();
        let keys: Vec<String> = (1..=100_000u64)
            .map(|id| {
                let query = format!("id={id}");
                let owner = super::super::Owner::Everyone;
                super::super::key::entry_key("", "/path", "/path", Some(&query), owner)
            })
            .collect();
        let body_bytes: usize = bodies.iter().map(Vec::len).sum();
        let store = MemoryStore::new(200_000, 256 << 20);
        let now = unix_ms(SystemTime::now());
        let before = rss_kib();
        for (key, body) in keys.into_iter().zip(&bodies) {
            // As `proxy::caching` collects it: the declared length sizes the buffer.
            let mut collector = super::super::Collector::new(Some("application/json"), body.len());
            collector.push(body);
            let entry = collector.finish(200, now, now + 3_600_000, now + 3_600_000);
            store.put(key, entry).await.unwrap();
        }
        let (entries, _) = store.usage().unwrap();
        let after = rss_kib();
        assert_eq!(entries, 100_000);
        println!(
            "entries {entries}; mean body {} B; RSS {} KiB -> {} KiB; {} B per entry",
            body_bytes / 100_000,
            before,
            after,
            (after - before) * 1024 / entries
        );
    }

    #[tokio::test]
    async fn bumped_generations_never_repeat() {
        let store = MemoryStore::new(10, 1000);
        let first = store.generation("g");
        assert_eq!(store.generation("g"), first);
        store.bump(&["g".to_owned()]).await.unwrap();
        let second = store.generation("g");
        assert_ne!(second, first);
        store.generations.invalidate("g");
        let third = store.generation("g");
        assert!(third != first && third != second);
    }
}

//! The in-process store: a moka cache bounded by entries and bytes at once. Each entry
//! weighs at least `max_bytes / max_entries`, so neither bound can be exceeded; eviction is
//! TinyLFU with LRU, expiry at each entry's own stale deadline.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use moka::{Expiry, sync::Cache};

use super::{CachedResponse, Store, StoreError};

pub struct MemoryStore {
    entries: Cache<String, Arc<CachedResponse>>,
    /// Generation counters. A counter that is missing (never bumped, or evicted) is
    /// created with a value never handed out before, so it can only orphan entries,
    /// never revive them.
    generations: Cache<String, u64>,
    next_generation: AtomicU64,
}

struct UntilStale;

impl Expiry<String, Arc<CachedResponse>> for UntilStale {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &Arc<CachedResponse>,
        _at: Instant,
    ) -> Option<Duration> {
        let now = unix_ms(SystemTime::now());
        Some(Duration::from_millis(entry.stale_until.saturating_sub(now)))
    }
}

impl MemoryStore {
    pub fn new(max_entries: u64, max_bytes: u64) -> Self {
        let floor = (max_bytes / max_entries.max(1)).max(1);
        MemoryStore {
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(move |_key: &String, entry: &Arc<CachedResponse>| {
                    u32::try_from(entry.weight().max(floor)).unwrap_or(u32::MAX)
                })
                .expire_after(UntilStale)
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

    async fn generation(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self
            .generations
            .get_with_by_ref(key, || self.fresh_generation()))
    }

    async fn bump(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.generations
                .insert(key.clone(), self.fresh_generation());
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Arc<CachedResponse>>, StoreError> {
        Ok(self.entries.get(key))
    }

    async fn put(&self, key: String, entry: Arc<CachedResponse>) -> Result<(), StoreError> {
        self.entries.insert(key, entry);
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
    use bytes::Bytes;

    fn entry(bytes: usize, stale_in_ms: u64) -> Arc<CachedResponse> {
        let now = unix_ms(SystemTime::now());
        Arc::new(CachedResponse {
            status: 200,
            content_type: None,
            body: Bytes::from(vec![b'x'; bytes]),
            stored_at: now,
            fresh_until: now + stale_in_ms,
            stale_until: now + stale_in_ms,
        })
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

    #[tokio::test]
    async fn bumped_generations_never_repeat() {
        let store = MemoryStore::new(10, 1000);
        let first = store.generation("g").await.unwrap();
        assert_eq!(store.generation("g").await.unwrap(), first);
        store.bump(&["g".to_owned()]).await.unwrap();
        let second = store.generation("g").await.unwrap();
        assert_ne!(second, first);
        store.generations.invalidate("g");
        let third = store.generation("g").await.unwrap();
        assert!(third != first && third != second);
    }
}

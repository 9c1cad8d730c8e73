//! Fixed-capacity memory for per-key limiter state, whatever the number of distinct keys:
//! a set-associative table of `(key hash, value)` slots, [`WAYS`] to a bucket, each bucket
//! behind its own tiny mutex (held for a few nanoseconds, never across an await). A new
//! key takes an empty slot of its bucket, else the slot with the smallest value: for a
//! GCRA TAT that is the key closest to (or already back at) a full burst, so evicting it
//! forgives the least. Memory is allocated once, at construction.

use std::sync::Mutex;

/// Slots per bucket.
pub const WAYS: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// 0 marks an empty slot; real hashes of 0 are stored as 1.
    key: u64,
    value: u64,
}

pub struct Table {
    buckets: Box<[Mutex<[Slot; WAYS]>]>,
}

/// What [`Table::update`] did besides the update itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    /// A key whose value was still above the caller's `live_after` was pushed out.
    pub live: bool,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("slots", &self.capacity())
            .finish()
    }
}

impl Table {
    /// A table of `capacity` slots, rounded up to a whole bucket: 17 bytes a slot
    /// (136-byte buckets of 8).
    pub fn new(capacity: u64) -> Self {
        let buckets = usize::try_from(capacity.div_ceil(WAYS as u64))
            .unwrap_or(usize::MAX)
            .max(1);
        Table {
            buckets: (0..buckets)
                .map(|_| Mutex::new([Slot::default(); WAYS]))
                .collect(),
        }
    }

    fn bucket(&self, hash: u64) -> Option<&Mutex<[Slot; WAYS]>> {
        // The low bits pick nothing else, so any of them will do; a modulo keeps the
        // table exactly the size asked for.
        let index = hash % self.buckets.len() as u64;
        self.buckets.get(usize::try_from(index).ok()?)
    }

    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// Bytes held by the table: fixed at construction.
    pub fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Mutex<[Slot; WAYS]>>()
    }

    /// Runs `f` on the key's current value (0 when absent) and stores what it returns, if
    /// anything. A value at or below `live_after` is as good as absent (an expired TAT), so
    /// evicting it loses nothing; an eviction of a larger one is reported.
    pub fn update<R>(
        &self,
        hash: u64,
        live_after: u64,
        f: impl FnOnce(u64) -> (Option<u64>, R),
    ) -> (R, Option<Evicted>) {
        let key = hash.max(1);
        let Some(bucket) = self.bucket(hash) else {
            // Unreachable: the index is reduced modulo the table's size.
            return (f(0).1, None);
        };
        // A poisoned bucket still holds plain numbers: keep using it.
        let mut slots = bucket.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.iter_mut().find(|s| s.key == key) {
            let (store, result) = f(slot.value);
            if let Some(value) = store {
                slot.value = value;
            }
            return (result, None);
        }
        let (store, result) = f(0);
        let Some(value) = store else {
            return (result, None);
        };
        let (victim, evicted) = match slots.iter().position(|s| s.key == 0) {
            Some(empty) => (empty, None),
            None => {
                let oldest = (0..WAYS)
                    .min_by_key(|&i| slots[i].value)
                    .unwrap_or_default();
                let live = slots[oldest].value > live_after;
                (oldest, Some(Evicted { live }))
            }
        };
        slots[victim] = Slot { key, value };
        (result, evicted)
    }

    /// The key's value, 0 when absent.
    pub fn get(&self, hash: u64) -> u64 {
        let key = hash.max(1);
        self.bucket(hash).map_or(0, |bucket| {
            let slots = bucket.lock().unwrap_or_else(|p| p.into_inner());
            slots.iter().find(|s| s.key == key).map_or(0, |s| s.value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_fixed_whatever_the_number_of_keys() {
        assert_eq!(
            std::mem::size_of::<Mutex<[Slot; WAYS]>>(),
            136,
            "17 bytes a key"
        );
        let table = Table::new(1000);
        assert_eq!(table.capacity(), 1000);
        assert_eq!(table.bytes(), 17_000);
        let bytes = table.bytes();
        for key in 0..100_000u64 {
            table.update(key.wrapping_mul(0x9E37_79B9_7F4A_7C15), 0, |_| {
                (Some(key + 1), ())
            });
        }
        assert_eq!(table.bytes(), bytes);
    }

    #[test]
    fn a_key_keeps_its_value_and_none_stores_nothing() {
        let table = Table::new(64);
        table.update(42, 0, |v| (Some(v + 5), ()));
        table.update(42, 0, |v| (Some(v + 5), ()));
        assert_eq!(table.get(42), 10);
        table.update(43, 0, |_| (None, ()));
        assert_eq!(table.get(43), 0);
    }

    #[test]
    fn a_full_bucket_evicts_the_smallest_value() {
        // One bucket: every key lands in it.
        let table = Table::new(WAYS as u64);
        for key in 1..=WAYS as u64 {
            table.update(key, 0, |_| (Some(100 + key), ()));
        }
        let (_, evicted) = table.update(99, 50, |_| (Some(500), ()));
        assert_eq!(evicted, Some(Evicted { live: true }));
        assert_eq!(table.get(1), 0, "the smallest value went");
        assert_eq!(table.get(2), 102);
        let (_, evicted) = table.update(98, 1_000, |_| (Some(600), ()));
        assert_eq!(
            evicted,
            Some(Evicted { live: false }),
            "an expired value is no loss"
        );
    }
}

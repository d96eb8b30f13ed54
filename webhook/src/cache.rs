//! A bounded TTL cache with single-flight loads, for tag resolutions and registry facts.
//!
//! - Each entry lives for the TTL chosen when it was loaded: the positive TTL, or the short
//!   negative TTL for values that would lead to a deny (so a freshly signed image is admitted
//!   soon after it is signed), and never past the `until` its loader gave (a value taken from
//!   another cache expires with the entry it came from).
//! - A failed load is never cached: the next lookup tries again.
//! - Concurrent lookups of one key share one load.
//! - `invalidate_all` drops everything (the server calls it when a policy's generation changes).

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

#[derive(Clone)]
struct Timed<V> {
    value: V,
    expires: Instant,
}

struct PerEntryTtl;

impl<K, V> Expiry<K, Timed<V>> for PerEntryTtl {
    fn expire_after_create(&self, _: &K, entry: &Timed<V>, created: Instant) -> Option<Duration> {
        Some(entry.expires.saturating_duration_since(created))
    }
}

/// How long a loaded value is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// The short negative TTL instead of the positive one: the value leads to a deny.
    pub negative: bool,
    /// Never past this instant: a value derived from another cache's entry goes with it.
    pub until: Option<Instant>,
}

impl Lifetime {
    pub fn negative_if(negative: bool) -> Self {
        Self {
            negative,
            until: None,
        }
    }
}

/// The TTLs in force, shared by all caches and updated when policies change.
#[derive(Debug, Default)]
pub struct Ttls {
    positive_ms: AtomicU64,
    negative_ms: AtomicU64,
}

impl Ttls {
    pub fn new(positive: Duration, negative: Duration) -> Self {
        let ttls = Self::default();
        ttls.set(positive, negative);
        ttls
    }

    pub fn set(&self, positive: Duration, negative: Duration) {
        self.positive_ms
            .store(positive.as_millis() as u64, Ordering::Relaxed);
        self.negative_ms
            .store(negative.as_millis() as u64, Ordering::Relaxed);
    }

    fn for_value(&self, negative: bool) -> Duration {
        let ms = if negative {
            &self.negative_ms
        } else {
            &self.positive_ms
        };
        Duration::from_millis(ms.load(Ordering::Relaxed))
    }
}

/// Whether a lookup was answered from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

/// A value from the cache, whether it was there, and when its entry expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached<V> {
    pub value: V,
    pub lookup: Lookup,
    pub expires: Instant,
}

/// Keys are hashed on every lookup; SipHash (the default) was a sixth of a warm cache hit.
/// foldhash is seeded per process, like the default.
type Hasher = foldhash::quality::RandomState;

pub struct TtlCache<K, V> {
    inner: Cache<K, Timed<V>, Hasher>,
    ttls: Arc<Ttls>,
}

impl<K, V> TtlCache<K, V>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(capacity: u64, ttls: Arc<Ttls>) -> Self {
        Self {
            inner: Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntryTtl)
                .build_with_hasher(Hasher::default()),
            ttls,
        }
    }

    /// The cached value of `key`, or the result of `load()` (shared with concurrent lookups of
    /// the same key). `lifetime` tells how long a loaded value is kept. Errors are returned to
    /// every waiter and not cached.
    pub async fn get_or_load<E, F>(
        &self,
        key: K,
        lifetime: impl Fn(&V) -> Lifetime,
        load: impl FnOnce() -> F,
    ) -> Result<Cached<V>, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        // A hit is a plain read. The loader (registry or backend calls) is only built on a
        // miss: carried inline, its state machine (several KB) made every lookup, hit or not,
        // copy it through the entry API's futures.
        if let Some(entry) = self.inner.get(&key).await {
            return Ok(Cached {
                value: entry.value,
                lookup: Lookup::Hit,
                expires: entry.expires,
            });
        }
        // Boxed too: moka's entry futures are large and only a miss needs them.
        Box::pin(self.load(key, lifetime, load())).await
    }

    async fn load<E, F>(
        &self,
        key: K,
        lifetime: impl Fn(&V) -> Lifetime,
        load: F,
    ) -> Result<Cached<V>, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        let ttls = self.ttls.clone();
        let entry = self
            .inner
            .entry(key)
            .or_try_insert_with(async move {
                let value = load.await?;
                let Lifetime { negative, until } = lifetime(&value);
                let expires = Instant::now() + ttls.for_value(negative);
                let expires = until.map_or(expires, |until| expires.min(until));
                Ok(Timed { value, expires })
            })
            .await?;
        // Not fresh: another lookup loaded it between the read above and this one.
        let lookup = if entry.is_fresh() {
            Lookup::Miss
        } else {
            Lookup::Hit
        };
        let Timed { value, expires } = entry.into_value();
        Ok(Cached {
            value,
            lookup,
            expires,
        })
    }

    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn cache(positive_ms: u64, negative_ms: u64) -> TtlCache<String, u32> {
        TtlCache::new(
            100,
            Arc::new(Ttls::new(
                Duration::from_millis(positive_ms),
                Duration::from_millis(negative_ms),
            )),
        )
    }

    async fn load(
        c: &TtlCache<String, u32>,
        key: &str,
        value: Result<u32, &'static str>,
        calls: &AtomicUsize,
    ) -> Result<(u32, Lookup), Arc<&'static str>> {
        c.get_or_load(
            key.to_string(),
            |v| Lifetime::negative_if(*v == 0),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                value
            },
        )
        .await
        .map(|cached| (cached.value, cached.lookup))
    }

    #[tokio::test]
    async fn a_loaded_value_is_a_hit_until_its_ttl_passes() {
        let c = cache(300, 300);
        let calls = AtomicUsize::new(0);
        assert_eq!(
            load(&c, "a", Ok(7), &calls).await.unwrap(),
            (7, Lookup::Miss)
        );
        assert_eq!(
            load(&c, "a", Ok(8), &calls).await.unwrap(),
            (7, Lookup::Hit)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            load(&c, "a", Ok(8), &calls).await.unwrap(),
            (8, Lookup::Miss)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn negative_values_expire_on_the_short_ttl() {
        // 0 is "negative" in these tests: it gets 100 ms, a positive value 60 s.
        let c = cache(60_000, 100);
        let calls = AtomicUsize::new(0);
        load(&c, "neg", Ok(0), &calls).await.unwrap();
        load(&c, "pos", Ok(5), &calls).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            load(&c, "neg", Ok(1), &calls).await.unwrap(),
            (1, Lookup::Miss)
        );
        assert_eq!(
            load(&c, "pos", Ok(6), &calls).await.unwrap(),
            (5, Lookup::Hit)
        );
    }

    #[tokio::test]
    async fn a_value_is_not_kept_past_its_until() {
        let c = cache(60_000, 60_000);
        let until = Instant::now() + Duration::from_millis(100);
        let capped = |_: &u32| Lifetime {
            negative: false,
            until: Some(until),
        };
        let first = c
            .get_or_load("a".to_string(), capped, || async { Ok::<_, ()>(1) })
            .await
            .unwrap();
        assert_eq!(
            (first.value, first.lookup, first.expires),
            (1, Lookup::Miss, until)
        );
        let hit = c
            .get_or_load("a".to_string(), capped, || async { Ok::<_, ()>(2) })
            .await
            .unwrap();
        assert_eq!(
            (hit.value, hit.lookup, hit.expires),
            (1, Lookup::Hit, until)
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let reloaded = c
            .get_or_load(
                "a".to_string(),
                |_| Lifetime::negative_if(false),
                || async { Ok::<_, ()>(3) },
            )
            .await
            .unwrap();
        assert_eq!((reloaded.value, reloaded.lookup), (3, Lookup::Miss));
        assert!(reloaded.expires > Instant::now() + Duration::from_secs(59));
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let c = cache(60_000, 60_000);
        let calls = AtomicUsize::new(0);
        assert_eq!(
            *load(&c, "e", Err("registry timeout"), &calls)
                .await
                .unwrap_err(),
            "registry timeout"
        );
        assert_eq!(
            load(&c, "e", Ok(3), &calls).await.unwrap(),
            (3, Lookup::Miss)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_lookups_of_one_key_share_one_load() {
        let c = Arc::new(cache(60_000, 60_000));
        let calls = Arc::new(AtomicUsize::new(0));
        let lookups = (0..32).map(|_| {
            let (c, calls) = (c.clone(), calls.clone());
            tokio::spawn(async move {
                c.get_or_load(
                    "k".to_string(),
                    |_| Lifetime::negative_if(false),
                    || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, ()>(42)
                    },
                )
                .await
                .unwrap()
            })
        });
        let results = futures::future::join_all(lookups).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let misses = results
            .into_iter()
            .map(|r| r.unwrap())
            .filter(|c| c.value == 42 && c.lookup == Lookup::Miss)
            .count();
        assert_eq!(misses, 1);
    }

    #[tokio::test]
    async fn invalidate_all_forgets_everything_and_capacity_is_bounded() {
        let c = cache(60_000, 60_000);
        let calls = AtomicUsize::new(0);
        load(&c, "a", Ok(1), &calls).await.unwrap();
        c.invalidate_all();
        assert_eq!(
            load(&c, "a", Ok(2), &calls).await.unwrap(),
            (2, Lookup::Miss)
        );

        for i in 0..1000 {
            load(&c, &format!("k{i}"), Ok(i), &calls).await.unwrap();
        }
        c.inner.run_pending_tasks().await;
        assert!(c.inner.entry_count() <= 100, "{}", c.inner.entry_count());
    }
}

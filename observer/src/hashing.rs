//! sha256 of files, streamed, with a node-wide cache and per-container caps.
//!
//! The cache is keyed by (device, inode, size, mtime) as `fstat` reports them for the opened
//! file, so a library shared by many containers of the same image is hashed once, and a file
//! rewritten in place (new size or mtime) is hashed again. A file being hashed is marked in
//! flight: another thread asking for the same version waits for that hash instead of reading
//! the file again.
//!
//! [`hash_pool`] spreads the hashing of one sample over a few threads (the cache's
//! [`HashCache::hash_threads`]); which files are hashed is decided before, in order, by the
//! caller, so the width changes how long a sample takes, never what it reports.

use std::cmp::{Ordering as Order, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::elf::{self, ElfInfo};
use crate::error::{Error, Result};

pub use crate::limits::{
    default_hash_threads, DEFAULT_MAX_HASH_BYTES_PER_CONTAINER, DEFAULT_MAX_LIBS, MAX_HASH_THREADS,
};
/// Default number of files the node-wide cache remembers.
pub const DEFAULT_CACHE_ENTRIES: usize = 16_384;
/// Read buffer for hashing.
pub const HASH_BUFFER_BYTES: usize = 256 * 1024;

/// sha256 of everything `reader` yields, and how many bytes that was.
pub fn sha256_reader<R: Read>(mut reader: R) -> io::Result<([u8; 32], u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUFFER_BYTES];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finalize().into(), total))
}

/// A file's sha256 (lower-case hex) and the number of bytes hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHash {
    pub sha256: String,
    pub bytes: u64,
}

/// sha256 of the regular file at `path` (no cache). Refuses devices, FIFOs and directories,
/// which could block or never end.
pub fn sha256_file(path: &Path) -> Result<FileHash> {
    let file = open_regular(path)?;
    let (digest, bytes) = sha256_reader(&file).map_err(|e| Error::io(path, e))?;
    Ok(FileHash {
        sha256: hex::encode(digest),
        bytes,
    })
}

/// Opens `path` for reading only if it is a regular file: checks before opening (so a FIFO is
/// never opened, which would block) and again on the opened file (it may have been swapped).
pub fn open_regular(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::NotRegularFile { path: path.into() });
    }
    // O_NONBLOCK: should the path be swapped for a FIFO after the check, opening it must not
    // hang the observer (it changes nothing for reads of regular files).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::NotRegularFile { path: path.into() });
    }
    Ok(file)
}

#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const O_NONBLOCK: i32 = 0x80;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const O_NONBLOCK: i32 = 0x4000;
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
const O_NONBLOCK: i32 = 0o4000;

/// Identity of one version of a file, from `fstat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
}

impl FileKey {
    pub fn from_metadata(meta: &Metadata) -> Self {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Entry {
    sha256: Option<String>,
    elf: Option<ElfInfo>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<FileKey, Entry>,
    /// Insertion order, for first-in-first-out eviction.
    order: VecDeque<FileKey>,
    /// Versions being hashed right now (by some thread): others wait for them.
    in_flight: HashSet<FileKey>,
}

/// A hash computed through the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedHash {
    pub sha256: String,
    /// Served from the cache, nothing read.
    pub cached: bool,
}

/// Node-wide cache of file hashes and ELF build-ids; bounded (oldest entries evicted first),
/// shared between threads. It also says how many threads may hash one sample's files
/// ([`HashCache::hash_threads`]): one setting for the node, like the cache.
#[derive(Debug)]
pub struct HashCache {
    capacity: usize,
    hash_threads: usize,
    inner: Mutex<Inner>,
    /// Signalled when a hash in flight is done.
    landed: Condvar,
    bytes_hashed: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Default for HashCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_ENTRIES)
    }
}

impl HashCache {
    /// A cache remembering at most `capacity` files (at least one), hashing a sample's files
    /// on [`default_hash_threads`] threads.
    pub fn new(capacity: usize) -> Self {
        HashCache {
            capacity: capacity.max(1),
            hash_threads: default_hash_threads(),
            inner: Mutex::default(),
            landed: Condvar::new(),
            bytes_hashed: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The same cache hashing one sample's files on `threads` threads (1: all on the sampling
    /// thread; at most [`MAX_HASH_THREADS`]).
    pub fn with_hash_threads(mut self, threads: usize) -> Self {
        self.hash_threads = threads.clamp(1, MAX_HASH_THREADS);
        self
    }

    /// Threads that may hash one sample's files, the sampling thread included.
    pub fn hash_threads(&self) -> usize {
        self.hash_threads
    }

    /// Bytes read for hashing since the cache was made (`zastava_hash_bytes_total`).
    pub fn bytes_hashed(&self) -> u64 {
        self.bytes_hashed.load(Ordering::Relaxed)
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that had to read the file.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Files currently remembered.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the sha256 of this version of a file (its `fstat`) is known: asking for it
    /// would read nothing. Counts neither a hit nor a miss.
    pub fn has_sha256(&self, meta: &Metadata) -> bool {
        let key = FileKey::from_metadata(meta);
        self.lock()
            .map
            .get(&key)
            .is_some_and(|e| e.sha256.is_some())
    }

    /// sha256 of an opened regular file, from the cache when this version of the file (same
    /// device, inode, size and mtime) was hashed before, or after the thread hashing it now
    /// is done. `path` only names errors.
    pub fn sha256(&self, file: &File, path: &Path) -> Result<CachedHash> {
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::NotRegularFile { path: path.into() });
        }
        let key = FileKey::from_metadata(&meta);
        let mut inner = self.lock();
        loop {
            if let Some(sha256) = inner.map.get(&key).and_then(|e| e.sha256.clone()) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(CachedHash {
                    sha256,
                    cached: true,
                });
            }
            if inner.in_flight.insert(key) {
                break;
            }
            // Another thread reads this very version: its hash lands in the map (or, should
            // the file change under it, nothing does and this thread reads it itself).
            inner = self
                .landed
                .wait(inner)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(inner);
        let _in_flight = InFlight { cache: self, key };
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Positioned reads from 0 so a shared file offset does not matter.
        let reader = PositionedReader { file, offset: 0 };
        let (digest, bytes) = sha256_reader(reader).map_err(|e| Error::io(path, e))?;
        self.bytes_hashed.fetch_add(bytes, Ordering::Relaxed);
        let sha256 = hex::encode(digest);
        // Remember it only if the file did not change while it was read.
        let after = file.metadata().map_err(|e| Error::io(path, e))?;
        if FileKey::from_metadata(&after) == key && bytes == key.size {
            self.update(key, |e| e.sha256 = Some(sha256.clone()));
        }
        Ok(CachedHash {
            sha256,
            cached: false,
        })
    }

    /// Whether an opened file is ELF and its build-id, cached like [`HashCache::sha256`].
    pub fn elf(&self, file: &File, path: &Path) -> Result<ElfInfo> {
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        let key = FileKey::from_metadata(&meta);
        if let Some(info) = self.lock().map.get(&key).and_then(|e| e.elf.clone()) {
            return Ok(info);
        }
        let info = elf::inspect(file).map_err(|e| elf::with_path(e, path))?;
        self.update(key, |e| e.elf = Some(info.clone()));
        Ok(info)
    }

    fn update(&self, key: FileKey, f: impl FnOnce(&mut Entry)) {
        let mut inner = self.lock();
        if !inner.map.contains_key(&key) {
            while inner.map.len() >= self.capacity {
                match inner.order.pop_front() {
                    Some(old) => {
                        inner.map.remove(&old);
                    }
                    None => break,
                }
            }
            inner.order.push_back(key);
        }
        f(inner.map.entry(key).or_default());
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent in a way that
        // matters (worst case: an entry without its order slot), so keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A version of a file this thread is hashing; dropped (also on a panic), it is no longer in
/// flight and the threads waiting for it look again.
struct InFlight<'a> {
    cache: &'a HashCache,
    key: FileKey,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.cache.lock().in_flight.remove(&self.key);
        self.cache.landed.notify_all();
    }
}

/// What became of a file handed to a [`HashPool`].
#[derive(Debug)]
pub enum Hashed {
    /// Hashed (or found in the cache), or why it could not be.
    Done(Result<CachedHash>),
    /// Not read: the sample's wall time was spent before a thread got to it.
    TimedOut,
}

/// Hashes files on up to [`HashCache::hash_threads`] threads while `work` runs on this one,
/// then helps with what is left; returns what `work` returned and every submitted file's
/// [`Hashed`], in the order of submission. The largest file waiting is taken first (one file
/// is read by one thread: a large one started last would leave the others idle at the end).
/// The helper threads are started with the first files submitted (none if `work` submits
/// nothing) and have ended when this returns. A file a thread reaches after `deadline` is not
/// read.
pub fn hash_pool<R>(
    cache: &HashCache,
    deadline: Instant,
    work: impl FnOnce(&mut HashPool<'_, '_>) -> R,
) -> (R, Vec<Hashed>) {
    let shared = PoolShared {
        cache,
        deadline,
        state: Mutex::new(PoolState::default()),
        queued: Condvar::new(),
    };
    let out = thread::scope(|scope| {
        let mut pool = HashPool {
            scope,
            shared: &shared,
            helpers: 0,
            helpers_wanted: cache.hash_threads().saturating_sub(1),
        };
        let out = work(&mut pool);
        shared.lock().closed = true;
        shared.queued.notify_all();
        while let Some(job) = shared.next() {
            shared.run(job);
        }
        out
    });
    let results = shared
        .state
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .results
        .into_iter()
        // The scope joined every helper, and the loop above emptied the queue.
        .map(|r| r.unwrap_or(Hashed::TimedOut))
        .collect();
    (out, results)
}

/// Files submitted for hashing, see [`hash_pool`].
pub struct HashPool<'scope, 'env> {
    scope: &'scope thread::Scope<'scope, 'env>,
    shared: &'env PoolShared<'env>,
    helpers: usize,
    helpers_wanted: usize,
}

impl HashPool<'_, '_> {
    /// Queues `file`, of `size` bytes, for hashing (through the cache); `path` only names
    /// errors. Returns its index among the results of [`hash_pool`].
    pub fn submit(&mut self, file: File, size: u64, path: PathBuf) -> usize {
        let ticket = {
            let mut state = self.shared.lock();
            let ticket = state.results.len();
            state.results.push(None);
            state.queue.push(Job {
                order: (size, Reverse(ticket)),
                ticket,
                file,
                path,
            });
            ticket
        };
        self.shared.queued.notify_one();
        if self.helpers < self.helpers_wanted {
            let shared = self.shared;
            let spawned = thread::Builder::new()
                .name("zastava-hash".to_string())
                .spawn_scoped(self.scope, move || {
                    while let Some(job) = shared.next() {
                        shared.run(job);
                    }
                });
            // Without a helper the calling thread hashes everything once `work` is done.
            self.helpers = if spawned.is_ok() {
                self.helpers + 1
            } else {
                self.helpers_wanted
            };
        }
        ticket
    }
}

struct Job {
    /// Largest first, then first submitted.
    order: (u64, Reverse<usize>),
    ticket: usize,
    file: File,
    path: PathBuf,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}

impl Eq for Job {}

impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<Order> {
        Some(self.cmp(other))
    }
}

impl Ord for Job {
    fn cmp(&self, other: &Self) -> Order {
        self.order.cmp(&other.order)
    }
}

#[derive(Default)]
struct PoolState {
    queue: BinaryHeap<Job>,
    /// No more files come: threads finding the queue empty end.
    closed: bool,
    results: Vec<Option<Hashed>>,
}

struct PoolShared<'a> {
    cache: &'a HashCache,
    deadline: Instant,
    state: Mutex<PoolState>,
    queued: Condvar,
}

impl PoolShared<'_> {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next file to hash, waiting for one while more may come.
    fn next(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = self
                .queued
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn run(&self, job: Job) {
        let hashed = if Instant::now() > self.deadline {
            Hashed::TimedOut
        } else {
            Hashed::Done(self.cache.sha256(&job.file, &job.path))
        };
        self.lock().results[job.ticket] = Some(hashed);
    }
}

struct PositionedReader<'a> {
    file: &'a File,
    offset: u64,
}

impl Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Per-container caps on hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Files (loaded libraries) hashed per container; the executable does not count.
    pub max_libs: usize,
    /// Bytes of files hashed per container (the executable counts). Charged with the file's
    /// size whether or not the cache had it, so what a container's report contains does not
    /// depend on what else runs on the node.
    pub max_hash_bytes_per_container: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_libs: DEFAULT_MAX_LIBS,
            max_hash_bytes_per_container: DEFAULT_MAX_HASH_BYTES_PER_CONTAINER,
        }
    }
}

/// Which cap kept a file from being hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Capped {
    /// More files than `max_libs`: the file is listed but not inspected.
    MaxLibs,
    /// Hashing it would exceed `max_hash_bytes_per_container`.
    MaxHashBytes,
    /// The sample's wall time ([`crate::limits::SAMPLE_WALL_TIME`]) was spent before it.
    WallTime,
}

/// What one container has used of its [`Limits`].
#[derive(Clone, Debug)]
pub struct Budget {
    limits: Limits,
    libs: usize,
    bytes: u64,
}

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Budget {
            limits,
            libs: 0,
            bytes: 0,
        }
    }

    /// Counts one more library against `max_libs`.
    pub fn take_lib(&mut self) -> Result<(), Capped> {
        if self.libs >= self.limits.max_libs {
            return Err(Capped::MaxLibs);
        }
        self.libs += 1;
        Ok(())
    }

    /// Charges `size` bytes against `max_hash_bytes_per_container`; a file that does not fit is
    /// refused (smaller files after it may still fit).
    pub fn take_bytes(&mut self, size: u64) -> Result<(), Capped> {
        match self.bytes.checked_add(size) {
            Some(total) if total <= self.limits.max_hash_bytes_per_container => {
                self.bytes = total;
                Ok(())
            }
            _ => Err(Capped::MaxHashBytes),
        }
    }

    /// Gives back `size` bytes charged for a file that was not read after all (the sample's
    /// wall time ran out before it).
    pub fn refund(&mut self, size: u64) {
        self.bytes = self.bytes.saturating_sub(size);
    }

    /// Bytes charged so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;
    use std::process::Command;

    use crate::testutil::TempDir;

    fn sha256sum(path: &Path) -> String {
        let out = Command::new("sha256sum")
            .arg(path)
            .output()
            .expect("`sha256sum` (coreutils) is needed by this test");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    }

    fn temp_dir(name: &str) -> TempDir {
        TempDir::new(&format!("hash-{name}"))
    }

    #[test]
    fn sha256_matches_sha256sum() {
        let dir = temp_dir("sum");
        // Sizes around the buffer size, plus real files.
        let mut paths: Vec<PathBuf> = vec!["/bin/true".into(), "/etc/hostname".into()];
        for size in [
            0usize,
            1,
            HASH_BUFFER_BYTES - 1,
            HASH_BUFFER_BYTES,
            3 * HASH_BUFFER_BYTES + 17,
        ] {
            let path = dir.join(format!("f{size}"));
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, data).unwrap();
            paths.push(path);
        }
        let cache = HashCache::new(64);
        for path in &paths {
            let expected = sha256sum(path);
            let plain = sha256_file(path).unwrap();
            assert_eq!(plain.sha256, expected, "{}", path.display());
            assert_eq!(plain.bytes, std::fs::metadata(path).unwrap().len());
            let file = File::open(path).unwrap();
            assert_eq!(cache.sha256(&file, path).unwrap().sha256, expected);
        }
    }

    #[test]
    fn known_vector() {
        let (digest, n) = sha256_reader(&b"abc"[..]).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            hex::encode(digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn cache_hit_avoids_rereading() {
        let dir = temp_dir("hit");
        let path = dir.join("lib.so");
        std::fs::write(&path, vec![7u8; 100_000]).unwrap();
        let cache = HashCache::new(8);
        let first = cache.sha256(&File::open(&path).unwrap(), &path).unwrap();
        assert!(!first.cached);
        assert_eq!(cache.bytes_hashed(), 100_000);
        // Same file opened again (as another container would): no bytes read.
        for _ in 0..5 {
            let again = cache.sha256(&File::open(&path).unwrap(), &path).unwrap();
            assert!(again.cached);
            assert_eq!(again.sha256, first.sha256);
        }
        assert_eq!(cache.bytes_hashed(), 100_000);
        assert_eq!((cache.hits(), cache.misses()), (5, 1));
        // A hard link is the same inode: still a hit.
        let link = dir.join("link.so");
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(&path, &link).unwrap();
        assert!(
            cache
                .sha256(&File::open(&link).unwrap(), &link)
                .unwrap()
                .cached
        );
    }

    #[test]
    fn rewritten_file_is_hashed_again() {
        let dir = temp_dir("rewrite");
        let path = dir.join("lib.so");
        std::fs::write(&path, b"version one").unwrap();
        let cache = HashCache::new(8);
        let one = cache.sha256(&File::open(&path).unwrap(), &path).unwrap();
        // Same inode, different size (and mtime).
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b" and two").unwrap();
        drop(f);
        let two = cache.sha256(&File::open(&path).unwrap(), &path).unwrap();
        assert!(!two.cached);
        assert_ne!(one.sha256, two.sha256);
        assert_eq!(two.sha256, sha256sum(&path));
        assert_eq!(cache.bytes_hashed(), 11 + 19);
    }

    #[test]
    fn cache_is_bounded_and_evicts_oldest() {
        let dir = temp_dir("bounded");
        let cache = HashCache::new(2);
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| {
                let p = dir.join(format!("f{i}"));
                std::fs::write(&p, format!("file {i}")).unwrap();
                p
            })
            .collect();
        for p in &paths {
            cache.sha256(&File::open(p).unwrap(), p).unwrap();
        }
        assert_eq!(cache.len(), 2);
        // f0 was evicted, f2 is still there.
        assert!(
            cache
                .sha256(&File::open(&paths[2]).unwrap(), &paths[2])
                .unwrap()
                .cached
        );
        assert!(
            !cache
                .sha256(&File::open(&paths[0]).unwrap(), &paths[0])
                .unwrap()
                .cached
        );
    }

    #[test]
    fn elf_info_is_cached_with_the_hash() {
        let cache = HashCache::new(8);
        let path = Path::new("/bin/true");
        let info = cache.elf(&File::open(path).unwrap(), path).unwrap();
        assert!(info.is_elf);
        assert_eq!(info.build_id, crate::elf::tests::readelf_build_id(path));
        cache.sha256(&File::open(path).unwrap(), path).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn shared_between_threads() {
        let cache = std::sync::Arc::new(HashCache::new(8));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    let p = Path::new("/bin/true");
                    cache.sha256(&File::open(p).unwrap(), p).unwrap().sha256
                })
            })
            .collect();
        let sums: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(sums.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(sums[0], sha256sum(Path::new("/bin/true")));
    }

    #[test]
    fn a_file_hashed_by_one_thread_is_not_read_again_by_another() {
        let dir = temp_dir("in-flight");
        let path = dir.join("big.so");
        let size = 16 * HASH_BUFFER_BYTES;
        std::fs::write(&path, vec![3u8; size]).unwrap();
        let cache = HashCache::new(8);
        let threads = 4;
        let start = std::sync::Barrier::new(threads);
        let sums: Vec<CachedHash> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let file = File::open(&path).unwrap();
                        start.wait();
                        cache.sha256(&file, &path).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(sums.iter().all(|s| s.sha256 == sha256sum(&path)));
        assert_eq!(sums.iter().filter(|s| !s.cached).count(), 1, "{sums:?}");
        assert_eq!(cache.bytes_hashed(), size as u64);
        assert_eq!((cache.misses(), cache.hits()), (1, threads as u64 - 1));
    }

    #[test]
    fn the_pool_returns_every_file_in_order_of_submission() {
        let dir = temp_dir("pool");
        let paths: Vec<PathBuf> = (0..9)
            .map(|i| {
                let p = dir.join(format!("f{i}"));
                std::fs::write(&p, vec![i as u8; 1000 * i + 1]).unwrap();
                p
            })
            .collect();
        for threads in 1..=MAX_HASH_THREADS {
            let cache = HashCache::new(64).with_hash_threads(threads);
            let far = Instant::now() + std::time::Duration::from_secs(3600);
            let (tickets, hashed) = hash_pool(&cache, far, |pool| {
                let mut tickets: Vec<usize> = paths
                    .iter()
                    .map(|p| {
                        pool.submit(
                            File::open(p).unwrap(),
                            std::fs::metadata(p).unwrap().len(),
                            p.clone(),
                        )
                    })
                    .collect();
                // Not a regular file: its error comes back in its place.
                tickets.push(pool.submit(File::open("/dev/null").unwrap(), 0, "/dev/null".into()));
                tickets
            });
            assert_eq!(tickets, (0..=paths.len()).collect::<Vec<_>>());
            assert_eq!(hashed.len(), paths.len() + 1);
            for (path, hashed) in paths.iter().zip(&hashed) {
                match hashed {
                    Hashed::Done(Ok(h)) => assert_eq!(h.sha256, sha256sum(path)),
                    other => panic!("{}: {other:?}", path.display()),
                }
            }
            assert!(matches!(
                hashed.last(),
                Some(Hashed::Done(Err(Error::NotRegularFile { .. })))
            ));
            // Past the deadline nothing is read.
            let (_, late) = hash_pool(
                &HashCache::new(8).with_hash_threads(threads),
                Instant::now(),
                |pool| {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    pool.submit(File::open(&paths[3]).unwrap(), 3001, paths[3].clone())
                },
            );
            assert!(matches!(late[..], [Hashed::TimedOut]), "{late:?}");
        }
        // Nothing submitted: no thread started, nothing returned.
        let (out, hashed) = hash_pool(&HashCache::new(8), Instant::now(), |_| 7);
        assert_eq!((out, hashed.len()), (7, 0));
    }

    #[test]
    fn hash_threads_are_bounded() {
        assert_eq!(HashCache::new(8).with_hash_threads(0).hash_threads(), 1);
        assert_eq!(
            HashCache::new(8).with_hash_threads(1000).hash_threads(),
            MAX_HASH_THREADS
        );
        let default = HashCache::default().hash_threads();
        assert!((1..=MAX_HASH_THREADS).contains(&default));
        assert_eq!(default, default_hash_threads());
    }

    #[test]
    fn refuses_non_regular_files() {
        for p in ["/dev/zero", "/tmp", "/dev/null"] {
            assert!(matches!(
                sha256_file(Path::new(p)),
                Err(Error::NotRegularFile { .. })
            ));
        }
        let zero = File::open("/dev/zero").unwrap();
        let cache = HashCache::new(2);
        assert!(matches!(
            cache.sha256(&zero, Path::new("/dev/zero")),
            Err(Error::NotRegularFile { .. })
        ));
    }

    #[test]
    fn lib_cap() {
        let mut budget = Budget::new(Limits {
            max_libs: 2,
            max_hash_bytes_per_container: u64::MAX,
        });
        assert_eq!(budget.take_lib(), Ok(()));
        assert_eq!(budget.take_lib(), Ok(()));
        assert_eq!(budget.take_lib(), Err(Capped::MaxLibs));
        assert_eq!(budget.take_lib(), Err(Capped::MaxLibs));
    }

    #[test]
    fn byte_cap_skips_big_files_but_not_later_small_ones() {
        let mut budget = Budget::new(Limits {
            max_libs: 10,
            max_hash_bytes_per_container: 1000,
        });
        assert_eq!(budget.take_bytes(600), Ok(()));
        assert_eq!(budget.take_bytes(500), Err(Capped::MaxHashBytes));
        assert_eq!(budget.take_bytes(400), Ok(()));
        assert_eq!(budget.take_bytes(1), Err(Capped::MaxHashBytes));
        assert_eq!(budget.take_bytes(0), Ok(()));
        assert_eq!(budget.bytes(), 1000);
        assert_eq!(budget.take_bytes(u64::MAX), Err(Capped::MaxHashBytes));
    }

    #[test]
    fn default_limits_are_the_documented_ones() {
        let limits = Limits::default();
        assert_eq!(limits.max_libs, 256);
        assert_eq!(limits.max_hash_bytes_per_container, 64_000_000);
        assert_eq!(
            serde_json::to_string(&Capped::MaxHashBytes).unwrap(),
            "\"maxHashBytes\""
        );
    }
}

//! One suite, two front ends: [`TestCache`] offers the blocking API's shape over either a
//! blocking [`Cache`] or an [`AsyncCache`] whose futures it drives on the calling thread
//! (inside a shared tokio runtime's context). Tests written against it run unchanged on both.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use super::FrontEnd;
use serde::de::DeserializeOwned;
use serde::Serialize;
use stampcache::{
    Answer, AsyncCache, AsyncScope, Builder, Cache, Dep, Error, Isolation, LoadError, Read, Row,
    Scope,
};

/// The runtime whose context async caches live in (its workers drive Redis I/O and timers).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

struct Unpark(std::thread::Thread);
impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread, inside the runtime's context. Unlike
/// `Runtime::block_on` it nests: a loader may call the cache again (as a blocking one can).
pub fn drive<F: Future>(f: F) -> F::Output {
    let _context = runtime().enter();
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(5));
    }
}

/// A cache under test, through either front end.
#[derive(Clone, Debug)]
pub enum TestCache {
    Blocking(Cache),
    Async(AsyncCache),
}

/// Builds a [`TestCache`] with the given front end.
pub trait BuildFor {
    fn build_for(self, b: super::Backend) -> Result<TestCache, Error>;
}

impl BuildFor for Builder {
    fn build_for(self, b: super::Backend) -> Result<TestCache, Error> {
        match b.front() {
            FrontEnd::Blocking => self.build().map(TestCache::Blocking),
            FrontEnd::Async => {
                let _context = runtime().enter();
                self.build_async().map(TestCache::Async)
            }
        }
    }
}

/// A sync loader as an async one.
fn lift<T>(f: impl FnOnce() -> T) -> impl FnOnce() -> std::future::Ready<T> {
    move || std::future::ready(f())
}

impl TestCache {
    pub fn get_or_compute<T, F>(&self, read: &Read, loader: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        match self {
            TestCache::Blocking(c) => c.get_or_compute(read, loader),
            TestCache::Async(c) => drive(c.get_or_compute(read, lift(loader))),
        }
    }
    pub fn get_or_compute_answer<T, F>(&self, read: &Read, loader: F) -> Result<Answer<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        match self {
            TestCache::Blocking(c) => c.get_or_compute_answer(read, loader),
            TestCache::Async(c) => drive(c.get_or_compute_answer(read, lift(loader))),
        }
    }
    pub fn get_or_load<T, E, F>(&self, read: &Read, loader: F) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        match self {
            TestCache::Blocking(c) => c.get_or_load(read, loader),
            TestCache::Async(c) => drive(c.get_or_load(read, lift(loader))),
        }
    }
    pub fn invalidate_obj<R: Serialize + ?Sized>(&self, t: &str, row: &R) -> Result<(), Error> {
        match self {
            TestCache::Blocking(c) => c.invalidate_obj(t, row),
            TestCache::Async(c) => drive(c.invalidate_obj(t, row)),
        }
    }
    pub fn invalidate_rows(&self, t: &str, rows: Vec<Row>) -> Result<(), Error> {
        match self {
            TestCache::Blocking(c) => c.invalidate_rows(t, rows),
            TestCache::Async(c) => drive(c.invalidate_rows(t, rows)),
        }
    }
    pub fn on_insert<R: Serialize + ?Sized>(&self, t: &str, new: &R) -> Result<(), Error> {
        match self {
            TestCache::Blocking(c) => c.on_insert(t, new),
            TestCache::Async(c) => drive(c.on_insert(t, new)),
        }
    }
    pub fn on_update<R: Serialize + ?Sized>(&self, t: &str, old: &R, new: &R) -> Result<(), Error> {
        match self {
            TestCache::Blocking(c) => c.on_update(t, old, new),
            TestCache::Async(c) => drive(c.on_update(t, old, new)),
        }
    }
    pub fn on_delete<R: Serialize + ?Sized>(&self, t: &str, old: &R) -> Result<(), Error> {
        match self {
            TestCache::Blocking(c) => c.on_delete(t, old),
            TestCache::Async(c) => drive(c.on_delete(t, old)),
        }
    }
    pub fn invalidated_update<'r, R: Serialize + 'r>(
        &self,
        t: &str,
        changes: impl IntoIterator<Item = (&'r R, &'r R)>,
    ) -> Result<(), Error> {
        match self {
            TestCache::Blocking(c) => c.invalidated_update(t, changes),
            TestCache::Async(c) => drive(c.invalidated_update(t, changes)),
        }
    }
    pub fn invalidate_model(&self, t: &str) -> Result<(), Error> {
        match self {
            TestCache::Blocking(c) => c.invalidate_model(t),
            TestCache::Async(c) => drive(c.invalidate_model(t)),
        }
    }
    pub fn invalidate_all(&self) -> Result<(), Error> {
        match self {
            TestCache::Blocking(c) => c.invalidate_all(),
            TestCache::Async(c) => drive(c.invalidate_all()),
        }
    }
    pub fn flush_pending(&self) -> Result<(), Error> {
        match self {
            TestCache::Blocking(c) => c.flush_pending(),
            TestCache::Async(c) => drive(c.flush_pending()),
        }
    }
    pub fn pending_invalidations(&self) -> usize {
        match self {
            TestCache::Blocking(c) => c.pending_invalidations(),
            TestCache::Async(c) => c.pending_invalidations(),
        }
    }
    pub fn stats(&self) -> stampcache::Stats {
        match self {
            TestCache::Blocking(c) => c.stats(),
            TestCache::Async(c) => c.stats(),
        }
    }
    pub fn flights_in_progress(&self) -> usize {
        match self {
            TestCache::Blocking(c) => c.flights_in_progress(),
            TestCache::Async(c) => c.flights_in_progress(),
        }
    }
    pub fn no_invalidation(&self) -> TestCache {
        match self {
            TestCache::Blocking(c) => TestCache::Blocking(c.no_invalidation()),
            TestCache::Async(c) => TestCache::Async(c.no_invalidation()),
        }
    }
    pub fn using(&self, alias: &str) -> TestCache {
        match self {
            TestCache::Blocking(c) => TestCache::Blocking(c.using(alias)),
            TestCache::Async(c) => TestCache::Async(c.using(alias)),
        }
    }
    pub fn simple(&self) -> TestSimple<'_> {
        TestSimple(self)
    }
    pub fn cached_as(&self, deps: impl IntoIterator<Item = Dep>) -> TestCachedAs<'_> {
        TestCachedAs {
            cache: self,
            deps: deps.into_iter().collect(),
            name: String::new(),
            args: None,
            extra: Vec::new(),
        }
    }
    pub fn prepare(&self, read: &Read) -> TestPrepared {
        match self {
            TestCache::Blocking(c) => TestPrepared::Blocking(c.prepare(read)),
            TestCache::Async(c) => TestPrepared::Async(c.prepare(read)),
        }
    }
    pub fn atomic(&self) -> TestScope {
        self.atomic_with(Isolation::ReadCommitted)
    }
    pub fn atomic_with(&self, iso: Isolation) -> TestScope {
        match self {
            TestCache::Blocking(c) => TestScope::Blocking(c.atomic_with(iso)),
            TestCache::Async(c) => TestScope::Async(c.atomic_with(iso)),
        }
    }
}

/// The simple cache through either front end.
pub struct TestSimple<'a>(&'a TestCache);

impl TestSimple<'_> {
    pub fn get<T: DeserializeOwned + 'static>(&self, key: &str) -> Result<T, Error> {
        match self.0 {
            TestCache::Blocking(c) => c.simple().get(key),
            TestCache::Async(c) => drive(c.simple().get(key)),
        }
    }
    pub fn set<T: Serialize + DeserializeOwned + 'static>(
        &self,
        key: &str,
        v: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        match self.0 {
            TestCache::Blocking(c) => c.simple().set(key, v, ttl),
            TestCache::Async(c) => drive(c.simple().set(key, v, ttl)),
        }
    }
    pub fn delete(&self, key: &str) -> Result<bool, Error> {
        match self.0 {
            TestCache::Blocking(c) => c.simple().delete(key),
            TestCache::Async(c) => drive(c.simple().delete(key)),
        }
    }
    pub fn cached<A, T, F>(&self, name: &str, args: &A, ttl: Duration, f: F) -> Result<T, Error>
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned + 'static,
        F: FnOnce() -> T,
    {
        match self.0 {
            TestCache::Blocking(c) => c.simple().cached(name, args, ttl, f),
            TestCache::Async(c) => drive(c.simple().cached(name, args, ttl, lift(f))),
        }
    }
    pub fn key<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<String, Error> {
        match self.0 {
            TestCache::Blocking(c) => c.simple().key(name, args),
            TestCache::Async(c) => c.simple().key(name, args),
        }
    }
    pub fn invalidate<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<bool, Error> {
        match self.0 {
            TestCache::Blocking(c) => c.simple().invalidate(name, args),
            TestCache::Async(c) => drive(c.simple().invalidate(name, args)),
        }
    }
}

/// `cached_as` through either front end (the builder's settings are replayed on the real one).
pub struct TestCachedAs<'a> {
    cache: &'a TestCache,
    deps: Vec<Dep>,
    name: String,
    args: Option<String>,
    /// Each `extra` part, replayed in order.
    extra: Vec<String>,
}

impl TestCachedAs<'_> {
    pub fn name(mut self, n: &str) -> Self {
        self.name = n.to_string();
        self
    }
    /// Arguments (kept as their JSON text, which is what the key is built from here).
    pub fn args<A: Serialize + ?Sized>(mut self, a: &A) -> Self {
        self.args = Some(serde_json::to_string(a).expect("serialisable arguments"));
        self
    }
    pub fn extra(mut self, e: &str) -> Self {
        self.extra.push(e.to_string());
        self
    }
    pub fn get_or_compute<T, F>(self, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        let args = self.args.unwrap_or_default();
        match self.cache {
            TestCache::Blocking(c) => {
                let mut call = c.cached_as(self.deps).name(self.name).args(&args);
                for e in self.extra {
                    call = call.extra(e);
                }
                call.get_or_compute(f)
            }
            TestCache::Async(c) => {
                let mut call = c.cached_as(self.deps).name(self.name).args(&args);
                for e in self.extra {
                    call = call.extra(e);
                }
                drive(call.get_or_compute(lift(f)))
            }
        }
    }
}

/// A prepared read through either front end.
pub enum TestPrepared {
    Blocking(stampcache::Prepared<stampcache::DefaultCodec>),
    Async(stampcache::AsyncPrepared<stampcache::DefaultCodec>),
}

impl TestPrepared {
    pub fn get_or_load<T, E, F>(&self, f: F) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        match self {
            TestPrepared::Blocking(p) => p.get_or_load(f),
            TestPrepared::Async(p) => drive(p.get_or_load(lift(f))),
        }
    }
    pub fn get_or_compute<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        match self {
            TestPrepared::Blocking(p) => p.get_or_compute(f),
            TestPrepared::Async(p) => drive(p.get_or_compute(lift(f))),
        }
    }
}

/// A transaction scope through either front end.
pub enum TestScope {
    Blocking(Scope),
    Async(AsyncScope),
}

impl TestScope {
    pub fn get_or_compute<T, F>(&self, read: &Read, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        match self {
            TestScope::Blocking(s) => s.get_or_compute(read, f),
            TestScope::Async(s) => drive(s.get_or_compute(read, lift(f))),
        }
    }
    pub fn on_insert<R: Serialize + ?Sized>(&self, t: &str, new: &R) -> Result<(), Error> {
        match self {
            TestScope::Blocking(s) => s.on_insert(t, new),
            TestScope::Async(s) => drive(s.on_insert(t, new)),
        }
    }
    pub fn on_update<R: Serialize + ?Sized>(&self, t: &str, old: &R, new: &R) -> Result<(), Error> {
        match self {
            TestScope::Blocking(s) => s.on_update(t, old, new),
            TestScope::Async(s) => drive(s.on_update(t, old, new)),
        }
    }
    pub fn invalidate_model(&self, t: &str) -> Result<(), Error> {
        match self {
            TestScope::Blocking(s) => s.invalidate_model(t),
            TestScope::Async(s) => drive(s.invalidate_model(t)),
        }
    }
    pub fn invalidate_obj<R: Serialize + ?Sized>(&self, t: &str, row: &R) -> Result<(), Error> {
        match self {
            TestScope::Blocking(s) => s.invalidate_obj(t, row),
            TestScope::Async(s) => drive(s.invalidate_obj(t, row)),
        }
    }
    pub fn no_invalidation(&self) -> TestScope {
        match self {
            TestScope::Blocking(s) => TestScope::Blocking(s.no_invalidation()),
            TestScope::Async(s) => TestScope::Async(s.no_invalidation()),
        }
    }
    pub fn isolation(&self) -> Isolation {
        match self {
            TestScope::Blocking(s) => s.isolation(),
            TestScope::Async(s) => s.isolation(),
        }
    }
    pub fn release(self) -> Result<(), Error> {
        self.commit()
    }
    pub fn savepoint(&self) -> Result<TestScope, Error> {
        match self {
            TestScope::Blocking(s) => s.savepoint().map(TestScope::Blocking),
            TestScope::Async(s) => s.savepoint().map(TestScope::Async),
        }
    }
    pub fn commit(self) -> Result<(), Error> {
        match self {
            TestScope::Blocking(s) => s.commit(),
            TestScope::Async(s) => drive(s.commit()),
        }
    }
    pub fn rollback(self) {
        match self {
            TestScope::Blocking(s) => s.rollback(),
            TestScope::Async(s) => s.rollback(),
        }
    }
}

//! Redis URLs (`redis://`, `rediss://` with `#insecure`, `unix://`, `redis+unix://`):
//! opening one is `Ok` or `Error::Config`, through the builder of both front ends and the
//! `Tracked` mode's push connection, never a panic. No connection is made.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stampcache::{fuzzing, Cache, Error};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn config_or_ok<T>(r: Result<T, Error>) {
    if let Err(e) = r {
        assert!(matches!(e, Error::Config(_)), "not a config error: {e:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, url)) = data.split_first() else {
        return;
    };
    let url = String::from_utf8_lossy(url);
    config_or_ok(fuzzing::redis_url(&url));
    // The builders (each sets up a store) on a sample of inputs only.
    if mode % 8 == 0 {
        config_or_ok(Cache::builder().redis(url.as_ref()).build());
    } else if mode % 8 == 1 {
        let _guard = runtime().enter();
        config_or_ok(Cache::builder().redis(url.as_ref()).build_async());
    }
});

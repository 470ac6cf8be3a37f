//! A sqlx pool on the local PostgreSQL, found as the other tests find it:
//! `STAMPCACHE_TEST_PG` (a libpq connection string or a URL), else `DATABASE_URL`, else
//! `host=127.0.0.1 user=postgres dbname=test`. Included by path by the tests that use sqlx.

use std::time::Duration;

use postgres::config::Host;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The local PostgreSQL, found as the other tests find it; panics when there is none.
pub async fn postgres() -> PgPool {
    let dsn = std::env::var("STAMPCACHE_TEST_PG")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".to_owned());
    // The postgres crate's parser reads both forms (libpq `key=value` and URLs).
    let config: postgres::Config = dsn
        .parse()
        .unwrap_or_else(|e| panic!("STAMPCACHE_TEST_PG / DATABASE_URL: cannot parse {dsn:?}: {e}"));
    let mut options = PgConnectOptions::new_without_pgpass();
    match config.get_hosts().first() {
        Some(Host::Tcp(host)) => options = options.host(host),
        Some(Host::Unix(dir)) => options = options.socket(dir),
        None => {}
    }
    if let Some(&port) = config.get_ports().first() {
        options = options.port(port);
    }
    if let Some(user) = config.get_user() {
        options = options.username(user);
    }
    if let Some(password) = config.get_password() {
        options = options.password(&String::from_utf8_lossy(password));
    }
    if let Some(dbname) = config.get_dbname() {
        options = options.database(dbname);
    }
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed for this test ({dsn}): {e}; \
                 set STAMPCACHE_TEST_PG or DATABASE_URL"
            )
        })
}

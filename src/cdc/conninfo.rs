//! Connection strings: libpq's `key=value` form and `postgres://` URLs (the common subset).

use std::path::PathBuf;

use pgwire_replication::TlsConfig;

use super::CdcError;

/// Where and how to connect. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ConnInfo {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
    /// `disable` (the default), `require`, `verify-ca` or `verify-full`.
    pub sslmode: String,
    pub sslrootcert: Option<PathBuf>,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .finish()
    }
}

impl Default for ConnInfo {
    fn default() -> Self {
        ConnInfo {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "postgres".into(),
            password: String::new(),
            dbname: "postgres".into(),
            sslmode: "disable".into(),
            sslrootcert: None,
        }
    }
}

impl ConnInfo {
    /// Parses `host=… port=… user=… password=… dbname=… sslmode=… sslrootcert=…` or
    /// `postgres://user:password@host:port/dbname?sslmode=…`.
    pub fn parse(s: &str) -> Result<ConnInfo, CdcError> {
        let s = s.trim();
        let mut c = ConnInfo::default();
        let pairs: Vec<(String, String)> = if let Some(rest) = s
            .strip_prefix("postgres://")
            .or_else(|| s.strip_prefix("postgresql://"))
        {
            url_pairs(rest)?
        } else {
            // A word that is not key=value is not quoted in the error: it may be a password.
            s.split_whitespace()
                .enumerate()
                .map(|(i, kv)| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
                        .ok_or_else(|| bad(format!("word {} is not key=value", i + 1)))
                })
                .collect::<Result<_, _>>()?
        };
        for (k, v) in pairs {
            match k.as_str() {
                "host" => c.host = v,
                "port" => c.port = v.parse().map_err(|_| bad(format!("port {v:?}")))?,
                "user" => c.user = v,
                "password" => c.password = v,
                "dbname" => c.dbname = v,
                "sslmode" => match v.as_str() {
                    "disable" | "require" | "verify-ca" | "verify-full" => c.sslmode = v,
                    _ => {
                        return Err(bad(format!(
                            "sslmode {v:?}: say disable, require, verify-ca or verify-full"
                        )))
                    }
                },
                "sslrootcert" => c.sslrootcert = Some(v.into()),
                "application_name" | "connect_timeout" => {}
                _ => return Err(bad(format!("unknown connection parameter {k:?}"))),
            }
        }
        Ok(c)
    }

    /// The transport's TLS settings.
    pub fn tls(&self) -> TlsConfig {
        match self.sslmode.as_str() {
            "require" => TlsConfig::require(),
            "verify-ca" => TlsConfig::verify_ca(self.sslrootcert.clone()),
            "verify-full" => TlsConfig::verify_full(self.sslrootcert.clone()),
            _ => TlsConfig::disabled(),
        }
    }
}

fn bad(what: String) -> CdcError {
    CdcError::Config(format!("connection string: {what}"))
}

fn url_pairs(rest: &str) -> Result<Vec<(String, String)>, CdcError> {
    let mut pairs = Vec::new();
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, db) = main.split_once('/').unwrap_or((main, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(u) = userinfo {
        let (user, password) = u.split_once(':').unwrap_or((u, ""));
        pairs.push(("user".to_owned(), decode(user)?));
        if !password.is_empty() {
            let password = decode(password)
                .map_err(|_| bad("bad percent escape or UTF-8 in the password".into()))?;
            pairs.push(("password".to_owned(), password));
        }
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    };
    if !host.is_empty() {
        pairs.push(("host".to_owned(), decode(host)?));
    }
    if let Some(p) = port {
        pairs.push(("port".to_owned(), p.to_owned()));
    }
    if !db.is_empty() {
        pairs.push(("dbname".to_owned(), decode(db)?));
    }
    for (i, kv) in query.split('&').filter(|s| !s.is_empty()).enumerate() {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| bad(format!("query parameter {} is not key=value", i + 1)))?;
        let v = match k {
            "password" => decode(v).map_err(|_| bad("bad escape in the password".into()))?,
            _ => decode(v)?,
        };
        pairs.push((k.to_owned(), v));
    }
    Ok(pairs)
}

/// Percent-decoding of URL parts.
fn decode(s: &str) -> Result<String, CdcError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(format!("bad percent escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("{s:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse() {
        let a = ConnInfo::parse("host=db port=6543 user=u password=p dbname=app").unwrap();
        let b = ConnInfo::parse("postgres://u:p@db:6543/app").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.port, 6543);
        let c = ConnInfo::parse("postgresql://u:p%40ss@db/app?sslmode=require").unwrap();
        assert_eq!(
            (c.password.as_str(), c.port, c.sslmode.as_str()),
            ("p@ss", 5432, "require")
        );
        assert!(ConnInfo::parse("host").is_err());
        assert!(ConnInfo::parse("colour=blue").is_err());
        assert!(ConnInfo::parse("sslmode=prefer").is_err());
        assert!(ConnInfo::parse("postgres://u@h/d?x=%zz").is_err());
    }

    #[test]
    fn passwords_are_never_shown() {
        let c = ConnInfo::parse("host=db user=u password=s3cret").unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        for bad in [
            "host=db s3cret",
            "postgres://u:s3cret%zz@db/app",
            "postgres://u@db/app?password=s3cret%zz",
            "postgres://u@db/app?s3cret",
        ] {
            let e = ConnInfo::parse(bad).unwrap_err();
            assert!(!format!("{e} {e:?}").contains("s3cret"), "{bad}: {e}");
        }
    }
}

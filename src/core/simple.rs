//! The time-only cache's operations (`Simple`): raw keys with a lifetime, no stamps.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::batch::Batch;
use super::Core;
use crate::codec::Codec;
use crate::error::Error;
use crate::event::{Outcome, Target};
use crate::typed;

impl<C: Codec> Core<C> {
    /// The value under a Redis key, or `None` on a miss (also for bytes that do not decode
    /// and, when degrading, for an unavailable store).
    pub async fn simple_get<T: DeserializeOwned + 'static>(
        &self,
        target: Target<'_>,
        key: &str,
    ) -> Result<Option<T>, Error> {
        if !self.shared.enabled {
            self.read_event(target, Outcome::Bypass);
            return Ok(None);
        }
        let Some(found) = self.call("get", |s| s.get(key)).await? else {
            self.read_event(target, Outcome::Degraded);
            return Ok(None);
        };
        let Some(bytes) = found else {
            self.read_event(target, Outcome::Miss);
            return Ok(None);
        };
        match typed::decode::<C, T>(&bytes) {
            Ok(v) => {
                self.read_event(target, Outcome::Hit);
                Ok(Some(v))
            }
            Err(why) => {
                self.undecoded(key, why)?;
                self.read_event(target, Outcome::Miss);
                Ok(None)
            }
        }
    }

    /// Stores `value` under a Redis key for `ttl` (nothing when the cache is off).
    pub async fn simple_set<T: Serialize + DeserializeOwned + 'static>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), Error> {
        if !self.shared.enabled {
            return Ok(());
        }
        let bytes = typed::encode::<C, T>(value)?;
        self.call("set", |s| s.set(key, &bytes, ttl))
            .await
            .map(|_| ())
    }

    /// Deletes a Redis key; true if there was an entry. A delete the store did not take is
    /// queued like any invalidation, never lost.
    pub async fn simple_delete(&self, key: String) -> Result<bool, Error> {
        if !self.shared.enabled {
            return Ok(false);
        }
        let keys = std::slice::from_ref(&key);
        match self.attempt(|s| s.delete(keys)).await {
            Ok(deleted) => Ok(deleted),
            Err(_) => {
                let mut b = Batch::default();
                b.keys.insert(key);
                self.apply(b).await.map(|()| false)
            }
        }
    }
}

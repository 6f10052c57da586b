//! Manual bans on Redis: `ban`, `unban` and `banned_for`, one small script
//! each call (`ban.lua`), on the same keys the decision scripts read.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;

use super::{RedisStore, StoreError};
use crate::clock::Nanos;

fn script() -> &'static redis::Script {
    static SCRIPT: OnceLock<redis::Script> = OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(include_str!("ban.lua")))
}

impl RedisStore {
    /// Runs `ban.lua`'s `op` on `key`'s ban (`now_us`: a manual clock's
    /// time, None for the server's).
    async fn ban_op(
        &self,
        key: &[u8],
        op: &str,
        now_us: Option<u64>,
        length_us: u64,
    ) -> std::result::Result<i64, StoreError> {
        // Only the ban and its refusals: no rule key is touched.
        let [ban, refusals] = super::ban_keys(&self.layout.base(key));
        self.health
            .guarded(async {
                let mut conn = self.connection().await?;
                let mut call = script().prepare_invoke();
                call.key(&ban).key(&refusals).arg(op);
                match now_us {
                    Some(now) => call.arg(now),
                    None => call.arg(""),
                };
                call.arg(length_us);
                call.invoke_async(&mut conn)
                    .await
                    .map_err(|e| self.redis_err(e))
            })
            .await
    }

    /// Bans `key` for `duration` from now, in every process at once.
    pub async fn ban(
        &self,
        key: &[u8],
        duration: Nanos,
        now_us: Option<u64>,
    ) -> std::result::Result<(), StoreError> {
        self.ban_op(key, "ban", now_us, duration.div_ceil(1000).max(1))
            .await?;
        self.bans_begun.fetch_add(1, Relaxed);
        self.health.ban_changed(key, now_us, Some(duration));
        Ok(())
    }

    /// Lifts `key`'s ban and forgets its refusals; whether it was banned.
    pub async fn unban(
        &self,
        key: &[u8],
        now_us: Option<u64>,
    ) -> std::result::Result<bool, StoreError> {
        self.local.forget(key);
        let lifted = self.ban_op(key, "unban", now_us, 0).await? == 1;
        // A reply on the wire meanwhile may have remembered the ban again.
        self.local.forget(key);
        if lifted {
            self.health.ban_changed(key, now_us, None);
        }
        Ok(lifted)
    }

    /// How long `key` stays banned (None: not banned).
    pub async fn banned_for(
        &self,
        key: &[u8],
        now_us: Option<u64>,
    ) -> std::result::Result<Option<Nanos>, StoreError> {
        let left = self.ban_op(key, "left", now_us, 0).await?;
        Ok((left >= 0).then(|| left as u64 * 1000))
    }

    /// Bans begun by this process (its decisions and its `ban()` calls).
    pub fn bans_begun(&self) -> u64 {
        self.bans_begun.load(Relaxed)
    }
}

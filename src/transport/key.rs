//! One-time migration keys and the record of the keys already consumed.

use super::error::TransportError;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

/// Length of a one-time key: 256 bits, the HMAC-SHA256 block-size sweet spot.
pub const KEY_LEN: usize = 32;

/// How many consumed keys a `KeyRegistry` remembers, oldest forgotten
/// first. A replay is recognised as such (rather than as a plain wrong key)
/// while its key is among the last `CONSUMED_KEYS_KEPT` migrations; either
/// way it is refused. Bounded so a long-lived agent's memory does not grow.
pub const CONSUMED_KEYS_KEPT: usize = 256;

/// Fills `buf` from the operating system's random number generator.
pub fn os_random(buf: &mut [u8]) -> Result<(), TransportError> {
    getrandom::fill(buf).map_err(|e| TransportError::Rng(e.to_string()))
}

/// The secret a destination issues for one migration: both agents hold it,
/// every stream proves knowledge of it, and it is never accepted again once
/// the migration it was issued for has connected.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeKey([u8; KEY_LEN]);

impl OneTimeKey {
    /// 32 fresh bytes from the OS RNG.
    pub fn generate() -> Result<Self, TransportError> {
        let mut k = [0u8; KEY_LEN];
        os_random(&mut k)?;
        Ok(OneTimeKey(k))
    }

    /// Parses the 64-hex-digit form used in the management protocol.
    pub fn from_hex(s: &str) -> Result<Self, TransportError> {
        let s = s.trim();
        if s.len() != 2 * KEY_LEN || !s.is_ascii() {
            return Err(TransportError::KeyUnusable("is not 64 hexadecimal digits"));
        }
        let mut k = [0u8; KEY_LEN];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| TransportError::KeyUnusable("is not 64 hexadecimal digits"))?;
        }
        Ok(OneTimeKey(k))
    }

    /// The 64-hex-digit form, for the management protocol only (never logs).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for OneTimeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A key must never reach a log.
        f.write_str("OneTimeKey(<redacted>)")
    }
}

impl Drop for OneTimeKey {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference; the
            // volatile write only keeps the compiler from eliding the wipe.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// The keys consumed on this host, shared by every listener of the agent.
#[derive(Default)]
pub struct KeyRegistry {
    consumed: Mutex<VecDeque<(u64, OneTimeKey)>>,
}

impl KeyRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `key` as used by `migration_id`. When it was already consumed,
    /// fails with the id of the migration that consumed it.
    pub fn consume(&self, key: &OneTimeKey, migration_id: u64) -> Result<(), u64> {
        let mut consumed = self.lock();
        if let Some((id, _)) = consumed.iter().find(|(_, k)| k == key) {
            return Err(*id);
        }
        if consumed.len() == CONSUMED_KEYS_KEPT {
            consumed.pop_front();
        }
        consumed.push_back((migration_id, key.clone()));
        Ok(())
    }

    /// The migration whose consumed key satisfies `verify`, if any, other
    /// than `except` (the migration being connected now).
    pub fn find_consumed(&self, except: u64, verify: impl Fn(&OneTimeKey) -> bool) -> Option<u64> {
        self.lock()
            .iter()
            .filter(|(id, _)| *id != except)
            .find(|(_, k)| verify(k))
            .map(|(id, _)| *id)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, OneTimeKey)>> {
        // The record stays consistent even if a holder panicked: each update
        // is a single push or pop.
        self.consumed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_and_never_printed() {
        let a = OneTimeKey::generate().unwrap();
        let b = OneTimeKey::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "OneTimeKey(<redacted>)");
        assert_eq!(OneTimeKey::from_hex(&a.to_hex()).unwrap(), a);
        assert!(OneTimeKey::from_hex("abc").is_err());
    }

    #[test]
    fn a_key_is_consumed_once_and_the_record_is_bounded() {
        let r = KeyRegistry::new();
        let k = OneTimeKey::generate().unwrap();
        r.consume(&k, 1).unwrap();
        assert_eq!(r.consume(&k, 2), Err(1));
        assert_eq!(r.find_consumed(9, |c| c == &k), Some(1));
        assert_eq!(r.find_consumed(1, |c| c == &k), None);
        for id in 0..CONSUMED_KEYS_KEPT as u64 + 10 {
            r.consume(&OneTimeKey::generate().unwrap(), 100 + id)
                .unwrap();
        }
        assert_eq!(r.len(), CONSUMED_KEYS_KEPT);
    }
}

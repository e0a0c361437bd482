//! Who may use the console: the agents' token buys a session.
//!
//! * [`Sessions::login`] compares the token in constant time and, when it
//!   is right, issues a session id: 32 random bytes from the OS, as hex.
//!   At most [`MAX_SESSIONS`] live at once (the oldest goes first); each
//!   lasts [`SESSION_TTL`] from its last use.
//! * [`Sessions::check`] reads the session cookie ([`COOKIE`]) from a
//!   `Cookie` header and says whether it names a live session.
//! * [`set_cookie`] is the `Set-Cookie` value: `HttpOnly` (no script reads
//!   it), `SameSite=Strict` (no other site's page sends it), `Path=/`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "lpm_session";

/// Sessions alive at once; a login beyond it ends the least recently used.
pub const MAX_SESSIONS: usize = 64;

/// How long a session lives without use.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The live sessions and the token that opens one.
pub struct Sessions {
    token: String,
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    /// Sessions opened by `token` (the agents' token).
    pub fn new(token: String) -> Sessions {
        Sessions {
            token,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// A new session id when `token` is the right one.
    pub fn login(&self, token: &str) -> Option<String> {
        if !constant_time_eq::constant_time_eq(token.trim().as_bytes(), self.token.as_bytes()) {
            return None;
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS gives random bytes");
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut live = self.live.lock().unwrap();
        let now = Instant::now();
        live.retain(|_, used| now.duration_since(*used) < SESSION_TTL);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(id.clone(), now);
        Some(id)
    }

    /// Whether the `Cookie` header `cookie` names a live session (its use
    /// renews it).
    pub fn check(&self, cookie: Option<&str>) -> bool {
        let Some(id) = cookie.and_then(session_of) else {
            return false;
        };
        let mut live = self.live.lock().unwrap();
        let now = Instant::now();
        match live.get_mut(id) {
            Some(used) if now.duration_since(*used) < SESSION_TTL => {
                *used = now;
                true
            }
            Some(_) => {
                live.remove(id);
                false
            }
            None => false,
        }
    }

    /// Ends the session the `Cookie` header names.
    pub fn logout(&self, cookie: Option<&str>) {
        if let Some(id) = cookie.and_then(session_of) {
            self.live.lock().unwrap().remove(id);
        }
    }
}

/// The session id in a `Cookie` header (`a=1; lpm_session=…; b=2`).
pub fn session_of(cookie: &str) -> Option<&str> {
    cookie
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value for session `id` (`None`: clear it).
pub fn set_cookie(id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/"),
        None => format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_opens_a_session_and_only_its_cookie_is_one() {
        let s = Sessions::new("s3cret".into());
        assert!(s.login("wrong").is_none());
        assert!(s.login("").is_none());
        assert!(s.login("s3cre").is_none());
        let id = s.login("s3cret\n").expect("the token, whitespace trimmed");
        assert_eq!(id.len(), 64);
        let cookie = format!("x=1; {COOKIE}={id}; y=2");
        assert!(s.check(Some(&cookie)));
        assert!(!s.check(None));
        assert!(!s.check(Some("x=1")));
        let forged = format!("{COOKIE}={}", "0".repeat(64));
        assert!(!s.check(Some(&forged)));
        assert!(!s.check(Some(&format!("{COOKIE}={}", &id[..63]))));
        let other = s.login("s3cret").unwrap();
        assert_ne!(id, other, "each login its own random id");
        s.logout(Some(&cookie));
        assert!(!s.check(Some(&cookie)));
        assert!(s.check(Some(&format!("{COOKIE}={other}"))));
    }

    #[test]
    fn sessions_are_bounded_and_the_least_recently_used_goes() {
        let s = Sessions::new("t".into());
        let first = s.login("t").unwrap();
        let ids: Vec<String> = (1..MAX_SESSIONS).map(|_| s.login("t").unwrap()).collect();
        // Use the first again so that the second is the oldest.
        assert!(s.check(Some(&format!("{COOKIE}={first}"))));
        let _new = s.login("t").unwrap();
        assert!(s.check(Some(&format!("{COOKIE}={first}"))));
        assert!(!s.check(Some(&format!("{COOKIE}={}", ids[0]))));
        assert_eq!(s.live.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let c = set_cookie(Some("ab"));
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
        assert!(set_cookie(None).contains("Max-Age=0"));
    }
}

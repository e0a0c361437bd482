//! Who may use the console: the agents' tokens buy a session.
//!
//! * [`Sessions::login`] compares the tokens given in constant time and,
//!   when they are right, issues a session id: 32 random bytes from the
//!   OS, as hex. Each agent has its own token (the console's
//!   `--token-file`, or its `[[agents]]` entry's `token_file`); the login
//!   must give every agent's: one token for all ([`Given::token`]) when
//!   they are the same, one per agent address ([`Given::tokens`]) when
//!   they differ ([`Sessions::per_agent`]). A token named for an agent
//!   wins over the one for all.
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

/// The tokens a login gives.
#[derive(Clone, Debug, Default)]
pub struct Given {
    /// One token for every agent.
    pub token: Option<String>,
    /// A token per agent address.
    pub tokens: HashMap<String, String>,
}

impl Given {
    /// One token for every agent.
    pub fn all(token: &str) -> Given {
        Given {
            token: Some(token.to_string()),
            tokens: HashMap::new(),
        }
    }
}

/// The live sessions and the tokens that open one.
pub struct Sessions {
    /// Each agent's address and token.
    tokens: Vec<(String, String)>,
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    /// Sessions opened by the agents' tokens (address, token).
    pub fn new(tokens: Vec<(String, String)>) -> Sessions {
        Sessions {
            tokens,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the agents' tokens differ (a login gives one per agent).
    pub fn per_agent(&self) -> bool {
        self.tokens.windows(2).any(|w| w[0].1 != w[1].1)
    }

    /// Whether `given` holds every agent's token: each compared in
    /// constant time, all of them whatever the first gave.
    fn opens(&self, given: &Given) -> bool {
        let mut right = !self.tokens.is_empty();
        for (address, token) in &self.tokens {
            let offered = given
                .tokens
                .get(address)
                .or(given.token.as_ref())
                .map(|t| t.trim())
                .unwrap_or("");
            right &= constant_time_eq::constant_time_eq(offered.as_bytes(), token.as_bytes());
        }
        right
    }

    /// A new session id when `given` holds the agents' tokens.
    pub fn login(&self, given: &Given) -> Option<String> {
        if !self.opens(given) {
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

    fn shared(token: &str) -> Sessions {
        Sessions::new(vec![
            ("a:1".into(), token.into()),
            ("b:2".into(), token.into()),
        ])
    }

    impl Sessions {
        fn login_all(&self, token: &str) -> Option<String> {
            self.login(&Given::all(token))
        }
    }

    #[test]
    fn only_the_token_opens_a_session_and_only_its_cookie_is_one() {
        let s = shared("s3cret");
        assert!(!s.per_agent());
        assert!(s.login_all("wrong").is_none());
        assert!(s.login_all("").is_none());
        assert!(s.login_all("s3cre").is_none());
        assert!(s.login(&Given::default()).is_none());
        let id = s
            .login_all("s3cret\n")
            .expect("the token, whitespace trimmed");
        assert_eq!(id.len(), 64);
        let cookie = format!("x=1; {COOKIE}={id}; y=2");
        assert!(s.check(Some(&cookie)));
        assert!(!s.check(None));
        assert!(!s.check(Some("x=1")));
        let forged = format!("{COOKIE}={}", "0".repeat(64));
        assert!(!s.check(Some(&forged)));
        assert!(!s.check(Some(&format!("{COOKIE}={}", &id[..63]))));
        let other = s.login_all("s3cret").unwrap();
        assert_ne!(id, other, "each login its own random id");
        s.logout(Some(&cookie));
        assert!(!s.check(Some(&cookie)));
        assert!(s.check(Some(&format!("{COOKIE}={other}"))));
    }

    #[test]
    fn agents_with_their_own_tokens_need_each_one() {
        let s = Sessions::new(vec![
            ("a:1".into(), "ta".into()),
            ("b:2".into(), "tb".into()),
        ]);
        assert!(s.per_agent());
        let per = |a: &str, b: &str| Given {
            token: None,
            tokens: [
                ("a:1".to_string(), a.to_string()),
                ("b:2".to_string(), b.to_string()),
            ]
            .into(),
        };
        assert!(s.login(&per("ta", "tb")).is_some());
        assert!(s.login(&per("tb", "ta")).is_none(), "each agent's own");
        assert!(s.login(&per("ta", "wrong")).is_none());
        assert!(
            s.login_all("ta").is_none(),
            "one token opens one agent only"
        );
        let mut one = per("ta", "tb");
        one.tokens.remove("b:2");
        assert!(s.login(&one).is_none(), "an agent without its token");
        one.token = Some("tb".into());
        assert!(s.login(&one).is_some(), "the shared one fills the gap");
    }

    #[test]
    fn sessions_are_bounded_and_the_least_recently_used_goes() {
        let s = shared("t");
        let first = s.login_all("t").unwrap();
        let ids: Vec<String> = (1..MAX_SESSIONS)
            .map(|_| s.login_all("t").unwrap())
            .collect();
        // Use the first again so that the second is the oldest.
        assert!(s.check(Some(&format!("{COOKIE}={first}"))));
        let _new = s.login_all("t").unwrap();
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

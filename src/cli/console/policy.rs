//! The console's policy screen: a policy file (`moverctl policy`'s
//! format, [`crate::cli::policy`]) run by the console, entry after entry,
//! with the operator's Stop and, after a stop or a failed entry, the
//! choices `moverctl policy resume` offers (Continue, Retry, Skip, End).
//!
//! | route | body | what |
//! |---|---|---|
//! | `GET /api/policy` | | the policy loaded, each entry's result, what may be done |
//! | `POST /api/policy/run` | `{"text", "agent"}` | parse and run `text`; `agent`: the source of entries without `from` |
//! | `POST /api/policy/stop` | `{}` | end after the entry in progress |
//! | `POST /api/policy/resume` | `{"choice"}` | `continue`, `retry`, `skip` or `end` |
//!
//! One policy at a time, run on a thread of its own by the runner the
//! command line uses ([`run_from`]): each entry an ordinary `migrate` over
//! a new connection to its source agent, which must be one of the
//! console's agents, as must its destination. Every change (an attempt
//! starts, fails, an entry ends, the policy ends) is pushed into the event
//! hub as a `POLICY` event holding the whole view, so every page sees each
//! entry's outcome as it comes. The position of a stopped or ended policy
//! is kept in memory (not in `<file>.state`: the console has no file).

use super::agents::Agents;
use super::error::{ApiError, console_error};
use super::links::Link;
use super::relay::Hub;
use crate::cli::policy::{
    EntryResult, EntryStatus, MAX_POLICY_BYTES, Policy, PolicyOutcome, Progress, fresh_results,
    parse, run_from,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The POST routes under `/api/`.
pub const COMMANDS: &[&str] = &["policy/run", "policy/stop", "policy/resume"];

/// A policy loaded into the console, and how far it went.
struct Loaded {
    policy: Policy,
    results: Vec<EntryResult>,
    /// A run is under way.
    active: bool,
    /// The entry being attempted (0-based).
    current: Option<usize>,
    /// How the last run ended (none while it runs, or before).
    outcome: Option<PolicyOutcome>,
    /// Where a resume starts.
    next: usize,
    /// The operator ended it: nothing more to choose.
    closed: bool,
    /// Bumped on every change (under the lock), never reset: a page
    /// keeps the newest view whether it came as an event or as a reply.
    version: u64,
}

/// The console's policy, shared with the thread that runs it.
#[derive(Default)]
pub struct Runner {
    loaded: Arc<Mutex<Option<Loaded>>>,
    stop: Arc<AtomicBool>,
}

fn refuse(status: u16, message: String, action: &str) -> ApiError {
    ApiError(status, console_error(message, action))
}

fn view(loaded: &Option<Loaded>, stop_requested: bool) -> Value {
    let Some(l) = loaded else {
        return json!({"loaded": false});
    };
    let failed_at = l.results.get(l.next).map(|r| r.status) == Some(EntryStatus::Failed);
    let choices: &[&str] = match (l.active || l.closed, l.outcome) {
        (false, Some(PolicyOutcome::Stopped)) if failed_at => &["retry", "skip", "end"],
        (false, Some(PolicyOutcome::Stopped)) => &["continue", "end"],
        (false, Some(PolicyOutcome::Ended)) => &["retry", "skip", "end"],
        _ => &[],
    };
    json!({
        "loaded": true,
        "name": l.policy.name,
        "mode": l.policy.mode,
        "on_failure": l.policy.on_failure,
        "active": l.active,
        "stop_requested": l.active && stop_requested,
        "current": l.current.map(|i| i + 1),
        "outcome": l.outcome,
        "next": l.next + 1,
        "closed": l.closed,
        "version": l.version,
        "choices": choices,
        "entries": l.results,
    })
}

impl Runner {
    /// `GET /api/policy`.
    pub fn view(&self) -> Value {
        view(
            &self.loaded.lock().unwrap(),
            self.stop.load(Ordering::SeqCst),
        )
    }

    fn publish(&self, hub: &Hub) {
        hub.push(json!({"agent": "", "host": "", "event": "POLICY", "data": self.view()}));
    }

    /// Runs the loaded policy from entry `first` (0-based) on a thread.
    fn start(&self, c: &Agents, first: usize) {
        self.stop.store(false, Ordering::SeqCst);
        let (policy, results) = {
            let mut g = self.loaded.lock().unwrap();
            let l = g.as_mut().expect("a policy is loaded");
            l.active = true;
            l.outcome = None;
            l.current = None;
            l.version += 1;
            (l.policy.clone(), l.results.clone())
        };
        let me = Runner {
            loaded: self.loaded.clone(),
            stop: self.stop.clone(),
        };
        let links: Vec<Arc<Link>> = c.links.clone();
        let hub = c.hub.clone();
        me.publish(&hub);
        std::thread::Builder::new()
            .name("console policy".into())
            .spawn(move || {
                let mut connect = |from: &str| {
                    links
                        .iter()
                        .find(|l| l.address == from)
                        .expect("checked when the policy was loaded")
                        .open()
                };
                let stop = me.stop.clone();
                let stop_requested = move || stop.load(Ordering::SeqCst);
                let mut progress = |p: Progress<'_>| {
                    {
                        let mut g = me.loaded.lock().unwrap();
                        let l = g.as_mut().expect("loaded while it runs");
                        l.version += 1;
                        match p {
                            Progress::Attempt(r) | Progress::Ended(r) => {
                                l.current =
                                    matches!(p, Progress::Attempt(_)).then_some(r.entry - 1);
                                l.results[r.entry - 1] = r.clone();
                            }
                            Progress::Failed(e) => {
                                if let Some(i) = l.current {
                                    l.results[i].error = Some(e.clone());
                                    l.results[i].status = EntryStatus::Failed;
                                }
                            }
                        }
                    }
                    me.publish(&hub);
                };
                let run = run_from(
                    &policy,
                    results,
                    first,
                    &mut connect,
                    &stop_requested,
                    &mut progress,
                );
                {
                    let mut g = me.loaded.lock().unwrap();
                    let l = g.as_mut().expect("loaded while it runs");
                    l.results = run.results;
                    l.outcome = Some(run.outcome);
                    l.next = run.next;
                    l.active = false;
                    l.current = None;
                    l.version += 1;
                }
                me.publish(&hub);
            })
            .expect("a thread for the policy");
    }
}

fn text_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A POST route of the policy screen.
pub fn command(runner: &Runner, c: &Agents, route: &str, body: &Value) -> Result<Value, ApiError> {
    let active = || {
        runner
            .loaded
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|l| l.active)
    };
    match route {
        "policy/run" => {
            if active() {
                return Err(refuse(
                    409,
                    "a policy is running".into(),
                    "Wait for it to end, or stop it first.",
                ));
            }
            let text = text_field(body, "text")
                .ok_or_else(|| refuse(400, "no policy text".into(), "Load a policy file first."))?;
            if text.len() > MAX_POLICY_BYTES {
                return Err(refuse(
                    400,
                    format!(
                        "the policy has {} bytes, more than {MAX_POLICY_BYTES}",
                        text.len()
                    ),
                    "Split it into smaller policies.",
                ));
            }
            let policy = parse(text.as_bytes()).map_err(|e| ApiError(400, e))?;
            let default_from = match text_field(body, "agent") {
                Some(a) => c.link(a)?.address.clone(),
                None => c.links[0].address.clone(),
            };
            let results = fresh_results(&policy, &default_from);
            for r in &results {
                for (what, address) in [("from", &r.from), ("to", &r.to)] {
                    c.link(address).map_err(|ApiError(_, e)| {
                        refuse(
                            400,
                            format!("entry {} ({}): {what} {}", r.entry, r.lpar, e.message),
                            "Name the console's agents by their addresses in the policy.",
                        )
                    })?;
                }
            }
            let mut loaded = runner.loaded.lock().unwrap();
            let version = loaded.as_ref().map_or(0, |l| l.version) + 1;
            *loaded = Some(Loaded {
                version,
                next: 0,
                policy,
                results,
                active: false,
                current: None,
                outcome: None,
                closed: false,
            });
            drop(loaded);
            runner.start(c, 0);
            Ok(runner.view())
        }
        "policy/stop" => {
            if !active() {
                return Err(refuse(409, "no policy is running".into(), "Run one first."));
            }
            if let Some(l) = runner.loaded.lock().unwrap().as_mut() {
                runner.stop.store(true, Ordering::SeqCst);
                l.version += 1;
            }
            runner.publish(&c.hub);
            Ok(runner.view())
        }
        "policy/resume" => {
            let choice = text_field(body, "choice").unwrap_or("");
            let allowed = runner.view()["choices"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == choice));
            if !allowed {
                return Err(refuse(
                    409,
                    format!("'{choice}' is not a choice now"),
                    "Choose one the policy screen offers: after a stop Continue or End; \
                     after a failed entry Retry, Skip or End.",
                ));
            }
            let next = runner.loaded.lock().unwrap().as_ref().map_or(0, |l| l.next);
            match choice {
                "end" => {
                    if let Some(l) = runner.loaded.lock().unwrap().as_mut() {
                        l.closed = true;
                        l.version += 1;
                    }
                    runner.publish(&c.hub);
                }
                "skip" => runner.start(c, next + 1),
                _ => runner.start(c, next),
            }
            Ok(runner.view())
        }
        _ => unreachable!("the router sends only policy COMMANDS"),
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;

//! What each API route asks of the agents ([`super::api`] routes here
//! once the request passed its checks). Each route names its agent by the
//! address it was given with (`"agent"`), and a destination (`"to"`) the
//! same way: the console talks to its own agents only.
//!
//! Replies are the agents' own (`control::reply` types, as JSON), with a
//! few facts gathered from several requests: a host is its `host-info`
//! (name, build, backend, CPUs, memory used and free, migration paths,
//! busy and the migrations that make it so); its LPARs are `lpar-list`
//! with the migrations `status` lists as not ended.

use super::agents::Agents;
use super::error::{ApiError, console_error};
use super::links::{Link, lost};
use crate::control::{MigrationMode, Request, reply, request};
use crate::emg::Emg;
use crate::engine::stage::Stage;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The GET routes under `/api/`.
pub const READS: &[&str] = &["hosts", "lpars", "history", "status"];

/// The POST routes under `/api/`.
pub const COMMANDS: &[&str] = &[
    "lpar/create",
    "lpar/activate",
    "lpar/deactivate",
    "lpar/delete",
    "validate",
    "migrate",
    "extend",
    "cancel",
    "recover",
    "rollback-wwn",
    "connectivity",
    "rehearse",
];

fn agent_error(e: Emg) -> ApiError {
    ApiError(if lost(&e) { 502 } else { 409 }, e)
}

fn ask<R: Request + Clone>(link: &Link, r: R) -> Result<R::Reply, ApiError> {
    link.request(r).map(|(reply, _)| reply).map_err(agent_error)
}

fn bad(message: String, action: &str) -> ApiError {
    ApiError(400, console_error(message, action))
}

fn text<'a>(args: &'a HashMap<String, String>, key: &str) -> Result<&'a str, ApiError> {
    args.get(key)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(format!("'{key}' is missing"), "Fill in every field."))
}

fn field<'a>(body: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(format!("'{key}' is missing"), "Fill in every field."))
}

fn optional(body: &Value, key: &str) -> Option<String> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn number(body: &Value, key: &str) -> Result<u64, ApiError> {
    match body.get(key) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        bad(
            format!("'{key}' is not a whole number"),
            "Give a whole number.",
        )
    })
}

fn mode(body: &Value) -> Result<MigrationMode, ApiError> {
    match optional(body, "mode") {
        None => Ok(MigrationMode::Live),
        Some(m) => m
            .parse()
            .map_err(|_| bad(format!("mode '{m}'"), "Choose live or shutdown.")),
    }
}

/// A GET route.
pub fn read(c: &Agents, route: &str, q: &HashMap<String, String>) -> Result<Value, ApiError> {
    match route {
        "hosts" => Ok(json!({ "hosts": on_every_agent(c, host) })),
        "lpars" => Ok(json!({ "hosts": on_every_agent(c, lpars) })),
        "history" => {
            let link = c.link(text(q, "agent")?)?;
            let lpar = q.get("lpar").filter(|s| !s.is_empty()).cloned();
            Ok(json!(ask(link, request::History { lpar })?))
        }
        "status" => {
            let link = c.link(text(q, "agent")?)?;
            let id = text(q, "id")?.parse().map_err(|_| {
                bad(
                    "'id' is not a migration id".into(),
                    "Give the migration's number.",
                )
            })?;
            Ok(json!(ask(link, request::Status { id: Some(id) })?))
        }
        _ => unreachable!("the router sends only READS"),
    }
}

/// Runs `each` on every agent at once; its result, or the agent's error,
/// per agent in the order given.
fn on_every_agent(c: &Agents, each: fn(&Link) -> Result<Value, Emg>) -> Vec<Value> {
    std::thread::scope(|s| {
        let handles: Vec<_> = c
            .links
            .iter()
            .map(|l| s.spawn(move || (l, each(l))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (l, r) = h.join().expect("an agent query does not panic");
                match r {
                    Ok(v) => v,
                    Err(e) => json!({"agent": l.address, "reachable": false,
                                     "error": e, "emg": e.to_string()}),
                }
            })
            .collect()
    })
}

/// Migrations of this agent not yet ended.
fn running(link: &Link) -> Result<Vec<reply::MigrationStatus>, Emg> {
    let (status, _) = link.request(request::Status { id: None })?;
    Ok(match status {
        reply::Status::All { migrations } => migrations
            .into_iter()
            .filter(|m| !Stage::from_code(m.stage).is_some_and(Stage::is_final))
            .collect(),
        reply::Status::One(m) => vec![*m],
    })
}

fn host(link: &Link) -> Result<Value, Emg> {
    let (info, greeting) = link.request(request::HostInfo {})?;
    Ok(json!({
        "agent": link.address,
        "reachable": true,
        "name": greeting.agent,
        "build": info.build,
        "cpus": info.cpus,
        "memory_bytes": info.memory_bytes,
        "memory_in_use_bytes": info.memory_in_use_bytes,
        "memory_free_bytes": info.memory_free_bytes,
        "lpars": info.lpars,
        "paths": info.paths,
        "backend": info.backend,
        "identity": info.identity,
        "busy": info.busy,
        "migrating": info.migrating,
    }))
}

fn lpars(link: &Link) -> Result<Value, Emg> {
    let (list, _) = link.request(request::LparList {})?;
    let migrations = running(link)?;
    Ok(json!({
        "agent": link.address,
        "reachable": true,
        "name": list.host,
        "lpars": list.lpars,
        "migrations": migrations,
    }))
}

/// A POST route.
pub fn command(c: &Agents, route: &str, body: &Value) -> Result<Value, ApiError> {
    let link = c.link(field(body, "agent")?)?;
    let name = || field(body, "name").map(str::to_string);
    let lpar = || field(body, "lpar").map(str::to_string);
    // A destination must be one of the console's agents too.
    let to = || -> Result<String, ApiError> {
        let to = field(body, "to")?;
        c.link(to)?;
        Ok(to.to_string())
    };
    let path = optional(body, "path");
    match route {
        "lpar/create" => {
            let memory = crate::units::parse_size(field(body, "memory")?).map_err(|e| {
                bad(
                    format!("memory: {e}"),
                    "Give a size such as 256MiB or 1GiB.",
                )
            })?;
            let vcpus = match body.get("vcpus") {
                None | Some(Value::Null) => 2,
                Some(_) => number(body, "vcpus")? as u32,
            };
            let r = request::LparCreate {
                name: name()?,
                vcpus,
                memory_bytes: memory,
                program: optional(body, "program").unwrap_or_else(|| "idle".into()),
                nics: Vec::new(),
                fc_ports: Vec::new(),
                kernel: None,
                cmdline: None,
                usb: None,
                service_ratio: None,
                memory_backing: None,
            };
            Ok(json!(ask(link, r)?))
        }
        "lpar/activate" => Ok(json!(ask(link, request::LparActivate { name: name()? })?)),
        "lpar/deactivate" => Ok(json!(ask(link, request::LparDeactivate { name: name()? })?)),
        "lpar/delete" => Ok(json!(ask(link, request::LparDelete { name: name()? })?)),
        "validate" => {
            let r = request::Validate {
                lpar: lpar()?,
                to: destination(c, link, body)?,
                mode: mode(body)?,
                path,
            };
            Ok(json!(ask(link, r)?))
        }
        "migrate" => {
            let to = destination(c, link, body)?;
            let started = match mode(body)? {
                MigrationMode::Live => ask(
                    link,
                    request::Migrate {
                        lpar: lpar()?,
                        to: to.clone(),
                        max_suspend_ms: None,
                        bandwidth: None,
                        streams: None,
                        timeout_s: None,
                        path,
                        insecure_plaintext: false,
                    },
                )?,
                MigrationMode::Shutdown => ask(
                    link,
                    request::MigrateShutdown {
                        lpar: lpar()?,
                        to: to.clone(),
                        activate_destination: body
                            .get("activate_destination")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        shutdown_timeout_s: None,
                    },
                )?,
            };
            Ok(json!({"migration": started.migration, "agent": link.address, "to": to}))
        }
        "extend" => Ok(json!(ask(
            link,
            request::Extend {
                id: number(body, "id")?,
                seconds: number(body, "seconds")?,
            }
        )?)),
        "cancel" => Ok(json!(ask(
            link,
            request::Cancel {
                id: number(body, "id")?
            }
        )?)),
        "recover" => Ok(json!(ask(
            link,
            request::Recover {
                lpar: lpar()?,
                peer: match optional(body, "peer") {
                    Some(p) => Some(c.link(&p)?.address.clone()),
                    None => None,
                },
            }
        )?)),
        "rollback-wwn" => Ok(json!(ask(link, request::RollbackWwn { lpar: lpar()? })?)),
        "connectivity" => Ok(json!(ask(
            link,
            request::ConnectivityTest { to: to()?, path }
        )?)),
        "rehearse" => {
            let r = request::Rehearse {
                lpar: lpar()?,
                to: destination(c, link, body)?,
                mode: mode(body)?,
                path,
            };
            Ok(json!(ask(link, r)?))
        }
        _ => unreachable!("the router sends only COMMANDS"),
    }
}

/// The destination `body` names (`"to"`), or with `"to": "auto"` the other
/// agent with room for the LPAR and the most free memory (as `moverctl
/// migrate --auto-destination` chooses).
fn destination(c: &Agents, source: &Link, body: &Value) -> Result<String, ApiError> {
    let to = field(body, "to")?;
    if to != "auto" {
        c.link(to)?;
        return Ok(to.to_string());
    }
    let lpar = field(body, "lpar")?;
    let need = ask(source, request::LparShow { name: lpar.into() })?.memory_bytes;
    let best = std::thread::scope(|s| {
        let asks: Vec<_> = c
            .links
            .iter()
            .filter(|l| l.address != source.address)
            .map(|l| s.spawn(move || (l, l.request(request::HostResources {}))))
            .collect();
        asks.into_iter()
            .filter_map(|h| match h.join().expect("no panic") {
                (l, Ok((r, _))) if r.memory_free_bytes >= need => Some((r.memory_free_bytes, l)),
                _ => None,
            })
            .max_by_key(|(free, _)| *free)
            .map(|(_, l)| l.address.clone())
    });
    best.ok_or_else(|| {
        ApiError(
            409,
            console_error(
                format!("no other agent has room for '{lpar}' ({})", crate::units::format_size(need)),
                "Free memory on a host (deactivate and delete LPARs there) or add an agent to the console.",
            ),
        )
    })
}

//! The bounds of the numbers a request may carry, checked at the protocol
//! edge ([`Command::check_bounds`], before the agent acts on a request) so
//! that no duration or rate from outside reaches an `Instant` addition, a
//! sleep or a pacer unchecked.
//!
//! | argument | command | bound | why |
//! |---|---|---|---|
//! | `timeout_s` | `migrate` | 1 to [`MAX_TIMEOUT_S`] | a deadline must be representable and mean something |
//! | `seconds` | `extend` | 1 to [`MAX_TIMEOUT_S`], and the total too | idem |
//! | `max_suspend_ms` | `migrate` | 1 to [`MAX_SUSPEND_MS`] | a suspension budget, not a pause |
//! | `bandwidth` | `migrate` | at least [`MIN_BANDWIDTH`] bytes/s | live mode needs a 1 Gbit/s path |
//! | `shutdown_timeout_s` | `migrate-shutdown` | 0 to [`MAX_TIMEOUT_S`] | a deadline |

use super::vocabulary::MIN_GOODPUT_BITS;
use super::{Command, cause, protocol_error};
use crate::emg::Emg;

/// Longest migration timeout (and guest shutdown wait): a day.
pub const MAX_TIMEOUT_S: u64 = 86_400;

/// Largest suspension budget: a minute (the default is 20 ms).
pub const MAX_SUSPEND_MS: u64 = 60_000;

/// Smallest bandwidth cap of a live migration, bytes/s: the manual's
/// 1 Gbit/s path as payload (the `bandwidth` validation item's
/// [`MIN_GOODPUT_BITS`]). A slower cap defeats the rule the path is
/// validated against.
pub const MIN_BANDWIDTH: u64 = (MIN_GOODPUT_BITS / 8.0) as u64;

/// `value` (when given) must lie in `min..=max`.
fn within(
    name: &str,
    value: Option<u64>,
    min: u64,
    max: u64,
    unit: &str,
    how: &str,
) -> Result<(), Emg> {
    match value {
        Some(v) if v < min || v > max => Err(protocol_error(
            cause::BAD_ARGUMENTS,
            format!("{name} = {v} is out of range: at least {min} and at most {max} {unit}"),
            format!("Give {name} from {min} to {max} {unit} ({how})."),
        )),
        _ => Ok(()),
    }
}

impl Command {
    /// Refuses a request whose numbers are out of their bounds (see the
    /// module table); names the argument, the bounds and the fix.
    pub fn check_bounds(&self) -> Result<(), Emg> {
        match self {
            Command::Migrate {
                max_suspend_ms,
                bandwidth,
                timeout_s,
                ..
            } => {
                within(
                    "timeout_s",
                    *timeout_s,
                    1,
                    MAX_TIMEOUT_S,
                    "seconds",
                    "moverctl migrate --timeout",
                )?;
                within(
                    "max_suspend_ms",
                    *max_suspend_ms,
                    1,
                    MAX_SUSPEND_MS,
                    "milliseconds",
                    "moverctl migrate --max-suspend-ms",
                )?;
                match bandwidth {
                    Some(b) if *b < MIN_BANDWIDTH => Err(protocol_error(
                        cause::BAD_ARGUMENTS,
                        format!(
                            "a bandwidth cap of {b} bytes/s is below what live migration needs: \
                             the manual requires a 1 Gbit/s migration path, at least \
                             {MIN_BANDWIDTH} bytes/s of payload"
                        ),
                        "Give --bandwidth 1Gbit/s or more, or no cap; over a slower path, \
                         migrate in shutdown mode.",
                    )),
                    _ => Ok(()),
                }
            }
            Command::Extend { seconds, .. } => within(
                "seconds",
                Some(*seconds),
                1,
                MAX_TIMEOUT_S,
                "seconds",
                "moverctl extend <id> <seconds>",
            ),
            Command::MigrateShutdown {
                shutdown_timeout_s, ..
            } => within(
                "shutdown_timeout_s",
                *shutdown_timeout_s,
                0,
                MAX_TIMEOUT_S,
                "seconds",
                "moverctl migrate --shutdown-timeout",
            ),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrate(
        timeout_s: Option<u64>,
        max_suspend_ms: Option<u64>,
        bandwidth: Option<u64>,
    ) -> Command {
        Command::Migrate {
            lpar: "l".into(),
            to: "h:1".into(),
            max_suspend_ms,
            bandwidth,
            streams: None,
            timeout_s,
            path: None,
            insecure_plaintext: false,
        }
    }

    #[test]
    fn durations_and_caps_out_of_bounds_are_refused_by_name() {
        for (c, name) in [
            (migrate(Some(u64::MAX), None, None), "timeout_s"),
            (migrate(Some(0), None, None), "timeout_s"),
            (migrate(None, Some(u64::MAX), None), "max_suspend_ms"),
            (migrate(None, None, Some(0)), "bandwidth"),
            (migrate(None, None, Some(MIN_BANDWIDTH - 1)), "bandwidth"),
            (
                Command::Extend {
                    id: 1,
                    seconds: u64::MAX,
                },
                "seconds",
            ),
            (
                Command::MigrateShutdown {
                    lpar: "l".into(),
                    to: "h:1".into(),
                    activate_destination: false,
                    shutdown_timeout_s: Some(MAX_TIMEOUT_S + 1),
                },
                "shutdown_timeout_s",
            ),
        ] {
            let e = c.check_bounds().unwrap_err();
            assert_eq!(e.cause, cause::BAD_ARGUMENTS, "{e}");
            assert!(e.message.contains(name), "{e}");
        }
        for c in [
            migrate(None, None, None),
            migrate(Some(MAX_TIMEOUT_S), Some(MAX_SUSPEND_MS), Some(125_000_000)),
            Command::Extend { id: 1, seconds: 60 },
        ] {
            c.check_bounds().unwrap();
        }
    }
}

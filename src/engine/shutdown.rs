//! Shutdown mode: the LPAR moves with its guest stopped.
//!
//! ```text
//! source                                        destination
//! Act? ask the guest to shut down, wait ≤ limit
//!      (the guest ignores it: fail, LPAR stays)
//! capture device state for shutdown mode
//!   (DeviceState::for_mode(Shutdown): identities,
//!    NVRAM, UUID…; no vCPUs, no memory)
//! ─── configuration + device state ─────────────▶ fresh LPAR (zeroed memory)
//!                                                 switchover rules: WWPN/MAC
//!                                                 exchange, vfcID assignment
//!                                                 restore (vCPUs at power-on)
//!                                                 activate if asked
//! ```
//!
//! No memory crosses: the guest boots again on the destination. The
//! transport is the management protocol (the state is a few KiB, hex in one
//! line bounded by [`MAX_STATE_HEX`]).

use super::EngineError;
use super::switchover::{self, DestinationHost, SwitchoverOutcome};
use super::wall_clock_ns;
use crate::partition::{LparConfig, Partition, PartitionError};
use crate::state::{DeviceState, MigrationMode};
use std::time::{Duration, Instant};

/// How long the agent waits for a guest to shut down unless told
/// otherwise (the manual's "Waiting TimeOut Limit": 5 minutes).
pub const DEFAULT_SHUTDOWN_WAIT: Duration = Duration::from_secs(300);

/// The largest hex-encoded device state accepted (512 KiB of state: far
/// above any real one, far below the management protocol's line cap).
pub const MAX_STATE_HEX: usize = 1 << 20;

/// Polls `is_down` until it holds or `limit` passes; whether it held.
pub fn wait_shut_down(mut is_down: impl FnMut() -> bool, limit: Duration) -> bool {
    let deadline = super::later(Instant::now(), limit);
    loop {
        if is_down() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The device state of the stopped `lpar` as shutdown mode carries it.
pub fn capture(lpar: &dyn Partition) -> Result<Vec<u8>, EngineError> {
    let state = lpar.save_state()?.for_mode(MigrationMode::Shutdown);
    Ok(state.encode().map_err(PartitionError::from)?)
}

/// Loads `bytes` (from [`capture`]) into the fresh destination `lpar`
/// configured as `config`, under the switchover rules of `host`.
pub fn install(
    lpar: &dyn Partition,
    config: &LparConfig,
    host: &DestinationHost,
    bytes: &[u8],
) -> Result<SwitchoverOutcome, EngineError> {
    let state = DeviceState::decode(bytes)
        .map_err(PartitionError::from)?
        .for_mode(MigrationMode::Shutdown);
    let now = wall_clock_ns();
    let (state, _slot, outcome) =
        switchover::apply(state, config, host, 0, now, now).map_err(EngineError::Switchover)?;
    // Shutdown mode carries no vCPUs: the guest starts from power-on.
    let state = state.for_mode(MigrationMode::Shutdown);
    lpar.restore_state(&state)?;
    Ok(outcome)
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses [`to_hex`]'s output; at most [`MAX_STATE_HEX`] characters.
pub fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    if text.len() > MAX_STATE_HEX {
        return Err(format!(
            "device state of {} hex digits exceeds {MAX_STATE_HEX}",
            text.len()
        ));
    }
    if !text.len().is_multiple_of(2) {
        return Err("device state has an odd number of hex digits".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(text.get(i..i + 2).unwrap_or("zz"), 16)
                .map_err(|_| format!("device state: bad hex at {i}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let b = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(from_hex(&to_hex(&b)).unwrap(), b);
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
        assert!(from_hex("é1").is_err());
        assert!(from_hex(&"0".repeat(MAX_STATE_HEX + 2)).is_err());
    }

    #[test]
    fn waiting_gives_up_at_the_limit() {
        let t = Instant::now();
        assert!(!wait_shut_down(|| false, Duration::from_millis(50)));
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(wait_shut_down(|| true, Duration::ZERO));
    }
}

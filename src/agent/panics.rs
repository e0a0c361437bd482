//! The last line of defence: a panic (a bug) in a request handler or a
//! migration thread becomes an EMG, never a dead connection, a wedged
//! host or a lost slot. The causes are fixed where they are found; this
//! only keeps the agent serving meanwhile.

use super::Agent;
use super::migration::Migration;
use crate::control::LparState;
use crate::control::{Command, cause, protocol_error};
use crate::emg::{Emg, Module, phase};
use serde_json::Value;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// What a panic said.
fn text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Serves `command`; a panic becomes an internal-error EMG.
pub fn serve(agent: &Arc<Agent>, command: Command) -> Result<Value, Emg> {
    let name = command.name();
    catch_unwind(AssertUnwindSafe(|| agent.handle(command))).unwrap_or_else(|payload| {
        let what = text(&*payload);
        log::error!("internal error serving '{name}': {what}");
        Err(protocol_error(
            cause::INTERNAL,
            format!("internal error serving '{name}': {what}"),
            "Report it with the agent's log; check the LPARs' states (moverctl lpar list) \
             before retrying.",
        ))
    })
}

/// Runs the body of migration `m`'s thread. After a panic nobody can say
/// whether ownership passed: the LPAR needs recovery (the journals decide)
/// and the migration ends failed, so the host is not left busy.
pub fn migration_thread(agent: &Agent, m: &Migration, body: impl FnOnce()) {
    let Err(payload) = catch_unwind(AssertUnwindSafe(body)) else {
        return;
    };
    let what = text(&*payload);
    log::error!("migration {} of '{}': internal error: {what}", m.id, m.lpar);
    let mut inv = agent.inventory.lock().unwrap_or_else(|p| p.into_inner());
    if inv.contains(&m.lpar)
        && let Err(e) = inv.set_state(&m.lpar, LparState::NeedsRecovery)
    {
        log::error!("cannot record LPAR '{}' as needs-recovery: {e}", m.lpar);
    }
    drop(inv);
    let error = Emg::new(
        Module::Executor,
        phase::MEMORY_TRANSFER,
        0x1F,
        format!("internal error in migration {}: {what}", m.id),
        "Report it with the agent's log; then resolve the LPAR with moverctl recover.",
    )
    .needing_recovery();
    if !m.is_finished() {
        agent.finish(m, Err(error), false);
    }
}

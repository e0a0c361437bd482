//! Operation deterrence (the manual's chapter 5, Table 5-2): which
//! operations an LPAR accepts in which state.
//!
//! | LPAR state      | activate | deactivate | delete | migrate | modify |
//! |-----------------|----------|------------|--------|---------|--------|
//! | Act             | no (already) | yes    | no     | yes     | no (activated) |
//! | Dea             | yes      | no (already) | yes  | no (live mode needs Act) | yes |
//! | Fai             | no       | no         | yes    | no      | no     |
//! | migrating       | cancels (source, 0x4050) | cancels (source, 0x4050) | busy | busy | busy |
//! | needs-recovery  | busy     | yes (the manual allows it) | busy | busy | busy |
//! | wwn-rollback-pending | busy | yes      | busy   | WWNs in use | busy |
//!
//! "modify" (`lpar-modify`: CPUs, memory, devices) needs a deactivated
//! LPAR, as on the HVM; the manual's way to change an LPAR at a destination
//! is a Shutdown-mode migration without activation, the change, then
//! activation (H:l.9642-9671).
//!
//! A shutdown-mode migration accepts Act (the guest is shut down first) and
//! Dea; Fai never; the other states as `migrate`.
//!
//! "WWNs in use": the manual's MMS `0x00 00000007 0020 02`, op3 0x01,
//! "LPAR Migration was canceled. Migration WWNs are already used.". A host
//! holding any LPAR with WWNs to roll back refuses every migration out of
//! it, in either mode ([`check_wwn_rollbacks`], H:l.8716-8740), until
//! `moverctl rollback-wwn` has rolled them all back.
//!
//! "cancels": Table 5-2 note 1, deactivating or reactivating the LPAR being
//! migrated cancels the migration; the agent cancels it (the source side,
//! in stage 0x4050, where cancel is allowed), waits for its end, then does
//! the operation ([`super::Agent::cancel_migration_of`]). "busy" answers
//! with the manual's message for the situation. The check and
//! the state change that follows it happen under the inventory lock, so two
//! concurrent requests cannot both pass (one migration per LPAR).

use crate::control::LparState;
use crate::emg::{Emg, Module, phase};

/// What an operator asks of an LPAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Activate,
    Deactivate,
    Delete,
    Migrate,
    /// A shutdown-mode migration (Dea, or Act with the guest shut down).
    MigrateShutdown,
    /// A change of the LPAR's definition (`lpar-modify`).
    Modify,
}

/// `phase` of the manual's "LPAR is busy" error (MMS Thread, `F003`).
pub const PHASE_LPAR_BUSY: u16 = 0xF003;
/// Reason operand the manual gives the "LPAR is busy" error.
pub const REASON_LPAR_BUSY: u64 = 0x101;
/// `phase` of the manual's "LPAR is deactivated" migration refusal (`F0a0`).
pub const PHASE_LPAR_DEACTIVATED: u16 = 0xF0A0;

/// `phase` of the manual's MMS refusals of a host or an LPAR: "blade is
/// busy" (`0x00 00000002 0020 02`) and "LPAR is damaged" (`0x00 00000006
/// 0020 02`), both with op3 0x01.
pub const PHASE_HOST_BUSY: u16 = 0x0020;

/// `cause` of the manual's "Migration WWNs are already used" (MMS `0x00
/// 00000007 0020 02`, op3 0x01).
pub const CAUSE_WWNS_IN_USE: u32 = 0x07;

/// The manual's refusal of a migration from a host that holds LPARs with
/// WWNs to roll back; `detail` says which.
pub fn wwns_in_use(detail: &str) -> Emg {
    Emg::new(
        Module::Management,
        PHASE_HOST_BUSY,
        CAUSE_WWNS_IN_USE,
        format!("LPAR Migration was canceled. Migration WWNs are already used. ({detail})"),
        "Roll back the other LPAR with the same Migration WWNs as the migrated LPAR \
         (moverctl rollback-wwn --list, then moverctl rollback-wwn <lpar>), then retry.",
    )
    .reason(0x01)
}

/// No migration out of a host while WWN rollbacks are pending there.
pub fn check_wwn_rollbacks(host: &str, pending: &[String]) -> Result<(), Emg> {
    if pending.is_empty() {
        Ok(())
    } else {
        Err(wwns_in_use(&format!(
            "host {host} holds LPARs with WWNs to roll back: {}",
            pending.join(", ")
        )))
    }
}

/// One migration per host (the manual's "blade"): a host already moving an
/// LPAR in or out refuses to start another.
pub fn check_host(host: &str, migrating: Option<&str>) -> Result<(), Emg> {
    match migrating {
        None => Ok(()),
        Some(lpar) => Err(Emg::new(
            Module::Management,
            PHASE_HOST_BUSY,
            0x02,
            format!(
                "The specified blade is busy. Please wait until another migration is completed. \
                 (host {host} is migrating LPAR '{lpar}')"
            ),
            "Wait until the running migration on this host ends (moverctl status), then retry.",
        )
        .reason(0x01)),
    }
}

/// Whether `op` may run on an LPAR named `name` in `state`.
pub fn check(name: &str, state: LparState, op: Operation) -> Result<(), Emg> {
    use LparState::*;
    use Operation::*;
    let refuse = |why: &str, action: &str| {
        Err(Emg::new(
            Module::Management,
            phase::INFORMATION,
            0x10,
            format!("LPAR '{name}' is {}: {why}", state.label()),
            action,
        ))
    };
    match (state, op) {
        (Migrating, _) => Err(Emg::new(
            Module::Executor,
            PHASE_LPAR_BUSY,
            0x01,
            format!(
                "The specified LPAR is busy, please wait until another migration is completed. \
                 (LPAR '{name}')"
            ),
            "Wait until the running migration of this LPAR ends (moverctl status), then retry.",
        )
        .reason(REASON_LPAR_BUSY)),
        (NeedsRecovery | WwnRollbackPending, Deactivate) => Ok(()),
        (WwnRollbackPending, Migrate | MigrateShutdown) => {
            Err(wwns_in_use(&format!("'{name}' has WWNs to roll back")))
        }
        (WwnRollbackPending, _) => Err(Emg::new(
            Module::Recovery,
            0x0011,
            0x01,
            format!(
                "The specified LPAR is busy: '{name}' has WWNs to roll back after a failed \
                 migration."
            ),
            "Roll the WWNs back first (moverctl rollback-wwn); only deactivation is allowed \
             until then.",
        )),
        (NeedsRecovery, Migrate | MigrateShutdown) => Err(Emg::new(
            Module::Management,
            PHASE_HOST_BUSY,
            0x06,
            format!("The specified LPAR is damaged (Migration LPAR). Recover the LPAR. ('{name}')"),
            "Recover the LPAR (moverctl recover), then retry the migration.",
        )
        .reason(0x01)),
        (NeedsRecovery, _) => Err(Emg::new(
            Module::Recovery,
            0x0011,
            0x01,
            format!(
                "The specified LPAR is busy: '{name}' is {} after a failed migration.",
                state.label()
            ),
            "Recover the LPAR first (moverctl recover); only deactivation is allowed until then.",
        )),
        (Act, Migrate | Deactivate) | (Dea, Activate | Delete | Modify) | (Fai, Delete) => Ok(()),
        (Act, Modify) => Err(Emg::new(
            Module::Management,
            phase::INFORMATION,
            0x10,
            format!(
                "The specified LPAR is activated. Can not change the LPAR configuration. \
                 ('{name}')"
            ),
            "Deactivate the LPAR (moverctl lpar deactivate), change it, then activate it. To \
             change it on a destination: migrate --mode shutdown without \
             --activate-destination, change it there, then activate it.",
        )),
        (Act | Dea, MigrateShutdown) => Ok(()),
        (Dea, Migrate) => Err(Emg::new(
            Module::Executor,
            PHASE_LPAR_DEACTIVATED,
            0x01,
            "The specified LPAR is deactivated. Can not execute LPAR migration.",
            "Activate the LPAR (moverctl lpar activate) and retry.",
        )),
        (Act, Activate) => refuse("it is already activated", "Nothing to do."),
        (Act, Delete) => refuse(
            "an activated LPAR cannot be deleted",
            "Deactivate it first (moverctl lpar deactivate).",
        ),
        (Dea, Deactivate) => refuse("it is already deactivated", "Nothing to do."),
        (Fai, _) => refuse(
            "its guest failed",
            "Delete the LPAR and define it again (moverctl lpar delete).",
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_host_moving_an_lpar_is_busy_for_another_migration() {
        assert!(super::check_host("hostA", None).is_ok());
        let e = super::check_host("hostA", Some("web1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("The specified blade is busy"), "{e}");
        assert!(e.contains("web1"), "{e}");
        // The manual's MMS `0x00 00000002 0020 02`, op3 0x01.
        assert!(e.starts_with("EMG0000000002002002:"), "{e}");
        assert!(e.contains(":0000000000000001:(0):MMS:"), "{e}");
    }

    use super::*;
    use LparState::*;
    use Operation::*;

    #[test]
    fn a_migrating_lpar_refuses_everything_with_the_busy_message() {
        for op in [Activate, Deactivate, Delete, Migrate] {
            let e = check("l", Migrating, op).unwrap_err();
            assert!(e.message.starts_with("The specified LPAR is busy"), "{e}");
            assert_eq!((e.phase, e.reason), (PHASE_LPAR_BUSY, REASON_LPAR_BUSY));
        }
    }

    #[test]
    fn an_lpar_needing_recovery_can_only_be_deactivated() {
        assert!(check("l", NeedsRecovery, Deactivate).is_ok());
        for op in [Activate, Delete, Migrate] {
            let e = check("l", NeedsRecovery, op).unwrap_err();
            assert!(e.action.contains("recover"), "{e}");
        }
        // Migrating it is the manual's "damaged" refusal, MMS `0x00
        // 00000006 0020 02`, op3 0x01, in either mode.
        for op in [Migrate, MigrateShutdown] {
            let e = check("l", NeedsRecovery, op).unwrap_err();
            assert_eq!((e.op1(), e.reason), (0x0000_0000_0600_2002, 0x01), "{e}");
            assert!(
                e.message.starts_with(
                    "The specified LPAR is damaged (Migration LPAR). Recover the LPAR."
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn wwns_to_roll_back_refuse_migrations_with_the_manuals_code() {
        assert!(check_wwn_rollbacks("h", &[]).is_ok());
        let pending = vec!["w1".to_string()];
        let from_host = check_wwn_rollbacks("h", &pending).unwrap_err();
        for op in [Migrate, MigrateShutdown] {
            let own = check("w1", WwnRollbackPending, op).unwrap_err();
            for e in [&own, &from_host] {
                // MMS `0x00 00000007 0020 02`, op3 0x01.
                assert_eq!((e.op1(), e.reason), (0x0000_0000_0700_2002, 0x01), "{e}");
                assert!(
                    e.message.starts_with(
                        "LPAR Migration was canceled. Migration WWNs are already used."
                    ),
                    "{e}"
                );
                assert!(e.action.contains("rollback-wwn"), "{e}");
            }
        }
        assert!(check("w1", WwnRollbackPending, Deactivate).is_ok());
    }

    #[test]
    fn live_migration_needs_an_activated_lpar() {
        assert!(check("l", Act, Migrate).is_ok());
        let e = check("l", Dea, Migrate).unwrap_err();
        assert!(e.message.contains("deactivated"));
        assert!(check("l", Fai, Migrate).is_err());
    }

    #[test]
    fn only_a_deactivated_lpar_can_be_changed() {
        assert!(check("l", Dea, Modify).is_ok());
        let e = check("l", Act, Modify).unwrap_err();
        assert!(
            e.message.starts_with("The specified LPAR is activated."),
            "{e}"
        );
        assert!(e.action.contains("--mode shutdown"), "{e}");
        for state in [Fai, Migrating, NeedsRecovery, WwnRollbackPending] {
            assert!(check("l", state, Modify).is_err(), "{state:?}");
        }
    }
}

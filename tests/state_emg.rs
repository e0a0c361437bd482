//! Every device-state error reaches the operator as an `EMG` line from
//! LPARMover(DST) in the device-state phase, with its own cause code, a
//! sentence saying what happened and an action saying what to do.

use lpar_mover::Emg;
use lpar_mover::emg::{Module, phase};
use lpar_mover::state::{MacAddress, StateError, UsbAssignment, Wwpn};
use std::collections::BTreeSet;

fn one_of_each() -> Vec<StateError> {
    vec![
        StateError::BadMagic {
            found: *b"GARBAGE!",
        },
        StateError::NewerMajorVersion {
            found: (2, 3),
            supported: (1, 0),
        },
        StateError::OlderMajorVersion {
            found: (0, 1),
            supported: (1, 0),
        },
        StateError::Truncated {
            what: "LAPIC",
            needed: 4,
            available: 1,
        },
        StateError::TrailingBytes { extra: 3 },
        StateError::ChecksumMismatch {
            stored: 1,
            computed: 2,
        },
        StateError::TooLarge {
            what: "vCPUs",
            count: 9999,
            max: 512,
        },
        StateError::InvalidValue {
            what: "VLAN mode",
            value: 9,
        },
        StateError::NoFreeVfcId {
            hba: 1,
            wwpn: Wwpn::from_u64(1),
            needed: 2,
            free: 1,
        },
        StateError::PinnedVfcIdTaken {
            hba: 0,
            wwpn: Wwpn::from_u64(1),
            vfc_id: 4,
        },
        StateError::IdentityCountMismatch {
            what: "NICs (MAC addresses)",
            source: 2,
            destination: 1,
        },
        StateError::ManualMac {
            nic: 0,
            mac: MacAddress([2, 0, 0, 0, 0, 1]),
        },
        StateError::UsbInUse {
            state: UsbAssignment::Running,
        },
    ]
}

#[test]
fn every_state_error_becomes_an_emg_with_its_own_cause_message_and_action() {
    let mut causes = BTreeSet::new();
    for e in one_of_each() {
        let text = e.to_string();
        let emg = Emg::from(e.clone());
        assert_eq!(emg.message, text);
        if let StateError::UsbInUse { .. } = e {
            // The manual's source LPAR Mover refusal, `0x00 00000000 0030
            // 04`, op3 0x33 (the source detects it).
            assert_eq!(
                (emg.module, emg.phase, emg.cause, emg.reason),
                (Module::MoverSource, phase::LPAR_MOVER, 0, 0x33)
            );
            assert!(emg.to_string().contains("LPARMover(SRC)"));
            continue;
        }
        assert_eq!(emg.module, Module::MoverDestination);
        assert_eq!(emg.phase, phase::DEVICE_STATE);
        assert!(!emg.action.is_empty());
        assert!(text.ends_with('.'), "a sentence: {text}");
        assert!(
            causes.insert(emg.cause),
            "cause {:#x} reused by {e:?}",
            emg.cause
        );
        assert!(emg.to_string().starts_with("EMG"));
        assert!(emg.to_string().contains("LPARMover(DST)"));
    }
}

#[test]
fn a_newer_format_names_both_versions_and_says_to_update() {
    let emg = Emg::from(StateError::NewerMajorVersion {
        found: (2, 3),
        supported: (1, 0),
    });
    assert!(
        emg.message.contains("2.3") && emg.message.contains("1.0"),
        "{emg}"
    );
    assert!(emg.action.contains("Update lpar-mover"), "{emg}");
    assert_eq!(emg.detail, 0x0002_0003);
}

//! The migration mode: the one word for *how* an LPAR moves, which the
//! device-state rules, the management protocol, the journal, the history
//! and the policy files share.

/// The two migration modes of the manual: the one migration-mode type of
/// the crate (the management protocol's `mode`, the journal's and the
/// history's, a policy entry's), re-exported as `control::MigrationMode`.
/// On the management protocol it reads `"live"` or `"shutdown"`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MigrationMode {
    /// The guest is shut down (or already deactivated) first; configuration
    /// moves, runtime device state does not.
    Shutdown,
    /// Concurrent Maintenance: the running LPAR moves.
    #[default]
    Live,
}

impl MigrationMode {
    /// The mode as the protocol, the journal and `moverctl` spell it.
    pub fn label(self) -> &'static str {
        match self {
            MigrationMode::Shutdown => "shutdown",
            MigrationMode::Live => "live",
        }
    }
}

impl std::fmt::Display for MigrationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl std::str::FromStr for MigrationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "live" => Ok(MigrationMode::Live),
            "shutdown" => Ok(MigrationMode::Shutdown),
            other => Err(format!("'{other}' is no migration mode: live or shutdown")),
        }
    }
}

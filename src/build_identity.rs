//! Who built this agent: compared by two agents before they migrate.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildIdentity {
    pub crate_version: String,
    pub git_commit: String,
    pub wire_protocol: u16,
}

impl BuildIdentity {
    /// The identity of the running binary, embedded by `build.rs`.
    pub fn current() -> Self {
        BuildIdentity {
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("LPAR_MOVER_GIT_COMMIT").to_string(),
            wire_protocol: env!("LPAR_MOVER_WIRE_PROTOCOL")
                .parse()
                .expect("build.rs writes a u16"),
        }
    }
}

impl fmt::Display for BuildIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lpar-mover {} (commit {}, wire protocol {})",
            self.crate_version, self.git_commit, self.wire_protocol
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_identity_carries_the_wire_version_of_this_build() {
        let id = BuildIdentity::current();
        assert_eq!(id.wire_protocol, crate::wire::PROTOCOL_VERSION);
        assert_eq!(id.crate_version, env!("CARGO_PKG_VERSION"));
        assert!(!id.git_commit.is_empty());
    }
}

//! The LPAR configuration: what an LPAR is, independent of where it runs.

use super::{PAGE_SIZE, PartitionError};
use serde::{Deserialize, Serialize};

/// The name the manual forbids for a migrating LPAR.
pub const NO_NAME: &str = "NO_NAME";

/// Most vCPUs one LPAR may have (bounds the vCPU state file).
pub const MAX_VCPUS: u32 = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LparConfig {
    /// Unique per host; migrates with the LPAR.
    pub name: String,
    /// LPAR number on its host; not migrated (the destination picks one).
    pub number: u32,
    pub vcpus: u32,
    /// Guest memory in bytes; a multiple of the page size.
    pub memory_bytes: u64,
    /// The guest program the `sim` backend runs (see `sim::program`).
    pub program: String,
}

impl LparConfig {
    /// The built-in default LPAR: 1 GiB, 2 vCPUs, a 64 MiB hot working set.
    pub fn default_lpar() -> Self {
        LparConfig {
            name: "lpar1".to_string(),
            number: 1,
            vcpus: 2,
            memory_bytes: 1 << 30,
            program: "hot:64MiB".to_string(),
        }
    }

    pub fn pages(&self) -> u64 {
        self.memory_bytes / PAGE_SIZE as u64
    }

    /// Checks what every backend needs; names the field and the fix.
    pub fn validate(&self) -> Result<(), PartitionError> {
        let bad = |why: String| Err(PartitionError::BadConfig { why });
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            || self.name.starts_with('.')
        {
            return bad(format!(
                "name '{}' must be 1-64 characters of letters, digits, '-', '_' or '.', not starting with '.'",
                self.name
            ));
        }
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return bad(format!(
                "vcpus is {}; it must be 1 to {MAX_VCPUS}",
                self.vcpus
            ));
        }
        if self.memory_bytes == 0 || !self.memory_bytes.is_multiple_of(PAGE_SIZE as u64) {
            return bad(format!(
                "memory is {} bytes; it must be a non-zero multiple of {PAGE_SIZE}",
                self.memory_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lpar_is_valid() {
        LparConfig::default_lpar().validate().unwrap();
    }

    #[test]
    fn invalid_fields_are_named() {
        let mut c = LparConfig::default_lpar();
        c.name = "../etc".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("name '../etc'")
        );
        let mut c = LparConfig::default_lpar();
        c.memory_bytes = 4097;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("multiple of 4096")
        );
        let mut c = LparConfig::default_lpar();
        c.vcpus = 0;
        assert!(c.validate().unwrap_err().to_string().contains("vcpus is 0"));
    }
}

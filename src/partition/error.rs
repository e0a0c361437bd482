//! What can go wrong in the partition layer, in words for the operator.

use crate::emg::{Emg, Module, phase};
use std::fmt;
use std::io;

/// What a partition (memory, vCPUs, dirty log, device model) can fail with.
#[derive(Debug)]
pub enum PartitionError {
    /// A guest page number beyond the end of guest memory.
    PageOutOfRange {
        /// The page asked for.
        page: u64,
        /// Pages of guest memory.
        pages: u64,
    },
    /// The shared-memory files of an LPAR could not be created or mapped.
    SharedMemory {
        /// The file.
        path: String,
        /// What the system said.
        source: io::Error,
    },
    /// An existing LPAR's files are not what this build wrote.
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong with it.
        what: String,
    },
    /// No dirty-tracking mechanism works on this kernel.
    NoDirtyTracker {
        /// Why each mechanism was refused.
        reasons: String,
    },
    /// A dirty-tracking system call failed.
    DirtyLog {
        /// The tracking mechanism that failed.
        mechanism: &'static str,
        /// The system call that failed.
        call: &'static str,
        /// What the system said.
        source: io::Error,
    },
    /// The operation needs paused vCPUs.
    NotPaused {
        /// The operation refused.
        operation: &'static str,
    },
    /// The guest program specification does not parse.
    BadProgram {
        /// The specification given.
        spec: String,
        /// What is wrong with it.
        why: String,
    },
    /// The LPAR configuration is not acceptable.
    BadConfig {
        /// What is wrong with it.
        why: String,
    },
    /// Device state could not be saved or loaded.
    DeviceState(crate::state::StateError),
    /// The file system holding the LPAR has no room for its memory.
    NoRoom {
        /// The memory file.
        path: String,
        /// The bytes it needs.
        bytes: u64,
    },
}

impl fmt::Display for PartitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PageOutOfRange { page, pages } => {
                write!(
                    f,
                    "guest page {page} is outside guest memory ({pages} pages)"
                )
            }
            Self::SharedMemory { path, source } => {
                write!(f, "cannot create or map LPAR memory at {path}: {source}")
            }
            Self::Corrupt { path, what } => write!(f, "LPAR files at {path} are unusable: {what}"),
            Self::NoDirtyTracker { reasons } => {
                write!(f, "no dirty-page tracker works on this kernel: {reasons}")
            }
            Self::DirtyLog {
                mechanism,
                call,
                source,
            } => {
                write!(f, "dirty tracking ({mechanism}) failed in {call}: {source}")
            }
            Self::NotPaused { operation } => {
                write!(f, "{operation} needs the LPAR's vCPUs paused")
            }
            Self::BadProgram { spec, why } => write!(f, "guest program '{spec}': {why}"),
            Self::BadConfig { why } => write!(f, "LPAR configuration: {why}"),
            Self::DeviceState(e) => write!(f, "device state: {e}"),
            Self::NoRoom { path, bytes } => write!(
                f,
                "There is not enough memory to activate the specified LPAR: {} of guest memory \
                 do not fit in {path}",
                crate::units::format_size(*bytes)
            ),
        }
    }
}

impl std::error::Error for PartitionError {}

impl PartitionError {
    fn action(&self) -> &'static str {
        match self {
            Self::PageOutOfRange { .. } => {
                "The peer sent a page beyond this LPAR's memory: check both sides define the same memory size, then retry."
            }
            Self::SharedMemory { .. } => {
                "Check that the state directory (default /dev/shm/lpar-mover) exists, is writable and has room for the LPAR's memory."
            }
            Self::Corrupt { .. } => {
                "Recover the LPAR (moverctl recover) or remove its directory if it is no longer needed."
            }
            Self::NoDirtyTracker { .. } => {
                "Use Linux 6.7 or later (userfaultfd write-protect with PAGEMAP_SCAN), or allow mprotect-based tracking; Shutdown mode still works."
            }
            Self::DirtyLog { .. } => {
                "Retry the migration; if it fails again select the other tracker with --tracker and report the kernel version."
            }
            Self::NotPaused { .. } => "Pause the LPAR first; this is a bug if the engine did it.",
            Self::BadProgram { .. } => {
                "Use idle, hot:<size>[,rate=<pages/s>][,content=zero|text|random], sweep or skewed."
            }
            Self::BadConfig { .. } => "Correct the LPAR configuration and retry.",
            Self::DeviceState(e) => e.action(),
            Self::NoRoom { .. } => {
                "Free room where the agent keeps LPAR memory (delete LPARs, a larger tmpfs or \
                 another --state-dir) or give the LPAR less memory."
            }
        }
    }

    fn cause(&self) -> u32 {
        match self {
            Self::PageOutOfRange { .. } => 0x01,
            Self::SharedMemory { .. } => 0x02,
            Self::Corrupt { .. } => 0x03,
            Self::NoDirtyTracker { .. } => 0x04,
            Self::DirtyLog { .. } => 0x05,
            Self::NotPaused { .. } => 0x06,
            Self::BadProgram { .. } => 0x07,
            Self::BadConfig { .. } => 0x08,
            Self::DeviceState(_) => 0x09,
            Self::NoRoom { .. } => 0x0A,
        }
    }
}

impl PartitionError {
    /// The file system ran out of room (for guest memory or any other of
    /// an LPAR's files).
    pub fn is_no_room(&self) -> bool {
        match self {
            Self::NoRoom { .. } => true,
            Self::SharedMemory { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            _ => false,
        }
    }
}

impl From<crate::state::StateError> for PartitionError {
    fn from(e: crate::state::StateError) -> Self {
        PartitionError::DeviceState(e)
    }
}

impl From<PartitionError> for Emg {
    fn from(e: PartitionError) -> Emg {
        e.emg()
    }
}

impl PartitionError {
    /// The EMG an operator sees for this error.
    pub fn emg(&self) -> Emg {
        let e = self;
        let detail = match e {
            PartitionError::PageOutOfRange { page, .. } => *page,
            _ => 0,
        };
        Emg::new(
            Module::SourceHvm,
            phase::PARTITION,
            e.cause(),
            e.to_string(),
            e.action(),
        )
        .detail(detail)
    }
}

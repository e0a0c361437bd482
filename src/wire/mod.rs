//! The migration stream (see issue 3): framed, versioned, checksummed messages.

include!("version.rs");

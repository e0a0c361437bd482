//! The device-state model (see issue 2).

/// The migration-stream protocol version. Read by `build.rs` (to embed it in
/// the build identity) and by `wire`; bump it with every incompatible change.
pub const PROTOCOL_VERSION: u16 = 5;

/// The oldest version this build still accepts from a peer.
#[allow(dead_code)] // build.rs includes this file too, and needs only the one above
pub const PREVIOUS_PROTOCOL_VERSION: u16 = PROTOCOL_VERSION.saturating_sub(1);

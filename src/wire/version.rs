/// The migration-stream protocol version. Read by `build.rs` (to embed it in
/// the build identity) and by `wire`; bump it with every incompatible change.
pub const PROTOCOL_VERSION: u16 = 4;

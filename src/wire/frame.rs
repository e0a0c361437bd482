//! The frames and their payloads.
//!
//! ```text
//! Hello       version:u16 migration_id:u128
//!             crate_version:(u8 len, UTF-8) git_commit:(u8 len, UTF-8) wire_protocol:u16
//!             auth_proof:(u16 len, bytes ≤ MAX_AUTH_PROOF)
//! LparConfig  opaque bytes ≤ MAX_LPAR_CONFIG
//! PageBatch   see `batch`
//! EndOfRound  round:u32 pages:u64
//! DeviceState opaque bytes ≤ MAX_DEVICE_STATE (the `state` layer's encoding)
//! Switchover  step:u8 (1 suspended, 2 ready, 3 commit, 4 running) timestamp_ns:u64 digest:u64
//! Abort       see `abort`
//! Keepalive   timestamp_ns:u64
//! Rehearsal   load_ns:u64
//! Identities  hbas:u8 (≤ MAX_IDENTITY_PORTS) { wwpn:[u8;8] migration_wwpn:[u8;8] } × hbas
//!             nics:u8 (≤ MAX_IDENTITY_PORTS) { mac:[u8;6] set_manually:u8 (0 or 1) } × nics
//! ```
//!
//! Identities goes destination → source before Ready: the identities the
//! destination's LPAR slot held, which the source's slot takes over in the
//! exchange of Table 1-2 (WWPN, migration WWPN, MAC: "Exchanged").
//!
//! Rehearsal goes destination → source (version 5) once the destination
//! has loaded the device-state base into its LPAR as a rehearsal of the
//! final load: how long that took, which the source adds to the suspension
//! it predicts.

use super::abort::{parse_emg, write_emg};
use super::batch::PageBatch;
use super::cursor::{Reader, put_string};
use super::error::WireError;
use super::header::{FrameKind, check_version};
use super::limits::{MAX_AUTH_PROOF, MAX_IDENTITY_PORTS, MAX_IDENTITY_STRING};
use crate::build_identity::BuildIdentity;
use crate::emg::Emg;
use crate::state::{HbaIdentity, Identities, MacAddress, NicIdentity, Wwpn};

/// Identifies one migration on both hosts (and in their journals).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MigrationId(pub u128);

impl std::fmt::Display for MigrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The first frame on every stream, in both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's wire protocol version (checked on receipt).
    pub protocol_version: u16,
    /// The migration the stream belongs to; every stream of it carries the same.
    pub migration_id: MigrationId,
    /// The sender's build, compared before anything else moves.
    pub build: BuildIdentity,
    /// Authentication material (the transport's challenge or HMAC proof),
    /// at most [`MAX_AUTH_PROOF`] bytes.
    pub auth_proof: Vec<u8>,
}

/// The barrier closing a round: every page of `round` has been sent, on all
/// streams, and there were `pages` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndOfRound {
    /// The round that ends.
    pub round: u32,
    /// Pages of the round sent on this stream.
    pub pages: u64,
}

/// The steps of the switchover, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SwitchoverStep {
    /// Source → destination: the vCPUs are paused; the final pages follow.
    Suspended = 1,
    /// Destination → source: memory and device state are loaded and verified.
    Ready = 2,
    /// Source → destination: ownership passes to the destination.
    Commit = 3,
    /// Destination → source: the first destination vCPU runs.
    Running = 4,
}

impl SwitchoverStep {
    /// Every step, in protocol order.
    pub const ALL: [SwitchoverStep; 4] = [
        SwitchoverStep::Suspended,
        SwitchoverStep::Ready,
        SwitchoverStep::Commit,
        SwitchoverStep::Running,
    ];

    /// The step a byte on the wire names, if any.
    pub fn from_u8(byte: u8) -> Option<SwitchoverStep> {
        SwitchoverStep::ALL.into_iter().find(|s| *s as u8 == byte)
    }
}

/// One switchover step, stamped with the sender's clock (nanoseconds since
/// the Unix epoch): for `Suspended`, when the last source vCPU stopped; for
/// `Running`, when the first destination vCPU ran. 0 when not meaningful.
/// `digest` is the image digest: for `Suspended`, of every page the source
/// sent (its final image); for `Ready`, of every page the destination
/// applied; 0 otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switchover {
    /// Which step this is.
    pub step: SwitchoverStep,
    /// The sender's clock at the step (see above), or 0.
    pub timestamp_ns: u64,
    /// The image digest (see above), or 0.
    pub digest: u64,
}

/// Sent on an idle stream so the peer knows it is alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// The sender's clock when sent, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
}

/// The destination's rehearsal of the final device-state load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rehearsal {
    /// How long loading the device-state base took there, nanoseconds.
    pub load_ns: u64,
}

/// One decoded frame. Bulk payloads (configuration, device state, page
/// batches) borrow the receive buffer instead of being copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The first frame on every stream.
    Hello(Hello),
    /// The LPAR's configuration, encoded by the partition layer.
    LparConfig(&'a [u8]),
    /// Guest pages of one round.
    PageBatch(PageBatch<'a>),
    /// The barrier closing a round on this stream.
    EndOfRound(EndOfRound),
    /// The device state, encoded by [`state`](crate::state).
    DeviceState(&'a [u8]),
    /// One step of the switchover.
    Switchover(Switchover),
    /// The sender gives up; the error says why.
    Abort(Emg),
    /// Nothing to say, but alive.
    Keepalive(Keepalive),
    /// The destination slot's identities (MACs, WWNs, …) for the switchover.
    Identities(Identities),
    /// The device state as it read while the guest ran, sent before the
    /// pause (version 4): the base of [`Frame::DeviceStateDelta`].
    DeviceStateBase(&'a [u8]),
    /// The final device state as its difference from the base (see
    /// [`state_delta`](super::state_delta)), checked to follow the format.
    DeviceStateDelta(&'a [u8]),
    /// The destination loaded the device-state base as a rehearsal.
    Rehearsal(Rehearsal),
}

impl<'a> Frame<'a> {
    /// The kind byte this frame is sent with.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Hello(_) => FrameKind::Hello,
            Frame::LparConfig(_) => FrameKind::LparConfig,
            Frame::PageBatch(_) => FrameKind::PageBatch,
            Frame::EndOfRound(_) => FrameKind::EndOfRound,
            Frame::DeviceState(_) => FrameKind::DeviceState,
            Frame::Switchover(_) => FrameKind::Switchover,
            Frame::Abort(_) => FrameKind::Abort,
            Frame::Keepalive(_) => FrameKind::Keepalive,
            Frame::Identities(_) => FrameKind::Identities,
            Frame::DeviceStateBase(_) => FrameKind::DeviceStateBase,
            Frame::DeviceStateDelta(_) => FrameKind::DeviceStateDelta,
            Frame::Rehearsal(_) => FrameKind::Rehearsal,
        }
    }

    /// Parses the payload of a frame of `kind` whose header (and checksum)
    /// has already been checked.
    pub fn parse(kind: FrameKind, payload: &'a [u8]) -> Result<Frame<'a>, WireError> {
        if payload.len() > kind.max_payload() {
            return Err(WireError::Malformed {
                kind,
                problem: "the payload is longer than its limit",
            });
        }
        let mut r = Reader::new(payload, kind);
        let frame = match kind {
            FrameKind::Hello => {
                let protocol_version = check_version(r.u16()?)?;
                let migration_id = MigrationId(r.u128()?);
                let crate_version = r.string(1, MAX_IDENTITY_STRING)?;
                let git_commit = r.string(1, MAX_IDENTITY_STRING)?;
                let wire_protocol = r.u16()?;
                let proof_len = usize::from(r.u16()?);
                if proof_len > MAX_AUTH_PROOF {
                    return Err(r.malformed("the authentication proof is longer than its limit"));
                }
                let auth_proof = r.bytes(proof_len)?.to_vec();
                Frame::Hello(Hello {
                    protocol_version,
                    migration_id,
                    build: BuildIdentity {
                        crate_version,
                        git_commit,
                        wire_protocol,
                    },
                    auth_proof,
                })
            }
            FrameKind::LparConfig => return Ok(Frame::LparConfig(payload)),
            FrameKind::DeviceState => return Ok(Frame::DeviceState(payload)),
            FrameKind::DeviceStateBase => return Ok(Frame::DeviceStateBase(payload)),
            FrameKind::DeviceStateDelta => {
                super::state_delta::check(payload).map_err(|problem| r.malformed(problem))?;
                return Ok(Frame::DeviceStateDelta(payload));
            }
            FrameKind::PageBatch => return Ok(Frame::PageBatch(PageBatch::parse(payload)?)),
            FrameKind::Abort => return Ok(Frame::Abort(parse_emg(payload)?)),
            FrameKind::EndOfRound => Frame::EndOfRound(EndOfRound {
                round: r.u32()?,
                pages: r.u64()?,
            }),
            FrameKind::Switchover => {
                let step = SwitchoverStep::from_u8(r.u8()?)
                    .ok_or_else(|| r.malformed("unknown switchover step"))?;
                Frame::Switchover(Switchover {
                    step,
                    timestamp_ns: r.u64()?,
                    digest: r.u64()?,
                })
            }
            FrameKind::Keepalive => Frame::Keepalive(Keepalive {
                timestamp_ns: r.u64()?,
            }),
            FrameKind::Rehearsal => Frame::Rehearsal(Rehearsal { load_ns: r.u64()? }),
            FrameKind::Identities => {
                let hbas = usize::from(r.u8()?);
                if hbas > MAX_IDENTITY_PORTS {
                    return Err(r.malformed("more FC port identities than the limit"));
                }
                let hbas = (0..hbas)
                    .map(|_| {
                        Ok(HbaIdentity {
                            wwpn: Wwpn(r.array()?),
                            migration_wwpn: Wwpn(r.array()?),
                        })
                    })
                    .collect::<Result<Vec<_>, WireError>>()?;
                let nics = usize::from(r.u8()?);
                if nics > MAX_IDENTITY_PORTS {
                    return Err(r.malformed("more NIC identities than the limit"));
                }
                let nics = (0..nics)
                    .map(|_| {
                        let mac = MacAddress(r.array()?);
                        let set_manually = match r.u8()? {
                            0 => false,
                            1 => true,
                            _ => return Err(r.malformed("a NIC's manual-MAC flag is not 0 or 1")),
                        };
                        Ok(NicIdentity { mac, set_manually })
                    })
                    .collect::<Result<Vec<_>, WireError>>()?;
                Frame::Identities(Identities { hbas, nics })
            }
        };
        r.finish()?;
        Ok(frame)
    }

    /// Appends the payload. Text that exceeds its limit is refused (hello)
    /// or cut (abort); opaque blobs over their limit are refused by the
    /// caller, which checks the payload length against the kind's bound.
    pub(crate) fn write_payload(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            Frame::Hello(hello) => {
                let malformed = |problem| WireError::Malformed {
                    kind: FrameKind::Hello,
                    problem,
                };
                if hello.build.crate_version.len() > MAX_IDENTITY_STRING
                    || hello.build.git_commit.len() > MAX_IDENTITY_STRING
                {
                    return Err(malformed(
                        "a build identity string is longer than its limit",
                    ));
                }
                if hello.auth_proof.len() > MAX_AUTH_PROOF {
                    return Err(malformed(
                        "the authentication proof is longer than its limit",
                    ));
                }
                out.extend_from_slice(&hello.protocol_version.to_le_bytes());
                out.extend_from_slice(&hello.migration_id.0.to_le_bytes());
                put_string(out, &hello.build.crate_version, 1, MAX_IDENTITY_STRING);
                put_string(out, &hello.build.git_commit, 1, MAX_IDENTITY_STRING);
                out.extend_from_slice(&hello.build.wire_protocol.to_le_bytes());
                out.extend_from_slice(&(hello.auth_proof.len() as u16).to_le_bytes());
                out.extend_from_slice(&hello.auth_proof);
            }
            Frame::LparConfig(bytes)
            | Frame::DeviceState(bytes)
            | Frame::DeviceStateBase(bytes)
            | Frame::DeviceStateDelta(bytes) => out.extend_from_slice(bytes),
            Frame::PageBatch(batch) => batch.write_payload(out),
            Frame::EndOfRound(end) => {
                out.extend_from_slice(&end.round.to_le_bytes());
                out.extend_from_slice(&end.pages.to_le_bytes());
            }
            Frame::Switchover(s) => {
                out.push(s.step as u8);
                out.extend_from_slice(&s.timestamp_ns.to_le_bytes());
                out.extend_from_slice(&s.digest.to_le_bytes());
            }
            Frame::Abort(emg) => write_emg(emg, out),
            Frame::Keepalive(k) => out.extend_from_slice(&k.timestamp_ns.to_le_bytes()),
            Frame::Rehearsal(r) => out.extend_from_slice(&r.load_ns.to_le_bytes()),
            Frame::Identities(ids) => {
                if ids.hbas.len() > MAX_IDENTITY_PORTS || ids.nics.len() > MAX_IDENTITY_PORTS {
                    return Err(WireError::Malformed {
                        kind: FrameKind::Identities,
                        problem: "more identities than the limit",
                    });
                }
                out.push(ids.hbas.len() as u8);
                for h in &ids.hbas {
                    out.extend_from_slice(&h.wwpn.0);
                    out.extend_from_slice(&h.migration_wwpn.0);
                }
                out.push(ids.nics.len() as u8);
                for n in &ids.nics {
                    out.extend_from_slice(&n.mac.0);
                    out.push(u8::from(n.set_manually));
                }
            }
        }
        Ok(())
    }
}

//! The agent ↔ LPAR-process channel (issue 12 item 5, first part): the
//! messages an agent sends over the Unix socket in the LPAR's directory to
//! the `lpar-vmm` process that owns the VM, and their decoder. Guest
//! memory does not cross it: both sides map the LPAR's `memory` file.
//!
//! ```text
//! frame   = len:u32 LE (bytes after this field, <= MAX_FRAME) kind:u8 payload
//! request : 1 Pause | 2 Resume | 3 Throttle pct:u8 (<= 99) | 4 StartLog
//!         | 5 Harvest | 6 StopLog | 7 Save | 8 Restore state-bytes
//!         | 9 Status | 10 Shutdown | 11 Stop
//! reply   : 128 Ok | 129 Error text(UTF-8) | 130 Pages n:u32 (first:u64 end:u64)*n
//!         | 131 State state-bytes | 132 Status running:u8 failed:u8 shut_down:u8
//!           writes:u64 max_stall_ns:u64 resume_stall_ns:u64 (0 = none yet)
//! ```
//!
//! Every count and length is checked against its named bound and against
//! the bytes present before anything is allocated; ranges must be
//! non-empty and ascending. The decoder never panics (fuzzed by
//! `fuzz/fuzz_targets/kvm_channel.rs`).

use crate::partition::PageSet;
use crate::state::MAX_ENCODED_BYTES;
use std::ops::Range;

/// Largest frame: a device state plus its framing.
pub const MAX_FRAME: usize = MAX_ENCODED_BYTES + 64;
/// Most page ranges in one harvest reply (a fully fragmented 64 GiB guest
/// has 8 M; a frame must stay under [`MAX_FRAME`] anyway).
pub const MAX_RANGES: usize = MAX_FRAME / 16;
/// Longest error text.
pub const MAX_ERROR_TEXT: usize = 4096;
/// A status reply's payload: three flags and three u64.
const STATUS_LEN: usize = 27;

/// A call from the agent to the LPAR process; each is answered by exactly
/// one [`Reply`] (an `Error` when it fails or the frame is refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Stops every vCPU (kind 1); answered `Ok` once none runs.
    Pause,
    /// Lets the vCPUs run again (kind 2); answered `Ok`.
    Resume,
    /// Makes every vCPU sleep this percentage of its time, 0 (full speed)
    /// to 99 (kind 3; the decoder refuses more); answered `Ok`.
    Throttle(u8),
    /// Starts KVM dirty logging over all guest memory (kind 4); answered
    /// `Ok`.
    StartLog,
    /// Asks for the pages written since the last harvest or `StartLog`
    /// (kind 5), re-arming the log; answered `Pages` (empty when no log
    /// runs).
    Harvest,
    /// Stops dirty logging (kind 6); answered `Ok`, also when none ran.
    StopLog,
    /// Captures the device state (kind 7; needs the vCPUs paused);
    /// answered `State`.
    Save,
    /// Loads an encoded device state (kind 8; the bytes a `State` reply
    /// carries; needs the vCPUs paused); answered `Ok`.
    Restore(Vec<u8>),
    /// Asks how the LPAR is doing (kind 9); answered `Status`.
    Status,
    /// Presses the guest's ACPI power button (kind 10); answered `Ok`.
    /// The guest may ignore it.
    Shutdown,
    /// Pauses the VM and ends the LPAR process once answered (kind 11);
    /// answered `Ok`.
    Stop,
}

/// The LPAR process's answer to [`Request::Status`]: the flags and
/// counters an agent polls, so that it need not map the guest's mailbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The vCPUs run (not paused, not stopped).
    pub running: bool,
    /// A vCPU stopped on an exit it cannot handle.
    pub failed: bool,
    /// The guest shut down after a [`Request::Shutdown`].
    pub shut_down: bool,
    /// The guest's own count of the writes it made (all vCPUs); 0 before
    /// it published one.
    pub writes: u64,
    /// The longest gap between consecutive guest writes, in nanoseconds of
    /// guest time, as the guest saw it; 0 = none yet.
    pub max_stall_ns: u64,
    /// The guest-observed stall across the last resume; 0 = none yet.
    pub resume_stall_ns: u64,
}

/// The LPAR process's answer to one [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The request was carried out (kind 128).
    Ok,
    /// The request failed or its frame was refused (kind 129): the
    /// reason, cut to at most [`MAX_ERROR_TEXT`] bytes on a character
    /// boundary when encoded, decoded lossily as UTF-8.
    Error(String),
    /// The pages a [`Request::Harvest`] found written (kind 130), as page
    /// index ranges (index = file offset / `PAGE_SIZE`, not guest-physical):
    /// each non-empty, ascending and disjoint, at most [`MAX_RANGES`].
    Pages(Vec<Range<u64>>),
    /// The encoded device state a [`Request::Save`] captured (kind 131).
    State(Vec<u8>),
    /// The answer to [`Request::Status`] (kind 132).
    Status(Status),
}

/// Why a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// The frame ends before a field it announces.
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the frame.
        available: usize,
    },
    /// A length or count is over its named bound (or a frame length is 0).
    TooLarge {
        /// What was counted ("frame length", "page ranges", "error text").
        what: &'static str,
        /// The count the frame announced.
        count: u64,
        /// Its bound.
        max: u64,
    },
    /// The kind byte names no message of this direction.
    UnknownKind(u8),
    /// A field holds a value outside its range (a flag not 0 or 1, a
    /// throttle over 99, a page range empty or out of order).
    BadValue {
        /// Which field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// This many bytes follow a complete message.
    TrailingBytes(usize),
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(
                    f,
                    "frame cut short: {needed} bytes needed, {available} present"
                )
            }
            Self::TooLarge { what, count, max } => write!(f, "{what}: {count} is over {max}"),
            Self::UnknownKind(k) => write!(f, "unknown message kind {k}"),
            Self::BadValue { what, value } => write!(f, "{what}: {value} is not allowed"),
            Self::TrailingBytes(n) => write!(f, "{n} bytes after the message"),
        }
    }
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.extend_from_slice(&((1 + payload.len()) as u32).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

impl Request {
    /// The whole frame for this request, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Pause => frame(1, &[]),
            Request::Resume => frame(2, &[]),
            Request::Throttle(p) => frame(3, &[*p]),
            Request::StartLog => frame(4, &[]),
            Request::Harvest => frame(5, &[]),
            Request::StopLog => frame(6, &[]),
            Request::Save => frame(7, &[]),
            Request::Restore(b) => frame(8, b),
            Request::Status => frame(9, &[]),
            Request::Shutdown => frame(10, &[]),
            Request::Stop => frame(11, &[]),
        }
    }

    /// Decodes one whole frame (length prefix included).
    pub fn decode(bytes: &[u8]) -> Result<Request, ChannelError> {
        let (kind, p) = split(bytes)?;
        let empty = |r: Request| {
            if p.is_empty() {
                Ok(r)
            } else {
                Err(ChannelError::TrailingBytes(p.len()))
            }
        };
        match kind {
            1 => empty(Request::Pause),
            2 => empty(Request::Resume),
            3 => match p {
                [pct] if *pct <= 99 => Ok(Request::Throttle(*pct)),
                [pct] => Err(ChannelError::BadValue {
                    what: "throttle percent",
                    value: u64::from(*pct),
                }),
                [] => Err(ChannelError::Truncated {
                    needed: 1,
                    available: 0,
                }),
                _ => Err(ChannelError::TrailingBytes(p.len() - 1)),
            },
            4 => empty(Request::StartLog),
            5 => empty(Request::Harvest),
            6 => empty(Request::StopLog),
            7 => empty(Request::Save),
            8 => Ok(Request::Restore(p.to_vec())),
            9 => empty(Request::Status),
            10 => empty(Request::Shutdown),
            11 => empty(Request::Stop),
            k => Err(ChannelError::UnknownKind(k)),
        }
    }
}

impl Reply {
    /// The harvest reply carrying `set`'s page ranges.
    pub(crate) fn pages(set: &PageSet) -> Reply {
        Reply::Pages(set.ranges().to_vec())
    }

    /// The whole frame for this reply, length prefix included. An error
    /// text over [`MAX_ERROR_TEXT`] bytes is cut; nothing else is checked
    /// (the LPAR process builds replies from values already in range).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Ok => frame(128, &[]),
            Reply::Error(t) => {
                let mut end = t.len().min(MAX_ERROR_TEXT);
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                frame(129, &t.as_bytes()[..end])
            }
            Reply::Pages(ranges) => {
                let mut p = Vec::with_capacity(4 + 16 * ranges.len());
                p.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
                for r in ranges {
                    p.extend_from_slice(&r.start.to_le_bytes());
                    p.extend_from_slice(&r.end.to_le_bytes());
                }
                frame(130, &p)
            }
            Reply::State(b) => frame(131, b),
            Reply::Status(s) => {
                let mut p = vec![
                    u8::from(s.running),
                    u8::from(s.failed),
                    u8::from(s.shut_down),
                ];
                p.extend_from_slice(&s.writes.to_le_bytes());
                p.extend_from_slice(&s.max_stall_ns.to_le_bytes());
                p.extend_from_slice(&s.resume_stall_ns.to_le_bytes());
                frame(132, &p)
            }
        }
    }

    /// Decodes one whole frame (length prefix included), checking every
    /// count and value against its bound; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Reply, ChannelError> {
        let (kind, p) = split(bytes)?;
        match kind {
            128 if p.is_empty() => Ok(Reply::Ok),
            128 => Err(ChannelError::TrailingBytes(p.len())),
            129 => {
                if p.len() > MAX_ERROR_TEXT {
                    return Err(ChannelError::TooLarge {
                        what: "error text",
                        count: p.len() as u64,
                        max: MAX_ERROR_TEXT as u64,
                    });
                }
                Ok(Reply::Error(String::from_utf8_lossy(p).into_owned()))
            }
            130 => decode_pages(p).map(Reply::Pages),
            131 => Ok(Reply::State(p.to_vec())),
            132 => {
                if p.len() != STATUS_LEN {
                    return Err(if p.len() < STATUS_LEN {
                        ChannelError::Truncated {
                            needed: STATUS_LEN,
                            available: p.len(),
                        }
                    } else {
                        ChannelError::TrailingBytes(p.len() - STATUS_LEN)
                    });
                }
                let flag = |i: usize, what| match p[i] {
                    0 => Ok(false),
                    1 => Ok(true),
                    v => Err(ChannelError::BadValue {
                        what,
                        value: u64::from(v),
                    }),
                };
                Ok(Reply::Status(Status {
                    running: flag(0, "running flag")?,
                    failed: flag(1, "failed flag")?,
                    shut_down: flag(2, "shut-down flag")?,
                    writes: u64::from_le_bytes(p[3..11].try_into().unwrap()),
                    max_stall_ns: u64::from_le_bytes(p[11..19].try_into().unwrap()),
                    resume_stall_ns: u64::from_le_bytes(p[19..27].try_into().unwrap()),
                }))
            }
            k => Err(ChannelError::UnknownKind(k)),
        }
    }
}

fn decode_pages(p: &[u8]) -> Result<Vec<Range<u64>>, ChannelError> {
    if p.len() < 4 {
        return Err(ChannelError::Truncated {
            needed: 4,
            available: p.len(),
        });
    }
    let n = u32::from_le_bytes(p[..4].try_into().unwrap()) as usize;
    if n > MAX_RANGES {
        return Err(ChannelError::TooLarge {
            what: "page ranges",
            count: n as u64,
            max: MAX_RANGES as u64,
        });
    }
    let body = &p[4..];
    if body.len() != 16 * n {
        return Err(if body.len() < 16 * n {
            ChannelError::Truncated {
                needed: 16 * n,
                available: body.len(),
            }
        } else {
            ChannelError::TrailingBytes(body.len() - 16 * n)
        });
    }
    let mut ranges = Vec::with_capacity(n);
    let mut prev_end = 0;
    for c in body.chunks_exact(16) {
        let start = u64::from_le_bytes(c[..8].try_into().unwrap());
        let end = u64::from_le_bytes(c[8..].try_into().unwrap());
        if end <= start || start < prev_end {
            return Err(ChannelError::BadValue {
                what: "page range (empty or not ascending)",
                value: start,
            });
        }
        prev_end = end;
        ranges.push(start..end);
    }
    Ok(ranges)
}

/// Splits a frame into its kind and payload, checking the length prefix.
fn split(bytes: &[u8]) -> Result<(u8, &[u8]), ChannelError> {
    if bytes.len() < 5 {
        return Err(ChannelError::Truncated {
            needed: 5,
            available: bytes.len(),
        });
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(ChannelError::TooLarge {
            what: "frame length",
            count: len as u64,
            max: MAX_FRAME as u64,
        });
    }
    let rest = &bytes[4..];
    if rest.len() < len {
        return Err(ChannelError::Truncated {
            needed: len,
            available: rest.len(),
        });
    }
    if rest.len() > len {
        return Err(ChannelError::TrailingBytes(rest.len() - len));
    }
    Ok((rest[0], &rest[1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            Just(Request::Pause),
            Just(Request::Resume),
            (0u8..=99).prop_map(Request::Throttle),
            Just(Request::StartLog),
            Just(Request::Harvest),
            Just(Request::StopLog),
            Just(Request::Save),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Request::Restore),
            Just(Request::Status),
            Just(Request::Shutdown),
            Just(Request::Stop),
        ]
    }

    fn reply() -> impl Strategy<Value = Reply> {
        prop_oneof![
            Just(Reply::Ok),
            "[a-z ]{0,40}".prop_map(Reply::Error),
            proptest::collection::vec((0u64..1000, 1u64..50), 0..20).prop_map(|v| {
                let mut at = 0;
                Reply::Pages(
                    v.into_iter()
                        .map(|(gap, len)| {
                            let r = at + gap..at + gap + len;
                            at = r.end;
                            r
                        })
                        .collect(),
                )
            }),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Reply::State),
            any::<(bool, bool, bool, u64, u64, u64)>().prop_map(|(a, b, c, w, m, r)| {
                Reply::Status(Status {
                    running: a,
                    failed: b,
                    shut_down: c,
                    writes: w,
                    max_stall_ns: m,
                    resume_stall_ns: r,
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip_and_any_cut_is_refused(r in request()) {
            let bytes = r.encode();
            prop_assert_eq!(Request::decode(&bytes).unwrap(), r);
            for cut in 0..bytes.len() {
                prop_assert!(Request::decode(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(Request::decode(&longer).is_err());
        }

        #[test]
        fn replies_round_trip_and_any_cut_is_refused(r in reply()) {
            let bytes = r.encode();
            prop_assert_eq!(Reply::decode(&bytes).unwrap(), r);
            for cut in 0..bytes.len() {
                prop_assert!(Reply::decode(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Request::decode(&bytes);
            let _ = Reply::decode(&bytes);
        }
    }

    #[test]
    fn bounds_and_bad_values_are_refused() {
        assert!(matches!(
            Request::decode(&frame(3, &[100])),
            Err(ChannelError::BadValue { .. })
        ));
        let mut huge = (u32::MAX).to_le_bytes().to_vec();
        huge.push(1);
        assert!(matches!(
            Request::decode(&huge),
            Err(ChannelError::TooLarge { .. })
        ));
        let mut p = 2u32.to_le_bytes().to_vec();
        for v in [5u64, 9, 7, 8] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        assert!(
            Reply::decode(&frame(130, &p)).is_err(),
            "ranges not ascending"
        );
        assert!(
            Reply::decode(&frame(132, &[2; STATUS_LEN])).is_err(),
            "flag not 0/1"
        );
        assert!(matches!(
            Reply::decode(&frame(200, &[])),
            Err(ChannelError::UnknownKind(200))
        ));
    }
}

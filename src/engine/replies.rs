//! What the source hears back on stream 0: the reply reader thread that
//! turns the destination's frames into owned events, and the round trips
//! measured on its echoes.

use super::EngineError;
use super::pump::OwnedFrame;
use crate::transport::MigrationStream;
use crate::wire::{FrameDecoder, Integrity};
use crossbeam::channel::{self, Receiver};
use std::time::Duration;

/// Recent round trips; the typical one is the smallest of the last few, so
/// one scheduling hiccup does not make the switchover look slower than it
/// is (the suspension itself is measured and reported, not assumed).
#[derive(Default)]
pub(super) struct RoundTrips {
    recent: std::collections::VecDeque<Duration>,
}

impl RoundTrips {
    const KEPT: usize = 5;

    pub(super) fn record(&mut self, rtt: Duration) {
        if self.recent.len() == Self::KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(rtt);
    }

    pub(super) fn typical(&self) -> Duration {
        self.recent.iter().copied().min().unwrap_or_default()
    }
}

/// Reads the destination's replies (stream 0's other direction).
pub(super) fn spawn_reply_reader(
    stream: &MigrationStream,
    integrity: Integrity,
) -> Result<Receiver<Result<OwnedFrame, EngineError>>, EngineError> {
    let mut stream = stream
        .try_clone()
        .map_err(|source| EngineError::Stream { stream: 0, source })?;
    let (tx, rx) = channel::unbounded();
    std::thread::Builder::new()
        .name("replies".into())
        .spawn(move || {
            let mut decoder = FrameDecoder::with_integrity(integrity);
            loop {
                loop {
                    match decoder.next_frame() {
                        Ok(Some(frame)) => match OwnedFrame::from_frame(frame) {
                            Some(f) => {
                                if tx.send(Ok(f)).is_err() {
                                    return;
                                }
                            }
                            None => {
                                let what = "page data from the destination".to_string();
                                let _ = tx.send(Err(EngineError::Protocol { stream: 0, what }));
                                return;
                            }
                        },
                        Ok(None) => break,
                        Err(error) => {
                            let _ = tx.send(Err(EngineError::Wire { stream: 0, error }));
                            return;
                        }
                    }
                }
                match decoder.read_from(&mut stream) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(source) => {
                        let _ = tx.send(Err(EngineError::Stream { stream: 0, source }));
                        return;
                    }
                }
            }
        })
        .expect("spawn reply reader");
    Ok(rx)
}

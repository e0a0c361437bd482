//! How the console's API fails: an HTTP status with an EMG.

use crate::emg::{Emg, Module, phase};

/// An error as the API returns it: the status and the EMG.
pub struct ApiError(pub u16, pub Emg);

/// An EMG of the console itself (module `Client`, the manual's MMC).
pub fn console_error(message: impl Into<String>, action: impl Into<String>) -> Emg {
    Emg::new(
        Module::Client,
        phase::CONNECT,
        crate::control::cause::BAD_ARGUMENTS,
        message,
        action,
    )
}

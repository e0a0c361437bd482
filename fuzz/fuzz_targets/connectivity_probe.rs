//! The destination's half of a connectivity-test stream over arbitrary
//! source bytes: never a panic; when it succeeds, it confirmed exactly the
//! payload after the pings and echoed every ping.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::agent::connectivity::serve_probe;
use std::io::{Read, Write};

struct Pipe<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut p = Pipe { input: data, output: Vec::new() };
    if let Ok(n) = serve_probe(&mut p) {
        let pings = usize::from(data[0]);
        assert_eq!(n as usize, data.len() - 1 - 8 * pings);
        assert_eq!(&p.output[..8 * pings], &data[1..1 + 8 * pings]);
        assert_eq!(p.output[8 * pings..], n.to_le_bytes());
    }
});

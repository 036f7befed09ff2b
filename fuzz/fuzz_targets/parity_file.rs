//! The parity-file reader (`wgpt parity FILE`, the page's parity-input).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wgpt::parity::ParityFile::parse("parity.safetensors", data);
});

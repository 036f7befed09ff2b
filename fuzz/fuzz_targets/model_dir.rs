//! An HF model directory's two files as one input: config.json's bytes, a NUL byte, then
//! model.safetensors' bytes (JSON text holds no raw NUL). Parsing must end in Ok or Err, never a
//! panic, an abort or an allocation the file does not pay for.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (config, rest) = data.split_at(split);
    let safetensors = rest.get(1..).unwrap_or(&[]);
    let Ok(text) = std::str::from_utf8(config) else { return };
    if let Ok(config) = wgpt::hf::parse_config(text) {
        let _ = wgpt::hf::load_weights("model.safetensors", safetensors, config);
    }
});

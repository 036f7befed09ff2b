//! peft's adapter_config.json as `--lora` and the page read it (any text): refused, or parsed to
//! a config whose own JSON parses back to the same config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgpt::hf::peft::PeftConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = PeftConfig::parse(text) {
        let back = PeftConfig::parse(&config.to_json()).expect("a written adapter_config.json parses");
        assert_eq!(back.to_json(), config.to_json());
    }
});

//! tokenizer.json as a model directory or the page brings it, then the calls wgpt makes on it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = wgpt::tokenizer::Tokenizer::from_bytes("tokenizer.json", data) {
        let _ = t.vocab_size();
        let _ = t.end_of_text();
        if let Ok(ids) = t.prompt_ids("To be, or not to be: ünïcödé 🙂\n") {
            let _ = t.decode(&ids);
        }
        let _ = t.decode(&[0, 1, 2, u32::MAX]);
        let _ = t.to_json();
    }
});

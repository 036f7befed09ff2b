//! A run zip (Export run, `wgpt export-run`, `wgpt train --resume run.zip`): reading one must end
//! in Ok or Err, never a panic, an abort or an allocation the file does not pay for.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wgpt::run::archive::read("run.zip", data);
});

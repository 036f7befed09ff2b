//! Corpus ingestion as `wgpt train --data` and the page run it: bytes → checked text → a
//! character tokenizer → a dataset → batches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgpt::data::{corpus_text, Dataset, Split};
use wgpt::rng::Rng;
use wgpt::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = corpus_text("corpus.txt", data) else { return };
    let Ok(tokenizer) = Tokenizer::char_level(&text) else { return };
    let Ok(ids) = tokenizer.encode(&text) else { return };
    assert!(ids.iter().all(|&i| (i as usize) < tokenizer.vocab_size()), "an id past the vocabulary");
    let t = 1 + data.len() % 8;
    if let Ok(ds) = Dataset::from_text(&text, &tokenizer, t) {
        let mut rng = Rng::new(data.len() as u64);
        for split in [Split::Train, Split::Val] {
            let (x, y) = ds.batch(split, &mut rng, 2, t);
            assert_eq!((x.len(), y.len()), (2 * t, 2 * t));
        }
    }
});

//! A link's fragment as the page opens it (location.hash, any text): opened over a preset's
//! settings, it is refused or opens to settings that are their own link again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgpt::run::link::Link;
use wgpt::run::RunSettings;

fuzz_target!(|data: &[u8]| {
    let Ok(fragment) = std::str::from_utf8(data) else { return };
    let page = RunSettings::preset("tiny").expect("the tiny preset");
    if let Ok(opened) = Link::decode(fragment, &page) {
        // what a link set, a link carries: it shares, and opens back to the same
        let again = Link::share(opened.settings.clone(), opened.corpus.clone()).expect("opened settings share");
        let back = Link::decode(&again, &page).expect("a shared link opens");
        assert_eq!(back.settings, opened.settings);
        assert_eq!(back.corpus, opened.corpus);
    }
});

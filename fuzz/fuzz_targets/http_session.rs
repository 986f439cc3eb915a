//! The HTTP session under arbitrary client bytes: no panic, no loop, and never a
//! request reaching the backend that sluice did not route (see `sluice::http::check`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sluice::http::check::exercise(data);
});

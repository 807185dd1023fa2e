#![no_main]
// The harness lives in the library (`xds_client::fuzzing::response`) so the corpus also replays on stable in CI.
libfuzzer_sys::fuzz_target!(|data: &[u8]| xds_client::fuzzing::response(data));

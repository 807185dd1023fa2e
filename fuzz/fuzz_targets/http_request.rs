#![no_main]
// The harness lives in the library (`proxy::fuzzing::http_request`) so the corpus also replays on stable in CI.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxy::fuzzing::http_request(data));

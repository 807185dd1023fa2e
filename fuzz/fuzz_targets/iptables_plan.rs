#![no_main]
// The harness lives in the library (`iptables_init::fuzzing::plan`) so the corpus also replays on stable in CI.
libfuzzer_sys::fuzz_target!(|data: &[u8]| iptables_init::fuzzing::plan(data));

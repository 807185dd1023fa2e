//! Benchmarks and the load-test harness for Isthmus: criterion micro-benches (`benches/`),
//! `isthmus-load` (an open-loop, fixed-rate generator with coordinated-omission correction)
//! and `compare` (the side-by-side run against nginx, HAProxy and Envoy).

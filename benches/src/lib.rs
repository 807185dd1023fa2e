//! Benchmarks and the load-test harness for Isthmus (criterion benches land with the performance issue).

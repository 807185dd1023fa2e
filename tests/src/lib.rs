//! Helpers for the cross-crate integration tests that start the real `isthmus` binary.

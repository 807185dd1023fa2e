//! `iptables-init`: the pod's traffic capture for the Isthmus sidecar, with Istio's
//! `istio-iptables` flags and rules (spec capture-injection §1), so Istio's injector
//! conventions and annotations carry over.
//!
//! Split as the rest of Isthmus is: [`options`] validates the inputs, [`plan`] is a pure
//! function from options to `iptables-restore` text (golden-tested), and [`apply`] is the thin
//! part that detects the back end and runs the binaries. It never touches chains other than
//! `ISTIO_*` except for the jumps into them.
#![forbid(unsafe_code)]

pub mod apply;
#[doc(hidden)]
pub mod fuzzing;
pub mod options;
pub mod plan;

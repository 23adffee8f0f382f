//! The STT conformance suite: scripted traces replayed against an implementation under
//! test on a virtual clock. See `docs/conformance.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adapter;
pub mod coverage;
pub mod fuzzing;
pub mod iut;
pub mod matching;
pub mod report;
pub mod runner;
pub mod shim;
pub mod sim;
pub mod suite;
pub mod trace;

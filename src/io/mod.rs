//! The system-call layer: everything `unsafe` in sluice lives under this module.

pub mod fdpass;
pub mod sys;
pub mod uring;

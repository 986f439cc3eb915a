//! Backend health: one state per backend address (UP, DOWN, DRAIN, MAINT), fed by the
//! shards' passive observation (failed connects), the snapshot's drains and active
//! checks run on a thread of their own, never on a shard.
//!
//! - `state.rs`: the state word the shards load once per pick, and the record the
//!   admin port shows.
//! - `checker.rs`: the health thread — one mio loop probing every checked address on
//!   its own phase, the one place a state changes and is logged.
//! - `probe.rs`: one check in flight (TCP connect; HTTP request and response head).
//! - `ramp.rs`: slow start's steps, for the control thread's table rebuilds.

mod checker;
mod probe;
pub mod ramp;
mod state;

pub use checker::{spawn, RampNotify};
pub use probe::{response_head, Head};
pub use state::{Admin, CheckResult, CheckStatus, Health, Look, Passive, Record, State};

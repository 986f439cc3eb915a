//! HTTP/1.1, sans I/O: heads ([`head`]), bodies ([`body`]), one client connection's
//! state machine ([`session`]) and request routing ([`route`]). Shards drive these
//! with bytes; nothing here touches a socket or the clock.

pub mod body;
#[doc(hidden)]
pub mod check;
pub mod head;
pub mod route;
pub mod session;

pub use session::{BackendFault, Finished, Forward, Limits, Phase, Session, Tunnel};

//! The Marathon control plane: turning Marathon's apps and tasks into services.

pub mod apps;
mod bluegreen;
pub mod client;
pub mod events;
pub mod health;
pub mod labels;
pub mod poller;

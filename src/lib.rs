//! sluice: a TCP load balancer for edge hosts. See ARCHITECTURE.md for the map.

pub mod acme;
pub mod admin;
pub mod anycast;
pub mod balance;
pub mod bench;
pub mod cli;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod demo;
pub mod health;
pub mod http;
pub mod io;
pub mod marathon;
pub mod proxy;
pub mod snapshot;
pub mod stats;
pub mod tls;

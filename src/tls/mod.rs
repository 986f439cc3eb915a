//! TLS at the edge: certificates (loaded the way HAProxy reads `crt`, chosen by SNI),
//! the peek at a ClientHello that routes a connection before any byte is consumed, and
//! rustls's server side driven by the shard's own buffers.

pub mod hello;

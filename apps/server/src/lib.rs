//! wxlogin's server: the inbound HTTP adapter ([`http`], which knows only the domain's inbound
//! port), the configuration ([`config`]: settings parsed once into typed configuration) and
//! the composition root ([`wiring`], the only module that names the adapters). `main.rs` only
//! parses the command line and calls into here.

pub mod config;
pub mod http;
pub mod telemetry;
pub mod wiring;

pub use config::{Config, Settings, WeChatMode};
pub use wiring::{RunningServer, spawn, spawn_with_mock};

//! wxlogin's inbound HTTP adapter (poem-openapi), its configuration and the composition root.
//! `main.rs` only parses the command line and calls into here.

pub mod api;
pub mod config;
pub mod dto;
pub mod error;
pub mod telemetry;
pub mod wiring;

pub use config::{Settings, WeChatMode};
pub use wiring::{RunningServer, spawn, spawn_with_mock};

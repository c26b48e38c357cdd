//! wxlogin's server: the inbound HTTP adapter ([`http`], which knows only the domain's inbound
//! port) and the composition root — [`config`] (settings parsed once into typed configuration,
//! including each adapter's options), [`wiring`] (opens the adapters the configuration picks
//! and runs) and `main.rs` (the command line). Only the composition root names adapters.

pub mod config;
pub mod http;
pub mod listener;
pub mod metered;
pub mod metrics;
pub mod telemetry;
pub mod wechat_cap;
pub mod wiring;

pub use config::{Config, Settings, WeChatAppSettings, WeChatMode};
pub use wiring::{RunningServer, spawn, spawn_with_mock, spawn_with_mocks};

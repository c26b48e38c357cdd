//! wxlogin's domain: the user model, the login state machine, the ports (traits) that storage,
//! WeChat and crypto adapters implement, and the service holding the use cases.
//!
//! Must never depend on an IO crate (sqlx, poem, reqwest, tokio's runtime).

pub mod model;
pub mod ports;
pub mod service;
pub mod state;

pub use model::*;
pub use ports::*;
pub use service::*;
pub use state::*;

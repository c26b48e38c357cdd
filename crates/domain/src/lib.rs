//! wxlogin's domain: the user model, the login state machine, the outbound ports (traits) that
//! storage, WeChat and crypto adapters implement, the inbound port (the use cases as one trait,
//! [`LoginService`], which the HTTP adapter calls) and the service implementing it.
//!
//! The operators' side (`/admin/v1`) has ports and a service of its own, in [`admin`].
//!
//! Must never depend on an IO crate (sqlx, poem, reqwest, tokio's runtime).

pub mod admin;
pub mod model;
pub mod ports;
pub mod service;
mod single_flight;
pub mod state;
pub mod usecases;

pub use admin::*;
pub use model::*;
pub use ports::*;
pub use service::*;
pub use state::*;
pub use usecases::*;

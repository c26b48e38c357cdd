//! The use cases of `Service`, with every port mocked (mockall), one module per use case.
//! Each test configures exactly the calls it expects; a port that must not be touched gets
//! `.never()`.

mod authenticate;
mod erase;
mod login;
mod logout;
mod phone;
mod ready;
mod refresh;
mod support;
mod timeouts;
mod update_profile;
mod update_user_info;

//! End-to-end tests for wxlogin live in `tests/`; this crate has no library code.

//! The tests of the store suite, grouped by concern; `store_suite.rs` runs each on every
//! configured database.

pub mod access;
pub mod audit;
pub mod principals;
pub mod replicas;
pub mod retention;
pub mod tokens;

//! The tests of the usage store suite, grouped by concern; `store_suite.rs` runs each on every
//! configured database.

pub mod overrides;
pub mod records;
pub mod reports;

//! The route handlers, one file per group of routes.

pub mod audit;
pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod health;
pub mod models;
pub mod tokenize;
pub mod tokens;

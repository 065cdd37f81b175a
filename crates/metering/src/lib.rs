//! Token metering for the gateway: token counting (Hugging Face tokenizers, tiktoken), service
//! plans and price sheets computed exactly with `rust_decimal`, usage records and their store,
//! and per-project rate limiting. Filled by the metering issues; nothing is exported yet.

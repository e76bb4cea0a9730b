//! `summarize`: batch summarization of URLs and documents. The binary in `main.rs` is a thin
//! shell over these modules; they are a library so that tests, benchmarks and fuzz targets can
//! reach each stage directly. Data flows one way: input → fetch → decode → extract →
//! preselect → chunk → backend → guard → report, orchestrated by `pipeline`.

pub mod address;
pub mod backend;
pub mod cache;
pub mod chunk;
pub mod cli;
pub mod config;
pub mod decode;
pub mod defuse;
pub mod error;
pub mod eval;
pub mod exit;
pub mod expand;
pub mod extract;
pub mod fetch;
pub mod guard;
pub mod input;
pub mod lock;
pub mod model;
pub mod pipeline;
pub mod preselect;
pub mod progress;
pub mod prompt;
pub mod ratelimit;
pub mod render;
pub mod report;
pub mod retry;
pub mod robots;
pub mod sanitize;
pub mod settings;
pub mod shard;
pub mod text;

//! Evaluation metrics: ROUGE against references, reference-free checks, and corpus statistics.

pub mod porter;
pub mod reffree;
pub mod rouge;
pub mod stats;

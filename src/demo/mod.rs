//! The sample CDP: a deterministic (seeded) synthetic data set that the demo,
//! the tests and the benchmarks share. Customers use several identifiers
//! across web, app and e-mail events; some share a device, some send junk
//! identifiers, some events arrive late, and optional long cookie-rotation
//! chains make identity graphs deep.

pub mod audiences;
pub mod dynalite;
pub mod generate;
pub mod legacy;

pub use generate::{load, GenOptions, GenSummary};

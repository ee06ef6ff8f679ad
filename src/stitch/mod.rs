//! Profile stitching (`cdpctl stitch`).
pub mod engine;

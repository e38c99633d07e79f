//! Whole-dataset operations: import and export.
pub mod import;

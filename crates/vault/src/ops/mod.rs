//! Whole-dataset and multi-resource operations: import, export, FHIR Bundles.
pub mod bundle;
pub mod import;

//! Whole-dataset and multi-resource operations: import, export, FHIR Bundles, and what HL7
//! interfaces need.
pub mod bundle;
pub mod hl7_queue;
pub mod import;
pub mod interface;
pub mod retention;

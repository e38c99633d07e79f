//! Untrusted FHIR JSON as import and the API receive it: parse, inspect every entry (types,
//! ids, references, blind-index terms), strip and set server meta, apply field releases.
//! Nothing may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phivault_vault::ops::import::inspect_document;
use phivault_vault::policy::fields::{Release, age_range, apply};
use phivault_vault::records::fhir;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = inspect_document("fuzz", doc.clone());
    let _ = fhir::resource_type(&doc);
    for r in fhir::references(&doc) {
        let _ = fhir::classify_reference(&r.reference);
    }
    let _ = fhir::patient_index_terms(&doc);
    let mut m = doc.clone();
    fhir::strip_server_meta(&mut m);
    fhir::set_server_meta(&mut m, 7, 1_700_000_000_000);
    let birth = doc
        .get("birthDate")
        .and_then(|b| b.as_str())
        .unwrap_or("")
        .to_owned();
    let _ = apply(
        &Release::Only(vec!["name".into()]),
        doc,
        age_range(&birth, 2026),
    );
});

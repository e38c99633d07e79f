//! What a de-identified export may contain: whitelists, never blacklists. A resource type not
//! listed is not exported; an element not listed is dropped, whatever it holds.
//!
//! Not exported at all: people and places other than the patient (Practitioner,
//! PractitionerRole, Organization, Location, Person), relatives and household members
//! (RelatedPerson, FamilyMemberHistory), documents, media and binaries (attachments, photos),
//! devices (serial numbers), financial resources (Claim, Coverage, ExplanationOfBenefit:
//! account and plan numbers), Provenance and AuditEvent (who recorded what, when), and every
//! type not in [`EXPORTED`].

/// The coded and measured values of an Observation and of its components.
const OBSERVATION_VALUES: &[&str] = &[
    "valueQuantity",
    "valueCodeableConcept",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
    "dataAbsentReason",
    "interpretation",
    "referenceRange",
];

/// The exported resource types and, for each, the top-level elements kept (an Observation
/// also keeps [`OBSERVATION_VALUES`]). `resourceType` and `id` (replaced by a pseudonym) are
/// always kept; `meta` is replaced.
#[rustfmt::skip]
pub(crate) const EXPORTED: &[(&str, &[&str])] = &[
    ("Patient", &[
        "active", "gender", "birthDate", "deceasedBoolean", "deceasedDateTime", "address",
        "maritalStatus", "multipleBirthBoolean", "communication", "extension"]),
    ("Encounter", &[
        "status", "class", "type", "serviceType", "priority", "subject", "participant", "period",
        "length", "reasonCode", "reasonReference", "diagnosis", "hospitalization",
        "serviceProvider", "partOf", "basedOn", "episodeOfCare"]),
    ("Condition", &[
        "clinicalStatus", "verificationStatus", "category", "severity", "code", "bodySite",
        "subject", "encounter", "onsetDateTime", "onsetAge", "onsetPeriod", "onsetRange",
        "abatementDateTime", "abatementAge", "abatementPeriod", "abatementRange", "recordedDate",
        "recorder", "asserter", "stage", "evidence"]),
    ("Observation", &[
        "status", "category", "code", "subject", "encounter", "effectiveDateTime",
        "effectivePeriod", "effectiveInstant", "issued", "performer", "bodySite", "method",
        "specimen", "hasMember", "derivedFrom", "component", "basedOn", "partOf"]),
    ("Procedure", &[
        "status", "statusReason", "category", "code", "subject", "encounter", "performedDateTime",
        "performedPeriod", "performedAge", "performedRange", "recorder", "asserter", "performer",
        "reasonCode", "reasonReference", "bodySite", "outcome", "complication", "followUp",
        "usedCode", "basedOn", "partOf"]),
    ("DiagnosticReport", &[
        "status", "category", "code", "subject", "encounter", "effectiveDateTime",
        "effectivePeriod", "issued", "performer", "resultsInterpreter", "specimen", "result",
        "conclusionCode", "basedOn"]),
    ("MedicationRequest", &[
        "status", "statusReason", "intent", "category", "priority", "doNotPerform",
        "reportedBoolean", "medicationCodeableConcept", "medicationReference", "subject",
        "encounter", "authoredOn", "requester", "performer", "reasonCode", "reasonReference",
        "courseOfTherapyType", "dosageInstruction", "dispenseRequest", "substitution", "basedOn"]),
    ("MedicationStatement", &[
        "status", "statusReason", "category", "medicationCodeableConcept", "medicationReference",
        "subject", "context", "effectiveDateTime", "effectivePeriod", "dateAsserted",
        "informationSource", "derivedFrom", "reasonCode", "reasonReference", "dosage", "basedOn",
        "partOf"]),
    ("MedicationAdministration", &[
        "status", "statusReason", "category", "medicationCodeableConcept", "medicationReference",
        "subject", "context", "effectiveDateTime", "effectivePeriod", "performer", "reasonCode",
        "reasonReference", "request", "dosage", "partOf"]),
    ("Immunization", &[
        "status", "statusReason", "vaccineCode", "patient", "encounter", "occurrenceDateTime",
        "recorded", "primarySource", "reportOrigin", "site", "route", "doseQuantity", "performer",
        "reasonCode", "reasonReference", "isSubpotent", "subpotentReason", "programEligibility",
        "fundingSource"]),
    ("AllergyIntolerance", &[
        "clinicalStatus", "verificationStatus", "type", "category", "criticality", "code",
        "patient", "encounter", "onsetDateTime", "onsetAge", "onsetPeriod", "onsetRange",
        "recordedDate", "recorder", "asserter", "lastOccurrence", "reaction"]),
];

/// Elements kept inside a kept element, at any depth (with [`OBSERVATION_VALUES`]): the parts
/// of codes, quantities, ranges, periods, references, dosages and the backbone elements of the
/// types above. Not here, so dropped wherever they occur: `text`, `note`, `comment`,
/// `description`, `display` (except a Coding's), `name`, `identifier`, `telecom`, `photo`,
/// `contact`, `url` (outside the extensions kept), `valueString`, `valueAttachment`,
/// `contained`, `extension`, …
#[rustfmt::skip]
const NESTED: &[&str] = &[
    // Coding, CodeableConcept; Quantity, Age, Duration, Money; Range, Ratio, Period
    "coding", "system", "version", "code", "display", "userSelected", "value", "unit",
    "comparator", "currency", "low", "high", "numerator", "denominator", "start", "end",
    // Reference (its `reference` is rewritten)
    "reference", "type",
    // Encounter.participant, .diagnosis, .hospitalization
    "period", "individual", "condition", "use", "rank", "admitSource", "reAdmission",
    "dischargeDisposition",
    // Condition.stage, .evidence; Observation.referenceRange
    "summary", "assessment", "detail", "appliesTo", "age",
    // Dosage, Timing
    "sequence", "timing", "asNeededBoolean", "asNeededCodeableConcept", "site", "route",
    "method", "doseAndRate", "maxDosePerPeriod", "maxDosePerAdministration",
    "maxDosePerLifetime", "additionalInstruction", "doseRange", "doseQuantity", "rateRatio",
    "rateRange", "rateQuantity", "dose", "event", "repeat", "boundsDuration", "boundsRange",
    "boundsPeriod", "count", "countMax", "duration", "durationMax", "durationUnit", "frequency",
    "frequencyMax", "periodMax", "periodUnit", "dayOfWeek", "timeOfDay", "when", "offset",
    // MedicationRequest.dispenseRequest, .substitution
    "validityPeriod", "numberOfRepeatsAllowed", "quantity", "expectedSupplyDuration",
    "initialFill", "dispenseInterval", "allowedBoolean", "allowedCodeableConcept", "reason",
    // AllergyIntolerance.reaction; performers (Immunization, Procedure, MedicationAdministration)
    "substance", "manifestation", "onset", "severity", "exposureRoute", "function", "actor",
    "onBehalfOf",
    // Patient.communication
    "language", "preferred",
];

/// Whether an element is kept at the top level of a resource of this type; `None` when the
/// type is not exported.
pub(crate) fn keeps_top(rtype: &str, key: &str) -> Option<bool> {
    let (_, keys) = EXPORTED.iter().find(|(t, _)| *t == rtype)?;
    Some(keys.contains(&key) || (rtype == "Observation" && OBSERVATION_VALUES.contains(&key)))
}

/// Whether an element is kept inside a kept element.
pub(crate) fn keeps_nested(key: &str) -> bool {
    NESTED.contains(&key) || OBSERVATION_VALUES.contains(&key)
}

/// A backbone element missing one of these after cleaning is dropped whole (it would not be
/// valid FHIR without it).
pub(crate) const NESTED_REQUIRED: &[(&str, &str)] = &[
    ("reaction", "manifestation"),
    ("diagnosis", "condition"),
    ("performer", "actor"),
    ("component", "code"),
    ("communication", "language"),
];

/// Elements a resource must still have after cleaning (each inner list: one of them), or it is
/// not exported (counted as incomplete).
pub(crate) fn required(rtype: &str) -> &'static [&'static [&'static str]] {
    const MEDICATION: &[&str] = &["medicationCodeableConcept", "medicationReference"];
    match rtype {
        "Encounter" => &[&["status"], &["class"]],
        "Condition" => &[&["subject"]],
        "Observation" | "DiagnosticReport" => &[&["status"], &["code"]],
        "Procedure" => &[&["status"], &["subject"]],
        "MedicationRequest" => &[&["status"], &["intent"], &["subject"], MEDICATION],
        "MedicationStatement" => &[&["status"], &["subject"], MEDICATION],
        "MedicationAdministration" => &[
            &["status"],
            &["subject"],
            MEDICATION,
            &["effectiveDateTime", "effectivePeriod"],
        ],
        "Immunization" => &[
            &["status"],
            &["vaccineCode"],
            &["patient"],
            &["occurrenceDateTime"],
        ],
        "AllergyIntolerance" => &[&["patient"]],
        _ => &[],
    }
}

/// Elements that are FHIR `instant`s (full precision required): Safe Harbor cannot cut them to
/// a year, so it drops them. (`recorded` is an instant in Provenance and a dateTime in
/// Immunization; it goes either way.)
pub(crate) const INSTANTS: &[&str] = &["issued", "recorded", "effectiveInstant", "lastUpdated"];

/// String elements that are codes, URIs or units, never dates, left as they are even when they
/// look like one (a code `"2019"`).
pub(crate) const NOT_DATES: &[&str] = &[
    "code",
    "system",
    "version",
    "unit",
    "reference",
    "url",
    "type",
    "use",
    "status",
    "currency",
    "comparator",
    "display",
];

/// Elements that point at the patient the record is about; a conditional reference there
/// (`Patient?identifier=…`) is the record's own patient.
pub(crate) const PATIENT_ELEMENTS: &[&str] = &["subject", "patient", "beneficiary"];

/// The Patient extensions kept (US Core birth sex, race and ethnicity, coded parts only).
pub(crate) const PATIENT_EXTENSIONS: &[&str] = &[
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
];

/// The parts kept inside those extensions (the free-text `text` part is not).
pub(crate) const EXTENSION_PARTS: &[&str] = &["ombCategory", "detailed"];

/// The extension that says a patient's age is 90 or older (its birth date is then removed).
pub(crate) const AGE_90_OR_OLDER: &str = "urn:phivault:fhir:extension:age-90-or-older";

/// The security label of every exported resource (HL7 v3 ObservationValue).
pub(crate) const SECURITY_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// The exported type names.
pub fn exported_types() -> impl Iterator<Item = &'static str> {
    EXPORTED.iter().map(|(t, _)| *t)
}

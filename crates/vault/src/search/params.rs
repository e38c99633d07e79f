//! The search parameters per resource type: their kind and the elements they read. The
//! CapabilityStatement and the API documentation are generated from this table.

/// How a parameter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Case- and accent-insensitive prefix (`:exact`: equal).
    Str,
    /// `system|code`, `|code` or `code`.
    Token,
    Date,
    Reference,
    /// Soundex of the name.
    Phonetic,
    /// The logical id.
    Id,
}

impl Kind {
    /// The FHIR search parameter type.
    pub fn fhir_type(self) -> &'static str {
        match self {
            Kind::Str | Kind::Phonetic => "string",
            Kind::Token | Kind::Id => "token",
            Kind::Date => "date",
            Kind::Reference => "reference",
        }
    }
}

/// One search parameter of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDef {
    pub name: &'static str,
    pub kind: Kind,
    /// Dotted element paths (arrays are walked through).
    pub paths: &'static [&'static str],
    /// For contact points: the `ContactPoint.system` values it is restricted to.
    pub systems: &'static [&'static str],
    pub doc: &'static str,
}

const fn p(
    name: &'static str,
    kind: Kind,
    paths: &'static [&'static str],
    doc: &'static str,
) -> ParamDef {
    ParamDef {
        name,
        kind,
        paths,
        systems: &[],
        doc,
    }
}

const ID: ParamDef = p("_id", Kind::Id, &["id"], "The logical id");
const LAST_UPDATED: ParamDef = p(
    "_lastUpdated",
    Kind::Date,
    &["meta.lastUpdated"],
    "When the record last changed",
);
const IDENTIFIER: ParamDef = p(
    "identifier",
    Kind::Token,
    &["identifier"],
    "An identifier (system|value)",
);
const PATIENT: ParamDef = p(
    "patient",
    Kind::Reference,
    &["subject", "patient"],
    "The patient (Patient/id or id)",
);
const SUBJECT: ParamDef = p(
    "subject",
    Kind::Reference,
    &["subject"],
    "The subject (Patient/id)",
);
const STATUS: ParamDef = p("status", Kind::Token, &["status"], "The status");
const CATEGORY: ParamDef = p("category", Kind::Token, &["category"], "The category");
const CODE: ParamDef = p("code", Kind::Token, &["code"], "The code (system|code)");
const CLINICAL_STATUS: ParamDef = p(
    "clinical-status",
    Kind::Token,
    &["clinicalStatus"],
    "The clinical status",
);

const fn contact(
    name: &'static str,
    systems: &'static [&'static str],
    doc: &'static str,
) -> ParamDef {
    ParamDef {
        name,
        kind: Kind::Token,
        paths: &["telecom"],
        systems,
        doc,
    }
}

const PATIENT_PARAMS: &[ParamDef] = &[
    ID,
    IDENTIFIER,
    p(
        "name",
        Kind::Str,
        &[
            "name.family",
            "name.given",
            "name.prefix",
            "name.suffix",
            "name.text",
        ],
        "Any part of a name (starts with; case and accents ignored)",
    ),
    p(
        "family",
        Kind::Str,
        &["name.family"],
        "The family name (starts with)",
    ),
    p(
        "given",
        Kind::Str,
        &["name.given"],
        "A given name (starts with)",
    ),
    p(
        "phonetic",
        Kind::Phonetic,
        &["name.family", "name.given"],
        "A family or given name that sounds alike (Soundex)",
    ),
    p("birthdate", Kind::Date, &["birthDate"], "The birth date"),
    p(
        "gender",
        Kind::Token,
        &["gender"],
        "The administrative gender",
    ),
    p(
        "address-postalcode",
        Kind::Str,
        &["address.postalCode"],
        "A postal code (starts with)",
    ),
    p(
        "address-city",
        Kind::Str,
        &["address.city"],
        "A city (starts with)",
    ),
    contact("telecom", &[], "Any contact point's value"),
    contact(
        "phone",
        &["phone", "sms"],
        "A phone number (digits compared)",
    ),
    contact("email", &["email"], "An email address (case ignored)"),
    p(
        "general-practitioner",
        Kind::Reference,
        &["generalPractitioner"],
        "The general practitioner (Practitioner/id)",
    ),
    p(
        "organization",
        Kind::Reference,
        &["managingOrganization"],
        "The managing organization (Organization/id)",
    ),
    LAST_UPDATED,
];

const OBSERVATION: &[ParamDef] = &[
    ID,
    IDENTIFIER,
    PATIENT,
    SUBJECT,
    CATEGORY,
    CODE,
    p(
        "date",
        Kind::Date,
        &["effectiveDateTime", "effectivePeriod", "effectiveInstant"],
        "When observed (effective[x])",
    ),
    STATUS,
    LAST_UPDATED,
];

const CONDITION: &[ParamDef] = &[
    ID,
    IDENTIFIER,
    PATIENT,
    SUBJECT,
    CATEGORY,
    CLINICAL_STATUS,
    CODE,
    p(
        "onset-date",
        Kind::Date,
        &["onsetDateTime", "onsetPeriod"],
        "The onset (onset[x])",
    ),
    LAST_UPDATED,
];

const ENCOUNTER: &[ParamDef] = &[
    ID,
    IDENTIFIER,
    PATIENT,
    SUBJECT,
    p("date", Kind::Date, &["period"], "The encounter's period"),
    STATUS,
    p("class", Kind::Token, &["class"], "The class (a Coding)"),
    p("type", Kind::Token, &["type"], "The type"),
    LAST_UPDATED,
];

const DIAGNOSTIC_REPORT: &[ParamDef] = &[
    ID,
    IDENTIFIER,
    PATIENT,
    SUBJECT,
    CATEGORY,
    CODE,
    p(
        "date",
        Kind::Date,
        &["effectiveDateTime", "effectivePeriod"],
        "The clinically relevant time (effective[x])",
    ),
    STATUS,
    LAST_UPDATED,
];

const IMMUNIZATION: &[ParamDef] = &[
    ID,
    IDENTIFIER,
    PATIENT,
    p("date", Kind::Date, &["occurrenceDateTime"], "When given"),
    STATUS,
    p("vaccine-code", Kind::Token, &["vaccineCode"], "The vaccine"),
    LAST_UPDATED,
];

const MEDICATION_REQUEST: &[ParamDef] = &[
    ID,
    IDENTIFIER,
    PATIENT,
    SUBJECT,
    p("intent", Kind::Token, &["intent"], "The intent"),
    STATUS,
    p(
        "medication",
        Kind::Reference,
        &["medicationReference"],
        "The medication (Medication/id)",
    ),
    p(
        "code",
        Kind::Token,
        &["medicationCodeableConcept"],
        "The medication's code",
    ),
    p("authoredon", Kind::Date, &["authoredOn"], "When written"),
    LAST_UPDATED,
];

const ALLERGY: &[ParamDef] = &[ID, IDENTIFIER, PATIENT, CLINICAL_STATUS, CODE, LAST_UPDATED];

const PROCEDURE: &[ParamDef] = &[
    ID,
    IDENTIFIER,
    PATIENT,
    SUBJECT,
    p(
        "date",
        Kind::Date,
        &["performedDateTime", "performedPeriod"],
        "When performed (performed[x])",
    ),
    CODE,
    STATUS,
    LAST_UPDATED,
];

const DOCUMENT_REFERENCE: &[ParamDef] = &[
    ID,
    IDENTIFIER,
    PATIENT,
    SUBJECT,
    CATEGORY,
    p("type", Kind::Token, &["type"], "The kind of document"),
    p(
        "date",
        Kind::Date,
        &["date"],
        "When the reference was created",
    ),
    STATUS,
    LAST_UPDATED,
];

const PROVENANCE: &[ParamDef] = &[
    ID,
    p(
        "target",
        Kind::Reference,
        &["target"],
        "What the provenance is about",
    ),
    PATIENT,
    LAST_UPDATED,
];

const OTHER: &[ParamDef] = &[ID, IDENTIFIER, LAST_UPDATED];

/// The types searched by patient (their records live in the patient's compartment).
pub const CLINICAL: [&str; 10] = [
    "Observation",
    "Condition",
    "Encounter",
    "DiagnosticReport",
    "Immunization",
    "MedicationRequest",
    "AllergyIntolerance",
    "Procedure",
    "DocumentReference",
    "Provenance",
];

/// The parameters of a type (every type has at least `_id`, `identifier`, `_lastUpdated`).
pub fn of_type(rtype: &str) -> &'static [ParamDef] {
    match rtype {
        "Patient" => PATIENT_PARAMS,
        "Observation" => OBSERVATION,
        "Condition" => CONDITION,
        "Encounter" => ENCOUNTER,
        "DiagnosticReport" => DIAGNOSTIC_REPORT,
        "Immunization" => IMMUNIZATION,
        "MedicationRequest" => MEDICATION_REQUEST,
        "AllergyIntolerance" => ALLERGY,
        "Procedure" => PROCEDURE,
        "DocumentReference" => DOCUMENT_REFERENCE,
        "Provenance" => PROVENANCE,
        _ => OTHER,
    }
}

pub fn find(rtype: &str, name: &str) -> Option<&'static ParamDef> {
    of_type(rtype).iter().find(|d| d.name == name)
}

/// The result parameters every search takes.
pub const RESULT_PARAMS: [&str; 8] = [
    "_count",
    "_sort",
    "_summary",
    "_total",
    "_elements",
    "_include",
    "_revinclude",
    "_offset",
];

/// What `_sort` orders by (a `-` before one: descending).
pub const SORTS: [&str; 5] = ["_id", "_lastUpdated", "date", "birthdate", "family"];

/// The `_include` values a type takes: its reference parameters.
pub fn includes(rtype: &str) -> Vec<String> {
    of_type(rtype)
        .iter()
        .filter(|d| d.kind == Kind::Reference)
        .map(|d| format!("{rtype}:{}", d.name))
        .collect()
}

/// The `_revinclude` values a type takes: reference parameters of other types that can point
/// at it.
pub fn revincludes(rtype: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in CLINICAL {
        for d in of_type(t).iter().filter(|d| d.kind == Kind::Reference) {
            let fits = match d.name {
                "patient" | "subject" => rtype == "Patient",
                "target" => true,
                "medication" => rtype == "Medication",
                _ => false,
            };
            if fits {
                out.push(format!("{t}:{}", d.name));
            }
        }
    }
    out
}

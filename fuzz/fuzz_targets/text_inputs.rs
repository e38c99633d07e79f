//! Every small parser of untrusted text: ids, purposes, scopes, audit checkpoints, policy
//! files, TOTP codes, reference strings. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = phivault_core::OrgId::parse(s);
    let _ = phivault_core::ResourceId::parse(s);
    let _ = phivault_core::ResourceType::parse(s);
    let _ = phivault_core::Role::parse(s);
    let _ = phivault_vault::policy::Purpose::parse(s);
    let _ = phivault_vault::auth::parse_scopes(s);
    let _ = phivault_vault::auth::Scope::parse(s);
    let _ = phivault_vault::audit::verify::Checkpoint::parse(s);
    let _ = phivault_vault::policy::fields::FieldPolicy::from_toml(s);
    let _ = phivault_vault::records::fhir::classify_reference(s);
    let _ = phivault_crypto::totp::check(b"12345678901234567890", s, 59);
    let _ = phivault_crypto::totp::seed_from_base32(s);
    let _ = phivault_vault::policy::fields::age_range(s, 2026);
});

//! The HL7 v2 path of untrusted bytes: the MLLP framer fed in arbitrary chunks, the parser on
//! every frame, the FHIR mapping of what parses, and the ACK built for it. Nothing may panic;
//! an ACK must always parse back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phivault_hl7::ack::{AckCode, AckError, ErrorCode, build_ack};
use phivault_hl7::{Event, Framer, map, parse};

fuzz_target!(|data: &[u8]| {
    // The framer, with the input split at a point the input chooses.
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (a, b) = data.split_at(cut);
    let mut f = Framer::new(4096);
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for chunk in [a, b] {
        for e in f.push(chunk) {
            if let Event::Frame(m) = e {
                frames.push(m);
            }
        }
    }
    // The parser on each frame, and on the raw input itself.
    frames.push(data.to_vec());
    for raw in frames {
        let parsed = parse::parse(&raw);
        let (msg, err) = match &parsed {
            Ok(m) => {
                if let Some(pid) = m.segment("PID") {
                    let _ = map::patient_elements(pid);
                }
                let _ = map::observations(m);
                let event = m.message_type().1;
                if let Some(e) = map::encounter(m, event) {
                    let _ = map::merge_encounter(None, e, event);
                }
                let _ = map::reports(m);
                let _ = map::orders(m);
                let _ = map::document(m);
                let _ = map::appointment(m, event);
                let _ = map::immunizations(m);
                (Some(m), None)
            }
            Err(e) => (None, Some(AckError::from_parse(e))),
        };
        let err = err.unwrap_or_else(|| AckError::new(ErrorCode::DataType, "x").at("PID", 1, 3));
        let ack = build_ack(msg, AckCode::Error, Some(&err), "ACK1", "20260101000000");
        assert!(parse::parse(ack.as_bytes()).is_ok(), "an ACK must parse");
    }
});

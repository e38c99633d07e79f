//! MDM^T02: TXA and the OBX text → a FHIR DocumentReference (the text as a base64
//! text/plain attachment; the vault seals it like any record).
use super::{codeable, fhir_datetime, obx_text, person, put, text};
use crate::ack::{AckError, ErrorCode};
use crate::parse::Message;
use base64::Engine;
use serde_json::{Map, Value, json};

/// The DocumentReference of an MDM^T02 (without id and subject), and its unique document
/// number (TXA-12) that names it across messages, if given.
pub fn document(msg: &Message) -> Result<(Option<String>, Map<String, Value>), AckError> {
    let txa = msg.segment("TXA").ok_or_else(|| {
        AckError::new(ErrorCode::SegmentSequence, "an MDM^T02 needs a TXA segment").at("TXA", 1, 0)
    })?;
    let lines: Vec<String> = msg
        .segments_of("OBX")
        .map(obx_text)
        .filter(|t| !t.is_empty())
        .collect();
    if lines.is_empty() {
        return Err(AckError::new(
            ErrorCode::RequiredFieldMissing,
            "an MDM^T02 needs the document text in OBX-5",
        )
        .at("OBX", 1, 5));
    }
    let body = lines.join("\n");
    let mut d = Map::new();
    put(&mut d, "resourceType", json!("DocumentReference"));
    let number = txa.component(12, 1);
    if let Some(n) = number {
        let mut id = Map::new();
        put(&mut id, "system", text(txa.component(12, 2)));
        put(&mut id, "value", json!(n));
        put(&mut d, "masterIdentifier", Value::Object(id));
    }
    // TXA-19 availability (table 0275), TXA-17 completion (table 0271).
    let status = match txa.value(19) {
        Some("CA") => "entered-in-error",
        Some("OB") => "superseded",
        _ => "current",
    };
    put(&mut d, "status", json!(status));
    let doc_status = match txa.value(17) {
        Some("AU" | "LA") => Some("final"),
        Some("DI" | "DO" | "IN" | "IP" | "PA") => Some("preliminary"),
        _ => None,
    };
    put(&mut d, "docStatus", json!(doc_status));
    put(&mut d, "type", codeable(txa, 2, 1).unwrap_or(Value::Null));
    // `date` is an instant: only a time with its offset.
    let date = [4, 6]
        .into_iter()
        .filter_map(|f| txa.value(f).and_then(fhir_datetime))
        .find(|t| t.contains('T'));
    put(&mut d, "date", json!(date));
    let authors: Vec<Value> = (1..=txa.repetitions(9))
        .filter_map(|r| person(txa, 9, r))
        .collect();
    put(&mut d, "author", Value::Array(authors));
    let mut attachment = Map::new();
    put(&mut attachment, "contentType", json!("text/plain"));
    put(
        &mut attachment,
        "data",
        json!(base64::engine::general_purpose::STANDARD.encode(body.as_bytes())),
    );
    put(&mut attachment, "title", text(txa.component(2, 2)));
    put(&mut d, "content", json!([{"attachment": attachment}]));
    let key = number.map(|n| format!("{n}^{}", txa.component(12, 2).unwrap_or("")));
    Ok((key, d))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::parse::parse;
    #[test]
    fn txa_and_obx_to_document_reference() {
        let m = parse(b"MSH|^~\\&|TX|H|B|C|2026||MDM^T02|1|P|2.5\rPID|1||1^^^H\r\
            TXA|1|DS^Discharge summary^HL70270|TX|20260105083000-0500|||||dr1^Welby^Marcus|||DOC-9^TX|||||AU||AV\r\
            OBX|1|TX|DS^Discharge summary||Patient went home.~Follow up in 2 weeks.\rOBX|2|TX|DS||Signed.\r").unwrap();
        let (key, d) = document(&m).unwrap();
        assert_eq!(key.as_deref(), Some("DOC-9^TX"));
        assert_eq!(d["masterIdentifier"]["value"], "DOC-9");
        assert_eq!(
            (d["status"].as_str(), d["docStatus"].as_str()),
            (Some("current"), Some("final"))
        );
        assert_eq!(d["date"], "2026-01-05T08:30:00-05:00");
        assert_eq!(d["author"][0]["display"], "Welby, Marcus");
        let data = d["content"][0]["attachment"]["data"].as_str().unwrap();
        let text = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(text, b"Patient went home.\nFollow up in 2 weeks.\nSigned.");
        let empty =
            parse(b"MSH|^~\\&|TX|H|B|C|2026||MDM^T02|1|P|2.5\rPID|1||1\rTXA|1|DS\r").unwrap();
        assert_eq!(document(&empty).unwrap_err().field, Some(5));
    }
}

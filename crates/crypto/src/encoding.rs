//! Unambiguous byte encodings for associated data and MAC inputs: every component is
//! length-prefixed, so ("ab","c") and ("a","bc") never encode alike.

pub(crate) fn tuple(label: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + parts.iter().map(|p| p.len() + 4).sum::<usize>());
    push(&mut out, b"phivault.v1");
    push(&mut out, label.as_bytes());
    for p in parts {
        push(&mut out, p);
    }
    out
}

fn push(out: &mut Vec<u8>, part: &[u8]) {
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(part);
}

#[cfg(test)]
mod tests {
    #[test]
    fn components_do_not_run_together() {
        assert_ne!(
            super::tuple("x", &[b"ab", b"c"]),
            super::tuple("x", &[b"a", b"bc"])
        );
        assert_ne!(super::tuple("x", &[b""]), super::tuple("x", &[]));
    }
}

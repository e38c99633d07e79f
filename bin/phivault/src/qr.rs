//! A QR code drawn with Unicode half blocks, for TOTP enrollment in a terminal.

/// The QR code of `text`, or a note that it could not be drawn.
pub fn terminal_qr(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
        Err(_) => "(the QR code could not be drawn; enter the secret by hand)".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_a_block_of_lines() {
        let q = super::terminal_qr("otpauth://totp/phivault:admin?secret=JBSWY3DPEHPK3PXP");
        assert!(q.lines().count() > 10);
        assert!(q.contains('█') || q.contains('▀') || q.contains('▄'));
    }
}

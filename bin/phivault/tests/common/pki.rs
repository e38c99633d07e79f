//! Client certificates for the MLLP listener's TLS, and an independent TLS client (Python's
//! ssl module, `support/mllp_tls_send.py`) that presents them.
use super::mllp::python;
use super::repo_root;
use std::path::Path;
use std::process::Command;

/// A CA and client certificates made with openssl: `lab`, `clinic` and `rogue` signed by the CA
/// (`ca.pem`), `stray` by another CA. Each `NAME.pem`/`NAME.key` is valid for the DNS name
/// `NAME.example.org`, except `multi` (by the CA), valid for both `lab.` and `clinic.example.org`.
pub fn client_pki(dir: &Path) {
    let sh = r#"
set -e
for ca in ca other; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=$ca test CA" -keyout $ca.key -out $ca.pem 2>/dev/null
done
for pair in lab:ca clinic:ca rogue:ca stray:other multi:ca; do
  name=${pair%%:*}; ca=${pair##*:}
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name.example.org" \
    -keyout $name.key -out $name.csr 2>/dev/null
  san="DNS:$name.example.org"
  [ $name = multi ] && san="DNS:lab.example.org,DNS:clinic.example.org"
  printf 'subjectAltName=%s\nextendedKeyUsage=clientAuth\n' $san > $name.ext
  openssl x509 -req -in $name.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -days 30 \
    -extfile $name.ext -out $name.pem 2>/dev/null
done
"#;
    let out = Command::new("sh")
        .arg("-c")
        .arg(sh)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends the message in `file` over MLLP in TLS to 127.0.0.1:`port` (trusting `ca`), with the
/// client certificate `who` of `pki` (see [`client_pki`]) when given; returns the ACK (segments
/// on lines), empty when the connection closed without one.
pub fn tls_send(port: u16, ca: &str, pki: &Path, who: Option<&str>, file: &Path) -> String {
    let script = repo_root().join("bin/phivault/tests/support/mllp_tls_send.py");
    let mut cmd = Command::new(python());
    cmd.arg(&script)
        .args(["127.0.0.1", &port.to_string(), ca])
        .arg(file);
    if let Some(w) = who {
        cmd.env("MLLP_CLIENT_CERT", pki.join(format!("{w}.pem")))
            .env("MLLP_CLIENT_KEY", pki.join(format!("{w}.key")));
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

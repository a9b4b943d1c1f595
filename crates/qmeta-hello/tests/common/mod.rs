//! Builders shared by the integration tests: synthetic hellos and record
//! framing, so tests can state exactly which bytes they feed in.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

pub fn captures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/captures")
}

/// (name, record bytes) for every checked-in capture.
pub fn captures() -> Vec<(String, Vec<u8>)> {
    expected()
        .into_iter()
        .map(|row| {
            let bytes = std::fs::read(captures_dir().join(format!("{}.bin", row[0])))
                .expect("capture file listed in expected.tsv");
            (row[0].clone(), bytes)
        })
        .collect()
}

/// Rows of expected.tsv: name, ja4, ja4_r, ja3_string, ja3.
pub fn expected() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(captures_dir().join("expected.tsv")).unwrap();
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert!(rows.len() >= 5, "expected.tsv lost rows");
    rows
}

/// The handshake message carried by a sequence of records.
pub fn unframe(records: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let n = usize::from(u16::from_be_bytes([records[pos + 3], records[pos + 4]]));
        out.extend_from_slice(&records[pos + 5..pos + 5 + n]);
        pos += 5 + n;
    }
    out
}

/// Frames `msg` into handshake records cut at the given offsets.
pub fn frame(msg: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&msg.len())) {
        let part = &msg[start..end];
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
        start = end;
    }
    out
}

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn vec16(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn vec8(body: &[u8]) -> Vec<u8> {
    let mut out = vec![body.len() as u8];
    out.extend_from_slice(body);
    out
}

pub fn ext_sni(name: &[u8]) -> (u16, Vec<u8>) {
    let mut entry = vec![0u8];
    entry.extend(vec16(name));
    (0x0000, vec16(&entry))
}

pub fn ext_alpn(protos: &[&[u8]]) -> (u16, Vec<u8>) {
    let list: Vec<u8> = protos.iter().flat_map(|p| vec8(p)).collect();
    (0x0010, vec16(&list))
}

pub fn ext_u16_list16(typ: u16, values: &[u16]) -> (u16, Vec<u8>) {
    (typ, vec16(&u16s(values)))
}

pub fn ext_versions(values: &[u16]) -> (u16, Vec<u8>) {
    (0x002b, vec8(&u16s(values)))
}

pub fn ext_points(values: &[u8]) -> (u16, Vec<u8>) {
    (0x000b, vec8(values))
}

/// A full ClientHello handshake message (with its 4-byte header).
/// `exts: None` omits the extensions block entirely (pre-TLS 1.2 style).
pub fn hello_msg(version: u16, ciphers: &[u16], exts: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    body.extend_from_slice(&[0x42; 32]);
    body.extend(vec8(&[7; 32]));
    body.extend(vec16(&u16s(ciphers)));
    body.extend(vec8(&[0]));
    if let Some(exts) = exts {
        let block: Vec<u8> = exts
            .iter()
            .flat_map(|(t, d)| {
                let mut e = t.to_be_bytes().to_vec();
                e.extend(vec16(d));
                e
            })
            .collect();
        body.extend(vec16(&block));
    }
    let mut msg = vec![1u8];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend(body);
    msg
}

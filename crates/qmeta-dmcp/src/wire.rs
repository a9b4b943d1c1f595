//! Body encodings (see `docs/DMCP.md`, "Bodies"). Encoding cannot fail;
//! decoding is bounded before it allocates and rejects trailing bytes.

use crate::command::{Command, Reply};
use crate::scope::{valid_path_prefix, valid_sni, Scope, MAX_PATH_PREFIX_LEN};
use crate::state::{MAX_SCOPES, MAX_SET_LEN};
use qmeta_fields::{FieldId, FieldSet};

/// Longest reason text in an ERROR body.
pub const MAX_REASON_LEN: usize = 128;

const SCOPE_BACKEND: u8 = 0;
const SCOPE_SNI: u8 = 1;
const SCOPE_ROUTE: u8 = 2;

/// Why a frame body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("body ends inside a value")]
    Truncated,
    #[error("bytes after the end of the body")]
    TrailingBytes,
    #[error("unknown scope kind {0}")]
    UnknownScopeKind(u8),
    #[error("invalid SNI scope name")]
    BadSni,
    #[error("invalid route path prefix")]
    BadPathPrefix,
    #[error("unknown field id {0}")]
    UnknownField(u16),
    #[error("list not in strictly ascending order")]
    NotCanonical,
    #[error("list longer than allowed")]
    TooLong,
    #[error("text is not printable ASCII")]
    BadText,
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or(BodyError::Truncated)?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, BodyError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, BodyError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, BodyError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn finish(self) -> Result<(), BodyError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(BodyError::TrailingBytes)
        }
    }
}

fn put_scope(out: &mut Vec<u8>, scope: &Scope) {
    match scope {
        Scope::Backend => out.push(SCOPE_BACKEND),
        Scope::Sni(name) => {
            out.push(SCOPE_SNI);
            // Names longer than 255 bytes cannot be valid; the receiver rejects the truncation.
            let bytes = &name.as_bytes()[..name.len().min(255)];
            out.push(bytes.len() as u8);
            out.extend_from_slice(bytes);
        }
        Scope::Route { sni, path_prefix } => {
            // kind 2 | sni_len u8 (0: any SNI) | sni | prefix_len u16 | prefix.
            // Over-long values cannot be valid; the receiver rejects the truncation.
            out.push(SCOPE_ROUTE);
            let name = sni.as_deref().unwrap_or("").as_bytes();
            let name = &name[..name.len().min(255)];
            out.push(name.len() as u8);
            out.extend_from_slice(name);
            let path = &path_prefix.as_bytes()[..path_prefix.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(path.len() as u16).to_be_bytes());
            out.extend_from_slice(path);
        }
    }
}

fn get_scope(r: &mut Reader) -> Result<Scope, BodyError> {
    match r.u8()? {
        SCOPE_BACKEND => Ok(Scope::Backend),
        SCOPE_SNI => {
            let len = r.u8()? as usize;
            let name = std::str::from_utf8(r.take(len)?).map_err(|_| BodyError::BadSni)?;
            if !valid_sni(name) {
                return Err(BodyError::BadSni);
            }
            Ok(Scope::Sni(name.to_string()))
        }
        SCOPE_ROUTE => {
            let len = r.u8()? as usize;
            let sni = match len {
                0 => None,
                _ => {
                    let name = std::str::from_utf8(r.take(len)?).map_err(|_| BodyError::BadSni)?;
                    if !valid_sni(name) {
                        return Err(BodyError::BadSni);
                    }
                    Some(name.to_string())
                }
            };
            let hi = r.u8()?;
            let lo = r.u8()?;
            let len = u16::from_be_bytes([hi, lo]) as usize;
            // Bounded before anything is taken or allocated.
            if len > MAX_PATH_PREFIX_LEN {
                return Err(BodyError::BadPathPrefix);
            }
            let path = std::str::from_utf8(r.take(len)?).map_err(|_| BodyError::BadPathPrefix)?;
            if !valid_path_prefix(path) {
                return Err(BodyError::BadPathPrefix);
            }
            Ok(Scope::Route { sni, path_prefix: path.to_string() })
        }
        other => Err(BodyError::UnknownScopeKind(other)),
    }
}

fn put_set(out: &mut Vec<u8>, set: &FieldSet) {
    out.extend_from_slice(&(set.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for f in set.iter().take(u16::MAX as usize) {
        out.extend_from_slice(&f.get().to_be_bytes());
    }
}

fn get_field(r: &mut Reader) -> Result<FieldId, BodyError> {
    let raw = r.u16()?;
    FieldId::new(raw).ok_or(BodyError::UnknownField(raw))
}

fn get_set(r: &mut Reader) -> Result<FieldSet, BodyError> {
    let n = r.u16()? as usize;
    if n > MAX_SET_LEN {
        return Err(BodyError::TooLong);
    }
    if n * 2 > r.remaining() {
        return Err(BodyError::Truncated);
    }
    let mut set = FieldSet::new();
    let mut prev: Option<FieldId> = None;
    for _ in 0..n {
        let f = get_field(r)?;
        if prev.is_some_and(|p| p >= f) {
            return Err(BodyError::NotCanonical);
        }
        prev = Some(f);
        set.insert(f);
    }
    Ok(set)
}

fn put_scopes(out: &mut Vec<u8>, scopes: &[(Scope, FieldSet)]) {
    let mut sorted: Vec<&(Scope, FieldSet)> = scopes.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend_from_slice(&(sorted.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for (scope, set) in sorted.into_iter().take(u16::MAX as usize) {
        put_scope(out, scope);
        put_set(out, set);
    }
}

fn get_scopes(r: &mut Reader) -> Result<Vec<(Scope, FieldSet)>, BodyError> {
    let n = r.u16()? as usize;
    if n > MAX_SCOPES {
        return Err(BodyError::TooLong);
    }
    // Each entry is at least 3 bytes (kind + empty set count).
    if n * 3 > r.remaining() {
        return Err(BodyError::Truncated);
    }
    let mut out: Vec<(Scope, FieldSet)> = Vec::with_capacity(n);
    for _ in 0..n {
        let scope = get_scope(r)?;
        if out.last().is_some_and(|(p, _)| *p >= scope) {
            return Err(BodyError::NotCanonical);
        }
        let set = get_set(r)?;
        out.push((scope, set));
    }
    Ok(out)
}

/// The frame type and body of a request.
pub(crate) fn encode_command(cmd: &Command) -> (u8, Vec<u8>) {
    let mut b = Vec::new();
    let ty = match cmd {
        Command::Include { scope, field } | Command::Exclude { scope, field } => {
            put_scope(&mut b, scope);
            b.extend_from_slice(&field.get().to_be_bytes());
            if matches!(cmd, Command::Include { .. }) {
                crate::frame::TYPE_INCLUDE
            } else {
                crate::frame::TYPE_EXCLUDE
            }
        }
        Command::Reset { scope } => {
            put_scope(&mut b, scope);
            crate::frame::TYPE_RESET
        }
        Command::Randomize { scope, from } => {
            put_scope(&mut b, scope);
            put_set(&mut b, from);
            crate::frame::TYPE_RANDOMIZE
        }
        Command::Sync { scopes } => {
            put_scopes(&mut b, scopes);
            crate::frame::TYPE_SYNC
        }
        Command::Query => crate::frame::TYPE_QUERY,
    };
    (ty, b)
}

/// Decodes a request body of frame type `ty` (a request type).
pub(crate) fn decode_command(ty: u8, body: &[u8]) -> Result<Command, BodyError> {
    use crate::frame::*;
    let mut r = Reader::new(body);
    let cmd = match ty {
        TYPE_INCLUDE => Command::Include { scope: get_scope(&mut r)?, field: get_field(&mut r)? },
        TYPE_EXCLUDE => Command::Exclude { scope: get_scope(&mut r)?, field: get_field(&mut r)? },
        TYPE_RESET => Command::Reset { scope: get_scope(&mut r)? },
        TYPE_RANDOMIZE => Command::Randomize { scope: get_scope(&mut r)?, from: get_set(&mut r)? },
        TYPE_SYNC => Command::Sync { scopes: get_scopes(&mut r)? },
        // Only request types reach here; the rest is QUERY, whose body is empty.
        _ => Command::Query,
    };
    r.finish()?;
    Ok(cmd)
}

pub(crate) fn encode_ack(version: u64, scopes: &[(Scope, FieldSet)], drawn: Option<&FieldSet>) -> Vec<u8> {
    let mut b = version.to_be_bytes().to_vec();
    match drawn {
        Some(set) => {
            b.push(1);
            put_set(&mut b, set);
        }
        None => b.push(0),
    }
    put_scopes(&mut b, scopes);
    b
}

pub(crate) fn encode_error(code: u16, reason: &str) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    // Our own text; keep it printable and bounded rather than fail.
    let clean: Vec<u8> =
        reason.bytes().map(|c| if (0x20..0x7f).contains(&c) { c } else { b'?' }).take(MAX_REASON_LEN).collect();
    b.push(clean.len() as u8);
    b.extend_from_slice(&clean);
    b
}

/// Decodes an ACK / ERROR body (reply types only).
pub(crate) fn decode_reply(ty: u8, body: &[u8]) -> Result<Reply, BodyError> {
    let mut r = Reader::new(body);
    let reply = if ty == crate::frame::TYPE_ACK {
        let version = r.u64()?;
        let drawn = match r.u8()? {
            0 => None,
            1 => Some(get_set(&mut r)?),
            _ => return Err(BodyError::NotCanonical),
        };
        Reply::Ack { version, drawn, scopes: get_scopes(&mut r)? }
    } else {
        let code = r.u16()?;
        let len = r.u8()? as usize;
        if len > MAX_REASON_LEN {
            return Err(BodyError::TooLong);
        }
        let text = r.take(len)?;
        if !text.iter().all(|c| (0x20..0x7f).contains(c)) {
            return Err(BodyError::BadText);
        }
        let reason = String::from_utf8_lossy(text).into_owned();
        Reply::Error { code, reason, authenticated: ty == crate::frame::TYPE_ERROR }
    };
    r.finish()?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::*;

    fn set(ids: &[FieldId]) -> FieldSet {
        ids.iter().copied().collect()
    }

    #[test]
    fn commands_round_trip() {
        let cmds = [
            Command::Include { scope: Scope::Backend, field: FieldId::SNI },
            Command::Exclude { scope: Scope::Sni("a.example".into()), field: FieldId::new(1000).unwrap() },
            Command::Reset { scope: Scope::Sni("b".into()) },
            Command::Include { scope: Scope::Route { sni: None, path_prefix: "/api".into() }, field: FieldId::SNI },
            Command::Exclude {
                scope: Scope::Route { sni: Some("a.example".into()), path_prefix: "/x/".into() },
                field: FieldId::SNI,
            },
            Command::Randomize { scope: Scope::Backend, from: set(&[FieldId::SNI, FieldId::JA4]) },
            Command::Sync {
                scopes: vec![(Scope::Backend, set(&[FieldId::SRC_IP])), (Scope::Sni("x".into()), FieldSet::new())],
            },
            Command::Query,
        ];
        for c in cmds {
            let (ty, body) = encode_command(&c);
            assert_eq!(decode_command(ty, &body).unwrap(), c);
            let mut longer = body.clone();
            longer.push(0);
            assert_eq!(decode_command(ty, &longer), Err(BodyError::TrailingBytes));
            for cut in 0..body.len() {
                assert!(decode_command(ty, &body[..cut]).is_err(), "{c:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn rejects_non_canonical_and_unknown() {
        // Set with descending ids.
        let body = [0, 0, 2, 0, 6, 0, 1];
        assert_eq!(decode_command(TYPE_RANDOMIZE, &body), Err(BodyError::NotCanonical));
        // Unknown field id 999.
        assert_eq!(decode_command(TYPE_INCLUDE, &[0, 0x03, 0xe7]), Err(BodyError::UnknownField(999)));
        // Unknown scope kind.
        assert_eq!(decode_command(TYPE_RESET, &[7]), Err(BodyError::UnknownScopeKind(7)));
        // Route scopes: bad prefix, over-long prefix (refused before taking it), truncated.
        assert_eq!(decode_command(TYPE_RESET, &[2, 0, 0, 3, b'a', b'p', b'i']), Err(BodyError::BadPathPrefix));
        assert_eq!(decode_command(TYPE_RESET, &[2, 0, 0xff, 0xff]), Err(BodyError::BadPathPrefix));
        assert_eq!(decode_command(TYPE_RESET, &[2, 0, 0, 4, b'/', b'a']), Err(BodyError::Truncated));
        assert_eq!(decode_command(TYPE_RESET, &[2, 1, b'A', 0, 1, b'/']), Err(BodyError::BadSni));
        assert_eq!(
            decode_command(TYPE_RESET, &[2, 0, 0, 1, b'/']),
            Ok(Command::Reset { scope: Scope::Route { sni: None, path_prefix: "/".into() } })
        );
        // Uppercase SNI.
        assert_eq!(decode_command(TYPE_RESET, &[1, 1, b'A']), Err(BodyError::BadSni));
        // A set count beyond the limit is refused before reading on.
        assert_eq!(decode_command(TYPE_RANDOMIZE, &[0, 0xff, 0xff]), Err(BodyError::TooLong));
        // Duplicate scopes in SYNC.
        assert_eq!(decode_command(TYPE_SYNC, &[0, 2, 0, 0, 0, 0, 0, 0]), Err(BodyError::NotCanonical));
    }

    #[test]
    fn replies_round_trip() {
        let scopes = vec![(Scope::Backend, set(&[FieldId::SRC_IP, FieldId::TIMESTAMP]))];
        let body = encode_ack(7, &scopes, Some(&set(&[FieldId::JA4])));
        assert_eq!(
            decode_reply(TYPE_ACK, &body).unwrap(),
            Reply::Ack { version: 7, scopes, drawn: Some(set(&[FieldId::JA4])) }
        );
        let body = encode_error(300, "field ja4 not permitted\n");
        assert_eq!(
            decode_reply(TYPE_ERROR_UNAUTH, &body).unwrap(),
            Reply::Error { code: 300, reason: "field ja4 not permitted?".into(), authenticated: false }
        );
    }
}

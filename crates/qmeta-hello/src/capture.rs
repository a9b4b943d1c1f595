//! Record-layer reassembly of the first handshake message (RFC 8446 §5.1):
//! a ClientHello may be split across several handshake records, and no
//! other record type may be interleaved with it.

use crate::hello::ClientHello;
use crate::{HelloError, MAX_FRAGMENT_LEN, MAX_HELLO_LEN, MAX_RECORDS_LEN};

const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
const CONTENT_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 0x01;

/// Outcome of [`capture`] on the bytes read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// Not enough bytes yet. Call again once the buffer holds at least
    /// `need_at_least` bytes in total (a lower bound, never above
    /// [`MAX_RECORDS_LEN`]).
    Incomplete { need_at_least: usize },
    /// The hello is complete. `consumed_records_len` is the length of the
    /// records that carried it; bytes after that (early data, further
    /// records) were not looked at.
    Complete { hello: ClientHello, consumed_records_len: usize },
}

/// Reassembles and parses the ClientHello at the start of `buf`, which
/// holds every byte read from the connection so far. Pure: the same bytes
/// give the same answer, so the caller simply calls again after each read.
///
/// A prefix of a valid hello is always `Incomplete`, never an error. Errors
/// are reported as early as the bytes allow (a first byte other than `0x16`
/// is [`HelloError::NotHandshake`] at once).
pub fn capture(buf: &[u8]) -> Result<Capture, HelloError> {
    let mut pos = 0;
    // Copied only when the hello spans records; the common single-record
    // hello is parsed in place.
    let mut joined: Vec<u8> = Vec::new();
    loop {
        let header = match buf.get(pos..pos + RECORD_HEADER_LEN) {
            Some(h) => h,
            None => {
                check_partial_header(&buf[pos..], pos == 0)?;
                return incomplete(pos + RECORD_HEADER_LEN);
            }
        };
        check_partial_header(header, pos == 0)?;
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 {
            return Err(HelloError::Malformed("empty handshake record"));
        }
        if len > MAX_FRAGMENT_LEN {
            return Err(HelloError::Malformed("record longer than 2^14 bytes"));
        }
        let end = pos + RECORD_HEADER_LEN + len;
        if end > MAX_RECORDS_LEN {
            return Err(HelloError::TooLarge);
        }
        let Some(fragment) = buf.get(pos + RECORD_HEADER_LEN..end) else {
            // Peek at the handshake header already in, so a wrong message
            // type or an oversized length fails before waiting for more.
            let partial = buf.get(pos + RECORD_HEADER_LEN..).unwrap_or_default();
            let mut head = [0u8; HANDSHAKE_HEADER_LEN];
            let mut n = 0;
            for (slot, &b) in head.iter_mut().zip(joined.iter().chain(partial)) {
                *slot = b;
                n += 1;
            }
            message_len(&head[..n])?;
            return incomplete(end);
        };
        pos = end;
        let in_place = joined.is_empty();
        if !in_place {
            joined.extend_from_slice(fragment);
        }
        let msg: &[u8] = if in_place { fragment } else { &joined };
        let missing = match message_len(msg)? {
            None => HANDSHAKE_HEADER_LEN - msg.len(),
            Some(total) if msg.len() == total => {
                let hello = ClientHello::parse_body(&msg[HANDSHAKE_HEADER_LEN..])?;
                return Ok(Capture::Complete { hello, consumed_records_len: pos });
            }
            Some(total) if msg.len() > total => {
                return Err(HelloError::Malformed("data after ClientHello in its record"));
            }
            Some(total) => total - msg.len(),
        };
        if in_place {
            // The first record did not hold the whole hello: keep its bytes.
            joined.extend_from_slice(fragment);
        }
        // The rest needs at least one more record header plus the missing
        // bytes; if even that cannot fit, fail now.
        let need = pos + RECORD_HEADER_LEN + missing;
        if need > MAX_RECORDS_LEN {
            return Err(HelloError::TooLarge);
        }
        if pos == buf.len() {
            return incomplete(need);
        }
    }
}

fn incomplete(need_at_least: usize) -> Result<Capture, HelloError> {
    Ok(Capture::Incomplete { need_at_least })
}

/// Checks whatever part of a record header is present. The first record
/// decides whether this is TLS at all; later ones must continue the hello.
fn check_partial_header(header: &[u8], first: bool) -> Result<(), HelloError> {
    let not_tls = |why| {
        if first {
            HelloError::NotHandshake
        } else {
            HelloError::Malformed(why)
        }
    };
    if let Some(&content_type) = header.first() {
        if content_type != CONTENT_HANDSHAKE {
            return Err(not_tls("non-handshake record inside ClientHello"));
        }
    }
    // Every TLS and SSL 3.0 record version has major 3.
    if let Some(&major) = header.get(1) {
        if major != 3 {
            return Err(not_tls("bad record version"));
        }
    }
    Ok(())
}

/// Total length of the handshake message once its header is in, checking
/// type and bound as early as possible.
fn message_len(msg: &[u8]) -> Result<Option<usize>, HelloError> {
    if let Some(&typ) = msg.first() {
        if typ != HANDSHAKE_CLIENT_HELLO {
            return Err(HelloError::NotClientHello);
        }
    }
    let Some(h) = msg.get(..HANDSHAKE_HEADER_LEN) else {
        return Ok(None);
    };
    let total = HANDSHAKE_HEADER_LEN + (usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]));
    if total > MAX_HELLO_LEN {
        return Err(HelloError::TooLarge);
    }
    Ok(Some(total))
}

//! The one HTTP/1.1 exchange the load generator makes: a request with
//! `Connection: close`, and a check that the whole response arrived.

/// `GET <path>` with `Connection: close`, so the server ends the connection.
pub fn request(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: qmeta-loadgen\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// Largest response head accepted before giving up on finding its end.
pub const MAX_HEAD: usize = 16 * 1024;

/// What the start of a response says.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head, CRLFCRLF included.
    pub head_len: usize,
    pub content_length: Option<u64>,
}

/// Why a response is not what the load generator expects.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// More bytes are needed to see the whole head.
    Incomplete,
    /// Not an HTTP/1.x response, or a head longer than [`MAX_HEAD`].
    Invalid,
}

/// Parses the status line and `Content-Length` of a response head.
pub fn parse_head(buf: &[u8]) -> Result<Head, HeadError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(if buf.len() >= MAX_HEAD { HeadError::Invalid } else { HeadError::Incomplete });
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HeadError::Invalid)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or(HeadError::Invalid)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().ok_or(HeadError::Invalid)?;
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Invalid);
    }
    let status = parts.next().and_then(|s| s.parse().ok()).ok_or(HeadError::Invalid)?;
    let mut content_length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                content_length = Some(v.trim().parse().map_err(|_| HeadError::Invalid)?);
            }
        }
    }
    Ok(Head { status, head_len: end + 4, content_length })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";

    #[test]
    fn parses_status_and_length() {
        assert_eq!(parse_head(RESP), Ok(Head { status: 200, head_len: RESP.len() - 5, content_length: Some(5) }));
    }

    #[test]
    fn every_prefix_of_the_head_is_incomplete() {
        let head_len = RESP.len() - 5;
        for n in 0..head_len {
            assert_eq!(parse_head(&RESP[..n]), Err(HeadError::Incomplete), "{n}");
        }
    }

    #[test]
    fn rejects_garbage_and_oversize() {
        assert_eq!(parse_head(b"SSH-2.0\r\n\r\n"), Err(HeadError::Invalid));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), Err(HeadError::Invalid));
        assert_eq!(parse_head(&vec![b'a'; MAX_HEAD]), Err(HeadError::Invalid));
    }

    #[test]
    fn request_closes() {
        let r = String::from_utf8(request("/x", "localhost")).unwrap();
        assert!(r.starts_with("GET /x HTTP/1.1\r\nHost: localhost\r\n"));
        assert!(r.ends_with("Connection: close\r\n\r\n"));
    }
}

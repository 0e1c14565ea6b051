//! Request bodies read as Go's `json.Decoder` reads them: one JSON value
//! after another, each complete before it is used, none larger than
//! [`Limits::max_json`].
//!
//! 1. Bytes are read from the body until the buffer may hold a whole value
//!    (a cheap bracket count, so a large value arriving in many chunks is
//!    parsed once).
//! 2. The value is parsed ([`Json::parse_next`]) and its bytes dropped from
//!    the buffer; what follows waits for the next call.
//! 3. A unary call reads one value and leaves the rest of the body unread,
//!    as grpc-gateway does; a stream reads values until the body ends or one
//!    is bad.

use axum::body::Body;
use http_body_util::BodyExt;

use super::Limits;
use super::go_json::{Json, Parsed};

/// What [`JsonStream::next`] read.
pub enum Next {
    Value(Json),
    End,
    /// A syntax error, in Go's words.
    Bad(String),
    /// More than [`Limits::max_json`] bytes without a whole value: how many
    /// were read.
    TooLarge(usize),
}

/// JSON values read one after another from a request body, as Go's
/// `json.Decoder` reads a stream.
pub struct JsonStream {
    body: Body,
    buf: Vec<u8>,
    ended: bool,
    limits: Limits,
}

impl JsonStream {
    pub fn new(body: Body, limits: Limits) -> JsonStream {
        JsonStream {
            body,
            buf: Vec::new(),
            ended: false,
            limits,
        }
    }

    /// The next value, reading more of the body until one is complete.
    pub async fn next(&mut self) -> Next {
        loop {
            if self.ended || self.holds_whole_value() {
                match Json::parse_next(&self.buf) {
                    Ok(Parsed::Value(_, used)) if used > self.limits.max_json => {
                        return Next::TooLarge(used);
                    }
                    Ok(Parsed::Value(value, used)) => {
                        self.buf.drain(..used);
                        return Next::Value(value);
                    }
                    Ok(Parsed::End) if self.ended => return Next::End,
                    Ok(Parsed::End) => self.buf.clear(),
                    Err(message) if self.ended || message != "unexpected EOF" => {
                        return Next::Bad(message);
                    }
                    Err(_) => {}
                }
            }
            if self.buf.len() > self.limits.max_json {
                return Next::TooLarge(self.buf.len());
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Next::Bad(e.to_string()),
            }
        }
    }

    /// True when the buffer may hold a whole value: an object or array whose
    /// brackets balance (strings skipped), or anything else that does not
    /// end in the middle of a top-level number. A cheap scan, so a large
    /// value arriving in many chunks is parsed once, not once per chunk.
    fn holds_whole_value(&self) -> bool {
        let Some(start) = self.buf.iter().position(|c| !c.is_ascii_whitespace()) else {
            return false;
        };
        if !matches!(self.buf[start], b'{' | b'[') {
            return !Json::needs_more(&self.buf);
        }
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &c in &self.buf[start..] {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn limits() -> Limits {
        Limits {
            max_grpc_message: 1024,
            max_json: 4096,
        }
    }

    fn chunked(parts: &[&str]) -> Body {
        let chunks: Vec<Result<Bytes, std::convert::Infallible>> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p.as_bytes())))
            .collect();
        Body::from_stream(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn values_are_read_across_chunks() {
        let body = chunked(&[
            r#"{"create_request":{"k"#,
            r#"ey":"Zm9v"}}  {"#,
            r#""x":"}"}"#,
            " 1",
        ]);
        let mut stream = JsonStream::new(body, limits());
        let mut values = Vec::new();
        loop {
            match stream.next().await {
                Next::Value(v) => values.push(v),
                Next::End => break,
                Next::Bad(message) => panic!("bad: {message}"),
                Next::TooLarge(read) => panic!("too large after {read} bytes"),
            }
        }
        assert_eq!(values.len(), 3);
        assert_eq!(values[2], Json::Number("1".into()));
    }

    #[tokio::test]
    async fn a_bad_value_is_reported_with_go_text() {
        let mut stream = JsonStream::new(chunked(&["{} xx"]), limits());
        assert!(matches!(stream.next().await, Next::Value(_)));
        let Next::Bad(message) = stream.next().await else {
            panic!("expected an error");
        };
        assert_eq!(
            message,
            "invalid character 'x' looking for beginning of value"
        );
        let mut stream = JsonStream::new(chunked(&[r#"{"a":"#]), limits());
        let Next::Bad(message) = stream.next().await else {
            panic!("expected an error");
        };
        assert_eq!(message, "unexpected EOF");
    }

    #[tokio::test]
    async fn a_value_above_the_limit_is_not_read_whole() {
        let big = format!("{{\"key\":\"{}\"}}", "A".repeat(10_000));
        let mut stream = JsonStream::new(chunked(&[&big]), limits());
        assert!(matches!(stream.next().await, Next::TooLarge(read) if read > 4096));
    }

    #[tokio::test]
    async fn a_unary_body_is_read_up_to_its_first_value() {
        let body = Body::from_stream(futures::stream::iter(vec![
            Ok::<_, std::convert::Infallible>(Bytes::from_static(b"{\"key\":\"YQ==\"} ")),
            Ok(Bytes::from(vec![b' '; 1 << 20])),
        ]));
        let mut stream = JsonStream::new(body, limits());
        assert!(matches!(stream.next().await, Next::Value(Json::Object(_))));
    }
}

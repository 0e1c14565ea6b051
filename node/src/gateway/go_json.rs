//! JSON text read the way etcd 3.4's gateway reads it: Go's `encoding/json`
//! scanner, with its error texts byte for byte (clients and the differential
//! test see them in `{"error": ...}`).
//!
//! 1. [`Json::parse_next`] reads the first value of a body as a Go
//!    `json.Decoder` does (leading whitespace skipped, bytes after the value
//!    left alone, an empty body is [`Parsed::End`], a cut value is
//!    `unexpected EOF`).
//! 2. [`Json::parse_all`] reads a whole text as `json.Unmarshal` does
//!    (nothing but whitespace may follow the value; a cut value is
//!    `unexpected end of JSON input`). jsonpb uses it on the inside of a
//!    quoted number (`"limit":"7"`).
//! 3. Strings keep their raw text (jsonpb looks at it for enum names and
//!    quoted numbers) and are unescaped on demand ([`unescape`]).
//! 4. [`go_base64`] decodes `bytes` fields with Go's `base64.StdEncoding`
//!    and its error positions.

use std::fmt::Write as _;

/// Nesting bound. Go's scanner allows 10,000 levels; oxcd's messages nest a
/// few levels, and the bound keeps recursion off the end of a task's stack.
const MAX_DEPTH: usize = 512;

/// A JSON value with the raw text jsonpb needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's text, as written.
    Number(String),
    /// A string's raw text between its quotes, escapes not yet resolved.
    Str(Vec<u8>),
    Array(Vec<Json>),
    /// Members in order; duplicates are kept (the reader keeps the last, as
    /// a Go map does).
    Object(Vec<(String, Json)>),
}

/// What [`Json::parse_next`] found.
#[derive(Debug)]
pub enum Parsed {
    /// A value, and how many bytes it took (with leading whitespace).
    Value(Json, usize),
    /// Only whitespace: Go's `io.EOF`.
    End,
}

/// A syntax error in Go's words, or a cut input.
#[derive(Debug, Clone, PartialEq)]
pub enum SyntaxError {
    /// The input ended inside a value.
    Eof,
    /// Go's `*json.SyntaxError` text.
    Invalid(String),
}

impl Json {
    /// Go's name for the JSON type of a value, as `UnmarshalTypeError` says
    /// it (`number` carries its text only for numeric targets).
    pub fn go_kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "bool",
            Json::Number(_) => "number",
            Json::Str(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }

    /// The first value of `input`, as a `json.Decoder` reads it.
    pub fn parse_next(input: &[u8]) -> Result<Parsed, String> {
        let mut reader = Reader {
            input,
            pos: 0,
            eof_is_space: false,
        };
        reader.skip_space();
        if reader.pos == input.len() {
            return Ok(Parsed::End);
        }
        match reader.value(0) {
            Ok(value) => Ok(Parsed::Value(value, reader.pos)),
            Err(SyntaxError::Eof) => Err("unexpected EOF".to_owned()),
            Err(SyntaxError::Invalid(message)) => Err(message),
        }
    }

    /// The whole of `input` as one value, as `json.Unmarshal` reads it.
    pub fn parse_all(input: &[u8]) -> Result<Json, String> {
        let mut reader = Reader {
            input,
            pos: 0,
            eof_is_space: true,
        };
        let value = reader.skip_space_then(|r| r.value(0));
        let value = match value {
            Ok(value) => value,
            Err(SyntaxError::Eof) => return Err("unexpected end of JSON input".to_owned()),
            Err(SyntaxError::Invalid(message)) => return Err(message),
        };
        reader.skip_space();
        match input.get(reader.pos) {
            None => Ok(value),
            Some(&c) => Err(invalid(c, "after top-level value")),
        }
    }

    /// True when the value could still grow if more bytes arrived: the
    /// decoder needs more input before it can tell (used by the streaming
    /// reader before a body has ended).
    pub fn needs_more(input: &[u8]) -> bool {
        matches!(Json::parse_next(input), Err(message) if message == "unexpected EOF")
            || ends_in_top_level_number(input)
    }
}

/// A top-level number at the very end of the input may go on in the next
/// chunk (`12` then `3`).
fn ends_in_top_level_number(input: &[u8]) -> bool {
    let trimmed = input
        .iter()
        .position(|c| !is_space(*c))
        .map(|start| &input[start..]);
    match trimmed {
        Some(rest) if matches!(rest.first(), Some(b'-' | b'0'..=b'9')) => rest
            .iter()
            .all(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')),
        _ => false,
    }
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    /// `json.Unmarshal`'s end of input: its scanner is fed one more space,
    /// so a number, literal or escape cut short fails on `' '` (`invalid
    /// character ' ' in exponent of numeric literal`); the decoder says
    /// `unexpected EOF` whatever the state.
    eof_is_space: bool,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// Go's `quoteChar`: how a syntax error shows the offending byte.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".to_owned(),
        b'"' => "'\"'".to_owned(),
        _ => {
            let quoted = go_quote_str(&char::from(c).to_string());
            format!("'{}'", &quoted[1..quoted.len() - 1])
        }
    }
}

fn invalid(c: u8, context: &str) -> String {
    format!("invalid character {} {context}", quote_char(c))
}

impl Reader<'_> {
    fn skip_space(&mut self) {
        while self.pos < self.input.len() && is_space(self.input[self.pos]) {
            self.pos += 1;
        }
    }

    fn skip_space_then<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, SyntaxError>,
    ) -> Result<T, SyntaxError> {
        self.skip_space();
        f(self)
    }

    fn peek(&self) -> Result<u8, SyntaxError> {
        self.input.get(self.pos).copied().ok_or(SyntaxError::Eof)
    }

    /// [`Reader::peek`] inside a number, literal or escape, where Go's
    /// `json.Unmarshal` sees its closing space.
    fn peek_mid(&self) -> Result<u8, SyntaxError> {
        match self.input.get(self.pos) {
            Some(&c) => Ok(c),
            None if self.eof_is_space => Ok(b' '),
            None => Err(SyntaxError::Eof),
        }
    }

    /// A value starting at the current byte (whitespace already skipped).
    fn value(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        let c = self.peek()?;
        match c {
            b'{' | b'[' if depth >= MAX_DEPTH => {
                Err(SyntaxError::Invalid("exceeded max depth".to_owned()))
            }
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(Json::Str),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true", Json::Bool(true)),
            b'f' => self.literal(b"false", Json::Bool(false)),
            b'n' => self.literal(b"null", Json::Null),
            _ => Err(SyntaxError::Invalid(invalid(
                c,
                "looking for beginning of value",
            ))),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_space();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            let c = self.peek()?;
            if c != b'"' {
                return Err(SyntaxError::Invalid(invalid(
                    c,
                    "looking for beginning of object key string",
                )));
            }
            let key = unescape(&self.string()?);
            self.skip_space();
            let c = self.peek()?;
            if c != b':' {
                return Err(SyntaxError::Invalid(invalid(c, "after object key")));
            }
            self.pos += 1;
            self.skip_space();
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_space();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.skip_space();
                }
                b'}' => {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                c => {
                    return Err(SyntaxError::Invalid(invalid(
                        c,
                        "after object key:value pair",
                    )));
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        self.pos += 1;
        let mut elements = Vec::new();
        self.skip_space();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(Json::Array(elements));
        }
        loop {
            elements.push(self.value(depth)?);
            self.skip_space();
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    self.skip_space();
                }
                b']' => {
                    self.pos += 1;
                    return Ok(Json::Array(elements));
                }
                c => return Err(SyntaxError::Invalid(invalid(c, "after array element"))),
            }
        }
    }

    /// A string's raw text; the reader stands on its opening quote.
    fn string(&mut self) -> Result<Vec<u8>, SyntaxError> {
        self.pos += 1;
        let start = self.pos;
        loop {
            let c = self.peek()?;
            self.pos += 1;
            match c {
                b'"' => return Ok(self.input[start..self.pos - 1].to_vec()),
                b'\\' => {
                    let e = self.peek_mid()?;
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                let h = self.peek_mid()?;
                                if !h.is_ascii_hexdigit() {
                                    return Err(SyntaxError::Invalid(invalid(
                                        h,
                                        "in \\u hexadecimal character escape",
                                    )));
                                }
                                self.pos += 1;
                            }
                        }
                        _ => {
                            return Err(SyntaxError::Invalid(invalid(e, "in string escape code")));
                        }
                    }
                }
                c if c < 0x20 => {
                    return Err(SyntaxError::Invalid(invalid(c, "in string literal")));
                }
                _ => {}
            }
        }
    }

    fn number(&mut self) -> Result<Json, SyntaxError> {
        let start = self.pos;
        let at_end = |r: &Self| r.pos == r.input.len();
        if self.input[self.pos] == b'-' {
            self.pos += 1;
            let c = self.peek_mid()?;
            if !c.is_ascii_digit() {
                return Err(SyntaxError::Invalid(invalid(c, "in numeric literal")));
            }
        }
        if self.input[self.pos] == b'0' {
            self.pos += 1;
        } else {
            while !at_end(self) && self.input[self.pos].is_ascii_digit() {
                self.pos += 1;
            }
        }
        if !at_end(self) && self.input[self.pos] == b'.' {
            self.pos += 1;
            let c = self.peek_mid()?;
            if !c.is_ascii_digit() {
                return Err(SyntaxError::Invalid(invalid(
                    c,
                    "after decimal point in numeric literal",
                )));
            }
            while !at_end(self) && self.input[self.pos].is_ascii_digit() {
                self.pos += 1;
            }
        }
        if !at_end(self) && matches!(self.input[self.pos], b'e' | b'E') {
            self.pos += 1;
            if matches!(self.peek_mid()?, b'+' | b'-') {
                self.pos += 1;
            }
            let c = self.peek_mid()?;
            if !c.is_ascii_digit() {
                return Err(SyntaxError::Invalid(invalid(
                    c,
                    "in exponent of numeric literal",
                )));
            }
            while !at_end(self) && self.input[self.pos].is_ascii_digit() {
                self.pos += 1;
            }
        }
        let text = String::from_utf8_lossy(&self.input[start..self.pos]).into_owned();
        Ok(Json::Number(text))
    }

    fn literal(&mut self, word: &'static [u8], value: Json) -> Result<Json, SyntaxError> {
        let name = std::str::from_utf8(word).unwrap_or_default();
        for (i, &expected) in word.iter().enumerate() {
            let c = self.peek_mid()?;
            if i > 0 && c != expected {
                return Err(SyntaxError::Invalid(invalid(
                    c,
                    &format!("in literal {name} (expecting {})", quote_char(expected)),
                )));
            }
            self.pos += 1;
        }
        Ok(value)
    }
}

/// A string's raw text unescaped as Go does: invalid UTF-8 and lone
/// surrogates become U+FFFD.
pub fn unescape(raw: &[u8]) -> String {
    if !raw.contains(&b'\\') {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    let hex4 = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(raw.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    while i < raw.len() {
        if raw[i] != b'\\' || i + 1 >= raw.len() {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let e = raw[i + 1];
        i += 2;
        let simple = match e {
            b'b' => Some(b'\x08'),
            b'f' => Some(b'\x0c'),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            other => Some(other),
        };
        if let Some(byte) = simple {
            out.push(byte);
            continue;
        }
        let Some(first) = hex4(i) else {
            continue;
        };
        i += 4;
        let c = if (0xD800..0xDC00).contains(&first)
            && raw.get(i) == Some(&b'\\')
            && raw.get(i + 1) == Some(&b'u')
            && let Some(second) = hex4(i + 2)
            && (0xDC00..0xE000).contains(&second)
        {
            i += 6;
            char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
        } else {
            char::from_u32(first)
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.unwrap_or('\u{FFFD}').encode_utf8(&mut buf).as_bytes());
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `strconv.Quote` of a string given as bytes (`%q`): printable
/// characters as they are, the rest escaped.
pub fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        quote_into(&mut out, chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

fn go_quote_str(s: &str) -> String {
    let mut out = String::from("\"");
    quote_into(&mut out, s);
    out.push('"');
    out
}

fn quote_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Go's `base64.StdEncoding.Decode`: padding required, `\r` and `\n`
/// skipped, errors as `illegal base64 data at input byte N`.
pub fn go_base64(src: &[u8]) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let corrupt = |at: usize| format!("illegal base64 data at input byte {at}");
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    loop {
        let mut quantum = [0u8; 4];
        let mut len = 4;
        let mut j = 0;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                return Err(corrupt(si - j));
            }
            let c = src[si];
            si += 1;
            if let Some(v) = value(c) {
                quantum[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(corrupt(si - 1));
            }
            // Padding: only after two or three characters.
            match j {
                0 | 1 => return Err(corrupt(si - 1)),
                2 => {
                    while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                        si += 1;
                    }
                    if si == src.len() {
                        return Err(corrupt(src.len()));
                    }
                    if src[si] != b'=' {
                        return Err(corrupt(si - 1));
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                si += 1;
            }
            if si < src.len() {
                return Err(corrupt(si));
            }
            len = j;
            break;
        }
        let v = u32::from(quantum[0]) << 18
            | u32::from(quantum[1]) << 12
            | u32::from(quantum[2]) << 6
            | u32::from(quantum[3]);
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..len - 1]);
        if len < 4 {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next_err(input: &str) -> String {
        Json::parse_next(input.as_bytes()).unwrap_err()
    }

    #[test]
    fn syntax_errors_use_go_texts() {
        assert_eq!(next_err(r#"{"key":"#), "unexpected EOF");
        assert_eq!(
            next_err("xyz"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(
            next_err(r#"{"a" 1}"#),
            "invalid character '1' after object key"
        );
        assert_eq!(
            next_err(r#"{"a":1 "b"}"#),
            "invalid character '\"' after object key:value pair"
        );
        assert_eq!(
            next_err("{a}"),
            "invalid character 'a' looking for beginning of object key string"
        );
        assert_eq!(
            next_err("[1 2]"),
            "invalid character '2' after array element"
        );
        assert_eq!(
            next_err("tru "),
            "invalid character ' ' in literal true (expecting 'e')"
        );
        assert_eq!(next_err("-x"), "invalid character 'x' in numeric literal");
        assert_eq!(
            next_err("{\"a\":\"\\q\"}"),
            "invalid character 'q' in string escape code"
        );
        assert_eq!(
            next_err("'"),
            r"invalid character '\'' looking for beginning of value"
        );
        assert_eq!(
            Json::parse_all(b"1 2").unwrap_err(),
            "invalid character '2' after top-level value"
        );
        assert_eq!(
            Json::parse_all(b"").unwrap_err(),
            "unexpected end of JSON input"
        );
        assert!(matches!(Json::parse_next(b"  \n"), Ok(Parsed::End)));
    }

    #[test]
    fn decoder_reads_one_value_and_leaves_the_rest() {
        let Ok(Parsed::Value(value, used)) = Json::parse_next(br#" {"a":[1,"x"]} trailing"#) else {
            panic!("a value");
        };
        assert_eq!(used, 14);
        assert_eq!(
            value,
            Json::Object(vec![(
                "a".to_owned(),
                Json::Array(vec![Json::Number("1".into()), Json::Str(b"x".to_vec())])
            )])
        );
        assert!(Json::needs_more(br#"{"a":"#));
        assert!(Json::needs_more(b"12"));
        assert!(!Json::needs_more(br#"{"a":1}"#));
    }

    #[test]
    fn strings_unescape_like_go() {
        assert_eq!(
            unescape(br#"a\n\u00e9\ud83d\ude00\"x"#),
            "a\n\u{e9}\u{1F600}\"x"
        );
        assert_eq!(unescape(br"\ud800"), "\u{FFFD}");
        assert_eq!(go_quote(b"NO\"PE\n"), r#""NO\"PE\n""#);
    }

    #[test]
    fn base64_errors_match_go_positions() {
        assert_eq!(go_base64(b"Zm9v").unwrap(), b"foo");
        assert_eq!(go_base64(b"Zm9v\n").unwrap(), b"foo");
        assert_eq!(go_base64(b"Zm8=").unwrap(), b"fo");
        assert_eq!(go_base64(b"Zg==").unwrap(), b"f");
        assert_eq!(go_base64(b"").unwrap(), b"");
        assert_eq!(
            go_base64(b"!!").unwrap_err(),
            "illegal base64 data at input byte 0"
        );
        assert_eq!(
            go_base64(b"Zm9").unwrap_err(),
            "illegal base64 data at input byte 0"
        );
        assert_eq!(
            go_base64(b"Zm9vZ").unwrap_err(),
            "illegal base64 data at input byte 4"
        );
        assert_eq!(
            go_base64(b"Zg=").unwrap_err(),
            "illegal base64 data at input byte 3"
        );
        assert_eq!(
            go_base64(b"Zg==Zg==").unwrap_err(),
            "illegal base64 data at input byte 4"
        );
    }
}

//! Messages to and from JSON by golang/protobuf 1.3's `jsonpb`, the
//! marshaler etcd 3.4's gateway runs (`runtime.JSONPb{OrigName: true}`,
//! unknown fields allowed).
//!
//! Reading ([`to_message`]), field by field in declaration order, then the
//! oneof members:
//! 1. a field is found under its proto name or its lowerCamel JSON name (the
//!    latter wins when both are given); unknown names are ignored; `null`
//!    leaves a field unset (but a scalar oneof member present, at zero);
//! 2. a message must be a JSON object, a repeated field an array;
//! 3. 64- and 32-bit integers take numbers or quoted numbers (the quotes are
//!    stripped and the inside parsed again, as jsonpb does), enums their name
//!    in quotes or their number, `bytes` base64 (or an array of byte
//!    values, as Go's `encoding/json` allows);
//! 4. a mismatch is reported with Go's text (`json: cannot unmarshal string
//!    into Go value of type int64`, `unknown value "X" for enum ...`).
//!
//! Writing ([`write_message`]) is prost-reflect's serializer with jsonpb's
//! options: proto field names, fields at their default value left out (a
//! set message field is written, even empty), 64-bit integers as strings,
//! `bytes` as padded base64, enums by name. Reading is written out here
//! because etcd's answers to malformed JSON quote Go's decoder errors, which
//! a client sees and the differential test compares.

use std::fmt::Write as _;

use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions, Value,
};

use super::go_json::{Json, go_base64, go_quote, unescape};

/// Reads a message from a JSON value with jsonpb's rules.
pub fn to_message(desc: &MessageDescriptor, json: &Json) -> Result<DynamicMessage, String> {
    let mut message = DynamicMessage::new(desc.clone());
    let members = match json {
        Json::Null => return Ok(message),
        Json::Object(members) => members,
        other => return Err(type_error(other.go_kind(), "map[string]json.RawMessage")),
    };
    // A Go map: the last of duplicate keys wins.
    let mut remaining: std::collections::HashMap<&str, &Json> = members
        .iter()
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    let plain = desc.fields().filter(|f| f.containing_oneof().is_none());
    let oneof_members = desc.oneofs().flat_map(|o| o.fields().collect::<Vec<_>>());
    for field in plain.chain(oneof_members) {
        let by_name = remaining.remove(field.name());
        let by_json_name = remaining.remove(field.json_name());
        let Some(value) = by_json_name.or(by_name) else {
            continue;
        };
        match field_value(&field, value)? {
            Some(value) => message.set_field(&field, value),
            // jsonpb sets a oneof's wrapper even for `null`: a scalar member
            // is then present with its zero value (a message member stays
            // nil, which encodes as nothing).
            None if field.containing_oneof().is_some()
                && !matches!(field.kind(), Kind::Message(_)) =>
            {
                message.set_field(&field, Value::default_value(&field.kind()));
            }
            None => {}
        }
    }
    Ok(message)
}

fn type_error(json_kind: &str, go_type: &str) -> String {
    format!("json: cannot unmarshal {json_kind} into Go value of type {go_type}")
}

/// A field's value, or `None` for JSON `null` (the field stays unset).
fn field_value(field: &FieldDescriptor, json: &Json) -> Result<Option<Value>, String> {
    if field.is_map() {
        // etcd's API has no map fields; jsonpb would read one, oxcd ignores it.
        return Ok(None);
    }
    if !field.is_list() {
        return single_value(&field.kind(), json);
    }
    let elements = match json {
        Json::Null => return Ok(None),
        Json::Array(elements) => elements,
        other => return Err(type_error(other.go_kind(), "[]json.RawMessage")),
    };
    let kind = field.kind();
    let mut values = Vec::with_capacity(elements.len());
    for element in elements {
        // A `null` element is the element type's zero value.
        values.push(single_value(&kind, element)?.unwrap_or_else(|| zero_value(&kind)));
    }
    Ok(Some(Value::List(values)))
}

fn zero_value(kind: &Kind) -> Value {
    match kind {
        Kind::Message(desc) => Value::Message(DynamicMessage::new(desc.clone())),
        other => Value::default_value(other),
    }
}

fn single_value(kind: &Kind, json: &Json) -> Result<Option<Value>, String> {
    if *json == Json::Null {
        return Ok(None);
    }
    match kind {
        Kind::Message(desc) => to_message(desc, json).map(|m| Some(Value::Message(m))),
        Kind::Enum(desc) => {
            let go_type = go_type_name(desc.full_name(), desc.parent_file().package_name());
            if let Json::Str(raw) = json {
                let name = String::from_utf8_lossy(raw);
                return match desc.get_value_by_name(&name) {
                    Some(v) if !raw.contains(&b'\\') => Ok(Some(Value::EnumNumber(v.number()))),
                    _ => Err(format!(
                        "unknown value {} for enum {go_type}",
                        go_quote(raw)
                    )),
                };
            }
            integer(json, &go_type, i64::from(i32::MIN), i64::from(i32::MAX))
                .map(|n| n.map(|n| Value::EnumNumber(n as i32)))
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            numeric(json, |j| integer(j, "int64", i64::MIN, i64::MAX)).map(|n| n.map(Value::I64))
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => numeric(json, |j| {
            integer(j, "int32", i64::from(i32::MIN), i64::from(i32::MAX))
        })
        .map(|n| n.map(|n| Value::I32(n as i32))),
        Kind::Uint64 | Kind::Fixed64 => {
            numeric(json, |j| unsigned(j, "uint64", u64::MAX)).map(|n| n.map(Value::U64))
        }
        Kind::Uint32 | Kind::Fixed32 => {
            numeric(json, |j| unsigned(j, "uint32", u64::from(u32::MAX)))
                .map(|n| n.map(|n| Value::U32(n as u32)))
        }
        Kind::Double | Kind::Float => {
            let go_type = if *kind == Kind::Double {
                "float64"
            } else {
                "float32"
            };
            numeric(json, |j| match j {
                Json::Null => Ok(None),
                Json::Number(text) => text
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| type_error(&format!("number {text}"), go_type)),
                other => Err(type_error(other.go_kind(), go_type)),
            })
            .map(|n| {
                n.map(|n| {
                    if *kind == Kind::Double {
                        Value::F64(n)
                    } else {
                        Value::F32(n as f32)
                    }
                })
            })
        }
        Kind::Bool => match json {
            Json::Bool(b) => Ok(Some(Value::Bool(*b))),
            other => Err(type_error(other.go_kind(), "bool")),
        },
        Kind::String => match json {
            Json::Str(raw) => Ok(Some(Value::String(unescape(raw)))),
            other => Err(type_error(other.go_kind(), "string")),
        },
        Kind::Bytes => match json {
            Json::Str(raw) => {
                go_base64(unescape(raw).as_bytes()).map(|b| Some(Value::Bytes(b.into())))
            }
            Json::Array(elements) => {
                let mut bytes = Vec::with_capacity(elements.len());
                for element in elements {
                    let byte = match element {
                        Json::Null => 0,
                        other => unsigned(other, "uint8", 255)?.unwrap_or(0) as u8,
                    };
                    bytes.push(byte);
                }
                Ok(Some(Value::Bytes(bytes.into())))
            }
            other => Err(type_error(other.go_kind(), "[]uint8")),
        },
    }
}

/// jsonpb's numbers: a quoted number loses its quotes and is read again as
/// a whole JSON text (so `"7"` is 7, `""` is "unexpected end of JSON input").
fn numeric<T>(
    json: &Json,
    read: impl Fn(&Json) -> Result<Option<T>, String>,
) -> Result<Option<T>, String> {
    match json {
        Json::Str(raw) => read(&Json::parse_all(raw)?),
        other => read(other),
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)` plus the target's range.
fn integer(json: &Json, go_type: &str, min: i64, max: i64) -> Result<Option<i64>, String> {
    match json {
        Json::Null => Ok(None),
        Json::Number(text) => match text.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(type_error(&format!("number {text}"), go_type)),
        },
        other => Err(type_error(other.go_kind(), go_type)),
    }
}

/// Go's `strconv.ParseUint(s, 10, 64)` plus the target's range.
fn unsigned(json: &Json, go_type: &str, max: u64) -> Result<Option<u64>, String> {
    match json {
        Json::Null => Ok(None),
        Json::Number(text) => match text.parse::<u64>() {
            Ok(n) if n <= max && !text.starts_with('+') => Ok(Some(n)),
            _ => Err(type_error(&format!("number {text}"), go_type)),
        },
        other => Err(type_error(other.go_kind(), go_type)),
    }
}

/// The Go type name of a generated type, as gogo registers it:
/// `etcdserverpb.RangeRequest.SortOrder` is `etcdserverpb.RangeRequest_SortOrder`.
fn go_type_name(full_name: &str, package: &str) -> String {
    match full_name
        .strip_prefix(package)
        .and_then(|s| s.strip_prefix('.'))
    {
        Some(rest) if !package.is_empty() => format!("{package}.{}", rest.replace('.', "_")),
        _ => full_name.replace('.', "_"),
    }
}

/// Writes a message as jsonpb does with `OrigName: true` and defaults
/// left out, through prost-reflect's serializer: proto field names, 64-bit
/// integers as strings, `bytes` as padded base64, enums by name, fields at
/// their default value skipped (a set message field is written, even
/// empty).
pub fn write_message(message: &DynamicMessage) -> Result<String, serde_json::Error> {
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(true)
        .skip_default_fields(true);
    let mut out = Vec::new();
    message.serialize_with_options(&mut serde_json::Serializer::new(&mut out), &options)?;
    // serde_json writes UTF-8 only.
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// A JSON string as Go's `encoding/json` writes it (HTML-safe).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::super::go_json::Parsed;
    use super::*;
    use prost::Message as _;

    fn range_desc() -> MessageDescriptor {
        super::super::pool()
            .get_message_by_name("etcdserverpb.RangeRequest")
            .expect("RangeRequest")
    }

    fn read(desc: &MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
        let Ok(Parsed::Value(json, _)) = Json::parse_next(text.as_bytes()) else {
            panic!("not JSON: {text}");
        };
        to_message(desc, &json)
    }

    #[test]
    fn requests_read_like_jsonpb() {
        let desc = range_desc();
        let m = read(
            &desc,
            r#"{"key":"Zm9v","rangeEnd":"Zm9w","limit":"7","sort_order":"DESCEND","keys_only":true,"min_mod_revision":-3,"nope":1}"#,
        )
        .expect("reads");
        let bytes = m.encode_to_vec();
        let typed = proto::etcdserverpb::RangeRequest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(typed.key, b"foo");
        assert_eq!(typed.range_end, b"fop");
        assert_eq!(typed.limit, 7);
        assert_eq!(typed.sort_order, 2);
        assert!(typed.keys_only);
        assert_eq!(typed.min_mod_revision, -3);
    }

    #[test]
    fn a_null_oneof_scalar_is_present_at_zero() {
        let desc = super::super::pool()
            .get_message_by_name("etcdserverpb.Compare")
            .expect("Compare");
        let m = read(&desc, r#"{"key":"YQ==","target":"VERSION","version":null}"#).expect("reads");
        let typed =
            proto::etcdserverpb::Compare::decode(m.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(
            typed.target_union,
            Some(proto::etcdserverpb::compare::TargetUnion::Version(0))
        );
    }

    #[test]
    fn mismatches_use_go_texts() {
        let desc = range_desc();
        let cases = [
            (
                r#"[]"#,
                "json: cannot unmarshal array into Go value of type map[string]json.RawMessage",
            ),
            (
                r#"{"key":5}"#,
                "json: cannot unmarshal number into Go value of type []uint8",
            ),
            (r#"{"key":"!!"}"#, "illegal base64 data at input byte 0"),
            (
                r#"{"limit":"abc"}"#,
                "invalid character 'a' looking for beginning of value",
            ),
            (
                r#"{"limit":1.5}"#,
                "json: cannot unmarshal number 1.5 into Go value of type int64",
            ),
            (
                r#"{"limit":true}"#,
                "json: cannot unmarshal bool into Go value of type int64",
            ),
            (r#"{"limit":""}"#, "unexpected end of JSON input"),
            (
                r#"{"limit":"1 2"}"#,
                "invalid character '2' after top-level value",
            ),
            (
                r#"{"sort_order":"NOPE"}"#,
                r#"unknown value "NOPE" for enum etcdserverpb.RangeRequest_SortOrder"#,
            ),
            (
                r#"{"sort_order":1.5}"#,
                "json: cannot unmarshal number 1.5 into Go value of type etcdserverpb.RangeRequest_SortOrder",
            ),
            (
                r#"{"serializable":"true"}"#,
                "json: cannot unmarshal string into Go value of type bool",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(read(&desc, text).unwrap_err(), want, "for {text}");
        }
    }

    #[test]
    fn responses_write_like_jsonpb() {
        let response = proto::etcdserverpb::RangeResponse {
            header: Some(proto::etcdserverpb::ResponseHeader {
                cluster_id: 1,
                revision: 2,
                ..Default::default()
            }),
            kvs: vec![proto::mvccpb::KeyValue {
                key: b"foo".to_vec(),
                version: 1,
                ..Default::default()
            }],
            count: 1,
            more: false,
        };
        let desc = super::super::pool()
            .get_message_by_name("etcdserverpb.RangeResponse")
            .expect("RangeResponse");
        let dynamic =
            DynamicMessage::decode(desc, response.encode_to_vec().as_slice()).expect("decodes");
        let out = write_message(&dynamic).expect("serializes");
        assert_eq!(
            out,
            r#"{"header":{"cluster_id":"1","revision":"2"},"kvs":[{"key":"Zm9v","version":"1"}],"count":"1"}"#
        );
        let mut s = String::new();
        write_string(&mut s, "<a&\"\n\u{1}");
        assert_eq!(s, r#""\u003ca\u0026\"\n\u0001""#);
    }
}

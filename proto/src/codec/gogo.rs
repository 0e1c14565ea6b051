//! etcd 3.4's decode errors, reproduced: a replay of the `Unmarshal` methods
//! that gogo/protobuf (`plugin/unmarshal`) generated for etcd's messages.
//!
//! 1. On first use, [`SCHEMA`] decodes the `FileDescriptorSet` written by
//!    `build.rs` into, per message full name, gogo's message name and, per
//!    field number, the Go field name and the field's wire shape.
//! 2. [`unmarshal_error`] walks the bytes exactly as the generated code does,
//!    with Go's `int` arithmetic (wrapping `i64`):
//!    - each tag is a varint (`proto: integer overflow` past 64 bits,
//!      `unexpected EOF` when the bytes end); its field number is the tag
//!      shifted by 3 and truncated to `int32`;
//!    - wire type 4 is `proto: <Msg>: wiretype end group for non-group`, then
//!      a field number <= 0 is `proto: <Msg>: illegal tag <n> (wire type
//!      <tag>)` (gogo prints the whole tag there, not the wire type);
//!    - a known field with another wire type is `proto: wrong wireType = <w>
//!      for field <GoName>`; repeated scalars and enums take both their own
//!      wire type and the packed form;
//!    - a length-delimited field has a varint length: negative is `proto:
//!      negative length found during unmarshaling`, past the end `unexpected
//!      EOF`; an embedded message is walked in turn and its error is the
//!      answer;
//!    - an unknown field is skipped by `skip<File>`, which knows wire types
//!      0, 1, 2, 5 and groups (3 ... 4) and answers `proto: illegal wireType
//!      <w>` for 6 and 7; the caller checks the skipped length.
//! 3. It returns gogo's error text, or `None` when gogo would accept the
//!    bytes, would panic instead (etcd 3.4's generated code lacks the overflow
//!    checks that later gogo versions added), or the type is not modelled
//!    (map and group fields: etcd's request messages have neither).
//!
//! Both walks keep their own stacks instead of recursing, so a request of
//! deeply nested messages or groups cannot overflow the thread's stack.
//!
//! Checked against etcd 3.4.23: the schema gives the same field numbers, Go
//! names and shapes as every `Unmarshal` in etcd's `.pb.go` files, and the
//! walk gave etcd's outcome for 8,300 seeded random malformed bodies sent to
//! KV, Lease and Maintenance methods; the tests keep the hand-picked cases.

use std::collections::HashMap;
use std::sync::LazyLock;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// The descriptors of every compiled proto file (see `build.rs`).
static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/oxcd_descriptor.bin"));

/// The modelled messages, decoded from [`DESCRIPTOR_SET`] on first use.
static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    Schema::from_descriptors(&FileDescriptorSet::decode(DESCRIPTOR_SET).unwrap_or_default())
});

const ERR_UNEXPECTED_EOF: &str = "unexpected EOF";
const ERR_INT_OVERFLOW: &str = "proto: integer overflow";
const ERR_INVALID_LENGTH: &str = "proto: negative length found during unmarshaling";

/// Go identifiers gogo suffixes with `_` so that fields do not clash with the
/// generated methods (`methodNames`, plus `Size` for sizer messages such as
/// etcd's).
const GO_METHOD_NAMES: [&str; 14] = [
    "Reset",
    "String",
    "ProtoMessage",
    "Marshal",
    "Unmarshal",
    "ExtensionRangeArray",
    "ExtensionMap",
    "Descriptor",
    "MarshalTo",
    "Equal",
    "VerboseEqual",
    "GoString",
    "ProtoSize",
    "Size",
];

/// The error text etcd 3.4's generated `Unmarshal` of the message named
/// `full_name` (e.g. `etcdserverpb.PutRequest`) returns for `bytes`, or
/// `None` when it has no text to give (see the module docs).
pub(crate) fn unmarshal_error(full_name: &str, bytes: &[u8]) -> Option<String> {
    let root = SCHEMA.messages.get(full_name)?;
    match unmarshal(&SCHEMA, root, bytes) {
        Ok(()) | Err(Stop::NoText) => None,
        Err(Stop::Error(text)) => Some(text),
    }
}

/// Why the replayed `Unmarshal` stops before the end of its bytes.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The generated code returns this error.
    Error(String),
    /// The generated code would panic (an index wrapped around), or the bytes
    /// reach a message type that is not modelled.
    NoText,
}

fn error(text: &str) -> Stop {
    Stop::Error(text.to_string())
}

/// Every modelled message, by full proto name (`package.Outer.Inner`).
#[derive(Debug, Default)]
struct Schema {
    messages: HashMap<String, MessageInfo>,
}

#[derive(Debug)]
struct MessageInfo {
    /// The proto name without package or enclosing messages: gogo prints
    /// `message.GetName()` in its errors.
    name: String,
    fields: HashMap<i32, FieldInfo>,
}

#[derive(Debug)]
struct FieldInfo {
    /// gogo's Go field name; for a oneof member, its own (not the oneof's).
    go_name: String,
    shape: Shape,
}

/// How the generated code reads a field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// A singular scalar or enum.
    Scalar(Scalar),
    /// A repeated scalar or enum: one element, or (wire type 2) packed ones.
    Packable(Scalar),
    /// `string` or `bytes` (single or repeated).
    Bytes,
    /// An embedded message (single, repeated or in a oneof), by full name.
    Message(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Varint,
    Fixed64,
    Fixed32,
}

impl Scalar {
    fn wire_type(self) -> u64 {
        match self {
            Scalar::Varint => 0,
            Scalar::Fixed64 => 1,
            Scalar::Fixed32 => 5,
        }
    }
}

impl Schema {
    /// Builds the schema; a message with a map or group field is left out
    /// (gogo's code for those is not replayed), as is anything that
    /// references it.
    fn from_descriptors(set: &FileDescriptorSet) -> Schema {
        let mut all = HashMap::new();
        for file in &set.file {
            for message in &file.message_type {
                collect(file.package(), message, &mut all);
            }
        }
        let mut messages = HashMap::new();
        for (full_name, message) in &all {
            let fields = message
                .field
                .iter()
                .map(|field| {
                    let shape = shape(field, &all)?;
                    let go_name = go_field_name(field.name());
                    Some((field.number(), FieldInfo { go_name, shape }))
                })
                .collect::<Option<HashMap<_, _>>>();
            if let Some(fields) = fields {
                let name = message.name().to_string();
                messages.insert(full_name.clone(), MessageInfo { name, fields });
            }
        }
        Schema { messages }
    }
}

/// Adds `message` and its nested messages to `all`, by full name.
fn collect<'a>(
    scope: &str,
    message: &'a DescriptorProto,
    all: &mut HashMap<String, &'a DescriptorProto>,
) {
    let full_name = if scope.is_empty() {
        message.name().to_string()
    } else {
        format!("{scope}.{}", message.name())
    };
    for nested in &message.nested_type {
        collect(&full_name, nested, all);
    }
    all.insert(full_name, message);
}

/// The field's shape, or `None` for groups and maps.
fn shape(
    field: &prost_types::FieldDescriptorProto,
    all: &HashMap<String, &DescriptorProto>,
) -> Option<Shape> {
    let scalar = match field.r#type() {
        Type::Int64
        | Type::Uint64
        | Type::Int32
        | Type::Bool
        | Type::Uint32
        | Type::Enum
        | Type::Sint32
        | Type::Sint64 => Scalar::Varint,
        Type::Double | Type::Fixed64 | Type::Sfixed64 => Scalar::Fixed64,
        Type::Float | Type::Fixed32 | Type::Sfixed32 => Scalar::Fixed32,
        Type::String | Type::Bytes => return Some(Shape::Bytes),
        Type::Group => return None,
        Type::Message => {
            let type_name = field.type_name().trim_start_matches('.');
            let is_map = all
                .get(type_name)
                .and_then(|m| m.options.as_ref())
                .is_some_and(|o| o.map_entry());
            return (!is_map).then(|| Shape::Message(type_name.to_string()));
        }
    };
    Some(if field.label() == Label::Repeated {
        Shape::Packable(scalar)
    } else {
        Shape::Scalar(scalar)
    })
}

/// gogo's Go name for a proto field: `generator.CamelCase`, with `_` added
/// to names that clash with generated methods.
fn go_field_name(proto_name: &str) -> String {
    let name = camel_case(proto_name);
    if GO_METHOD_NAMES.contains(&name.as_str()) {
        format!("{name}_")
    } else {
        name
    }
}

/// gogo's `generator.CamelCase`: words start at `_` or an upper-case letter,
/// digits are words of their own; a `_` before a lower-case letter is dropped
/// (`range_end` -> `RangeEnd`), any other stays (`remaining_TTL` ->
/// `Remaining_TTL`); a leading `_` becomes `X`.
fn camel_case(s: &str) -> String {
    let s = s.as_bytes();
    let mut out = Vec::with_capacity(s.len() + 1);
    let mut i = 0;
    if s.first() == Some(&b'_') {
        out.push(b'X');
        i = 1;
    }
    while i < s.len() {
        let c = s[i];
        let next_is_lower = s.get(i + 1).is_some_and(u8::is_ascii_lowercase);
        if c == b'_' && next_is_lower {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            out.push(c);
            i += 1;
            continue;
        }
        out.push(c.to_ascii_uppercase());
        while s.get(i + 1).is_some_and(u8::is_ascii_lowercase) {
            i += 1;
            out.push(s[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `len(dAtA)` as a Go `int`.
fn go_len(data: &[u8]) -> i64 {
    i64::try_from(data.len()).unwrap_or(i64::MAX)
}

/// The generated varint loop: reads at `*i` (a Go index, possibly wrapped
/// negative, where Go would panic) and leaves `*i` after the varint.
fn varint(data: &[u8], i: &mut i64) -> Result<u64, Stop> {
    let l = go_len(data);
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        if shift >= 64 {
            return Err(error(ERR_INT_OVERFLOW));
        }
        if *i >= l {
            return Err(error(ERR_UNEXPECTED_EOF));
        }
        let at = usize::try_from(*i).map_err(|_| Stop::NoText)?;
        let b = data[at];
        *i += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// A length read into a Go `int`: the varint's bits, as signed.
fn length(data: &[u8], i: &mut i64) -> Result<i64, Stop> {
    varint(data, i).map(|v| v as i64)
}

/// One scalar element, read as the generated code reads it.
fn scalar(data: &[u8], i: &mut i64, scalar: Scalar) -> Result<(), Stop> {
    let width = match scalar {
        Scalar::Varint => return varint(data, i).map(drop),
        Scalar::Fixed64 => 8,
        Scalar::Fixed32 => 4,
    };
    if i.wrapping_add(width) > go_len(data) {
        return Err(error(ERR_UNEXPECTED_EOF));
    }
    *i = i.wrapping_add(width);
    Ok(())
}

/// One `Unmarshal` call in progress: its message, its bytes, its index, and
/// where to resume once the embedded message it is waiting for is done.
struct Frame<'a> {
    message: &'a MessageInfo,
    data: &'a [u8],
    i: i64,
    resume_at: i64,
}

/// The generated `Unmarshal` of `root` over `data`, embedded messages
/// included.
fn unmarshal(schema: &Schema, root: &MessageInfo, data: &[u8]) -> Result<(), Stop> {
    let mut stack = vec![Frame {
        message: root,
        data,
        i: 0,
        resume_at: 0,
    }];
    while let Some(frame) = stack.last_mut() {
        let d = frame.data;
        let l = go_len(d);
        if frame.i >= l {
            if frame.i > l {
                return Err(error(ERR_UNEXPECTED_EOF));
            }
            stack.pop();
            if let Some(parent) = stack.last_mut() {
                parent.i = parent.resume_at;
            }
            continue;
        }
        let message = frame.message;
        let mut i = frame.i;
        let pre_index = i;
        let wire = varint(d, &mut i)?;
        let field_num = (wire >> 3) as i32;
        let wire_type = wire & 0x7;
        if wire_type == 4 {
            return Err(Stop::Error(format!(
                "proto: {}: wiretype end group for non-group",
                message.name
            )));
        }
        if field_num <= 0 {
            return Err(Stop::Error(format!(
                "proto: {}: illegal tag {field_num} (wire type {wire})",
                message.name
            )));
        }
        let Some(field) = message.fields.get(&field_num) else {
            let skippy = skip(&d[usize::try_from(pre_index).map_err(|_| Stop::NoText)?..])?;
            if skippy < 0 {
                return Err(error(ERR_INVALID_LENGTH));
            }
            if pre_index.wrapping_add(skippy) > l {
                return Err(error(ERR_UNEXPECTED_EOF));
            }
            frame.i = pre_index.wrapping_add(skippy);
            continue;
        };
        let wrong_wire_type = || {
            Stop::Error(format!(
                "proto: wrong wireType = {wire_type} for field {}",
                field.go_name
            ))
        };
        match &field.shape {
            Shape::Scalar(kind) => {
                if wire_type != kind.wire_type() {
                    return Err(wrong_wire_type());
                }
                scalar(d, &mut i, *kind)?;
                frame.i = i;
            }
            Shape::Packable(kind) => {
                if wire_type == kind.wire_type() {
                    scalar(d, &mut i, *kind)?;
                } else if wire_type == 2 {
                    let packed_len = length(d, &mut i)?;
                    if packed_len < 0 {
                        return Err(error(ERR_INVALID_LENGTH));
                    }
                    let post_index = i.wrapping_add(packed_len);
                    if post_index > l {
                        return Err(error(ERR_UNEXPECTED_EOF));
                    }
                    // Elements are bounded by the whole message, not by the
                    // packed length: the last one may run past it.
                    while i < post_index {
                        scalar(d, &mut i, *kind)?;
                    }
                } else {
                    return Err(wrong_wire_type());
                }
                frame.i = i;
            }
            Shape::Bytes | Shape::Message(_) => {
                if wire_type != 2 {
                    return Err(wrong_wire_type());
                }
                let len = length(d, &mut i)?;
                if len < 0 {
                    return Err(error(ERR_INVALID_LENGTH));
                }
                let post_index = i.wrapping_add(len);
                if post_index > l {
                    return Err(error(ERR_UNEXPECTED_EOF));
                }
                // A wrapped end makes Go's `dAtA[iNdEx:postIndex]` panic.
                let (Ok(start), Ok(end)) = (usize::try_from(i), usize::try_from(post_index)) else {
                    return Err(Stop::NoText);
                };
                if end < start {
                    return Err(Stop::NoText);
                }
                match &field.shape {
                    Shape::Message(type_name) => {
                        let embedded = schema.messages.get(type_name).ok_or(Stop::NoText)?;
                        frame.resume_at = post_index;
                        stack.push(Frame {
                            message: embedded,
                            data: &d[start..end],
                            i: 0,
                            resume_at: 0,
                        });
                    }
                    _ => frame.i = post_index,
                }
            }
        }
    }
    Ok(())
}

/// Where one turn of a group loop in `skip` leads.
enum GroupTurn {
    /// The tag read ends the group; the index after it.
    End(i64),
    /// Another field starts at this offset: skipped by a nested call.
    Field(usize),
}

/// One turn of the group loop in Go's `skip` at index `start`: read a tag,
/// stop at an end-group tag, otherwise skip the field that starts there.
fn group_turn(data: &[u8], start: i64) -> Result<GroupTurn, Stop> {
    let mut i = start;
    let inner_wire = varint(data, &mut i)?;
    if inner_wire & 0x7 == 4 {
        return Ok(GroupTurn::End(i));
    }
    usize::try_from(start)
        .map(GroupTurn::Field)
        .map_err(|_| Stop::NoText)
}

/// gogo's `skip<File>` (the same in every etcd `.pb.go`): the length of the
/// unknown field at the start of `data`, unchecked against the end (its
/// caller checks), or why it cannot be skipped.
///
/// Go's version recurses into each field of a group; here `calls` holds the
/// start (in `data`) of each enclosing call, all waiting in their group loop.
fn skip(data: &[u8]) -> Result<i64, Stop> {
    let mut calls: Vec<usize> = Vec::new();
    let mut base = 0usize;
    'call: loop {
        let d = &data[base..];
        let mut i = 0i64;
        if d.is_empty() {
            // Go's `panic("unreachable")`: callers never pass empty bytes.
            return Err(Stop::NoText);
        }
        let wire = varint(d, &mut i)?;
        let mut ret = match wire & 0x7 {
            0 => {
                varint(d, &mut i)?;
                i
            }
            1 => i.wrapping_add(8),
            2 => {
                let len = length(d, &mut i)?;
                i = i.wrapping_add(len);
                if len < 0 {
                    return Err(error(ERR_INVALID_LENGTH));
                }
                i
            }
            3 => match group_turn(d, i)? {
                GroupTurn::End(end) => end,
                GroupTurn::Field(start) => {
                    calls.push(base);
                    base += start;
                    continue 'call;
                }
            },
            4 => i,
            5 => i.wrapping_add(4),
            wire_type => return Err(Stop::Error(format!("proto: illegal wireType {wire_type}"))),
        };
        // Return `ret` to the enclosing group loops, innermost first.
        while let Some(outer) = calls.pop() {
            let start = i64::try_from(base - outer).map_err(|_| Stop::NoText)?;
            match group_turn(&data[outer..], start.wrapping_add(ret))? {
                GroupTurn::End(end) => {
                    ret = end;
                    base = outer;
                }
                GroupTurn::Field(start) => {
                    calls.push(outer);
                    base = outer + start;
                    continue 'call;
                }
            }
        }
        return Ok(ret);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// (message in `etcdserverpb`, bytes in hex, etcd's reason, what the
    /// bytes are). Reasons observed on etcd 3.4.23: the bytes were sent raw
    /// to the method taking the message (KV/Put, KV/Range, KV/Txn,
    /// Maintenance/Status, Lease/LeaseGrant, Watch/Watch,
    /// Auth/RoleGrantPermission, Auth/UserAdd), and the reason is etcd's
    /// `Internal` message without grpc-go's prefix. `None`: no reason, either
    /// because etcd decodes the bytes or because its decoder panics.
    const OBSERVED: &[(&str, &str, Option<&str>, &str)] = &[
        (
            "PutRequest",
            "ffffffffffffffffffff01",
            Some("proto: integer overflow"),
            "tag varint longer than 64 bits",
        ),
        (
            "PutRequest",
            "0f01",
            Some("proto: wrong wireType = 7 for field Key"),
            "field 1 with wire type 7",
        ),
        (
            "PutRequest",
            "0b",
            Some("proto: wrong wireType = 3 for field Key"),
            "field 1 with wire type 3",
        ),
        (
            "PutRequest",
            "1101",
            Some("proto: wrong wireType = 1 for field Value"),
            "field 2 with wire type 1",
        ),
        (
            "PutRequest",
            "1a00",
            Some("proto: wrong wireType = 2 for field Lease"),
            "field 3 (int64) with wire type 2",
        ),
        (
            "PutRequest",
            "2200",
            Some("proto: wrong wireType = 2 for field PrevKv"),
            "field 4 (bool) with wire type 2",
        ),
        (
            "PutRequest",
            "2d00000000",
            Some("proto: wrong wireType = 5 for field IgnoreValue"),
            "field 5 (bool) with wire type 5",
        ),
        (
            "PutRequest",
            "0a0561",
            Some("unexpected EOF"),
            "field 1 length past the end",
        ),
        (
            "PutRequest",
            "0a016139",
            Some("unexpected EOF"),
            "tag cut short after a complete field",
        ),
        (
            "PutRequest",
            "18ffffff",
            Some("unexpected EOF"),
            "unterminated varint value",
        ),
        (
            "PutRequest",
            "18ffffffffffffffffffff01",
            Some("proto: integer overflow"),
            "varint value longer than 64 bits",
        ),
        (
            "PutRequest",
            "0affffffffffffffffff01",
            Some("proto: negative length found during unmarshaling"),
            "negative length",
        ),
        (
            "PutRequest",
            "1c",
            Some("proto: PutRequest: wiretype end group for non-group"),
            "end group on a known field",
        ),
        (
            "PutRequest",
            "3c",
            Some("proto: PutRequest: wiretype end group for non-group"),
            "end group on an unknown field",
        ),
        (
            "PutRequest",
            "00",
            Some("proto: PutRequest: illegal tag 0 (wire type 0)"),
            "field number 0",
        ),
        (
            "PutRequest",
            "0200",
            Some("proto: PutRequest: illegal tag 0 (wire type 2)"),
            "field number 0, wire type 2: gogo prints the whole tag",
        ),
        (
            "PutRequest",
            "8080808040",
            Some("proto: PutRequest: illegal tag -2147483648 (wire type 17179869184)"),
            "field number 2^31 is int32 -2^31",
        ),
        (
            "PutRequest",
            "828080804000",
            Some("proto: PutRequest: illegal tag -2147483648 (wire type 17179869186)"),
            "field number 2^31, wire type 2",
        ),
        (
            "PutRequest",
            "8f808080800101",
            Some("proto: wrong wireType = 7 for field Key"),
            "field number 2^32+1 truncates to field 1",
        ),
        (
            "PutRequest",
            "3f",
            Some("proto: illegal wireType 7"),
            "unknown field, wire type 7",
        ),
        (
            "PutRequest",
            "3e",
            Some("proto: illegal wireType 6"),
            "unknown field, wire type 6",
        ),
        (
            "PutRequest",
            "390102",
            Some("unexpected EOF"),
            "unknown fixed64 cut short",
        ),
        (
            "PutRequest",
            "3a0561",
            Some("unexpected EOF"),
            "unknown bytes past the end",
        ),
        (
            "PutRequest",
            "3affffffffffffffffff01",
            Some("proto: negative length found during unmarshaling"),
            "unknown bytes, negative length",
        ),
        (
            "PutRequest",
            "38ffffffffffffffffffff01",
            Some("proto: integer overflow"),
            "unknown varint longer than 64 bits",
        ),
        (
            "PutRequest",
            "3b",
            Some("unexpected EOF"),
            "unknown group never ended",
        ),
        (
            "PutRequest",
            "3b0f",
            Some("proto: illegal wireType 7"),
            "unknown group holding wire type 7",
        ),
        (
            "PutRequest",
            "3b3801",
            Some("unexpected EOF"),
            "unknown group holding a field, never ended",
        ),
        (
            "PutRequest",
            "3b380184",
            Some("unexpected EOF"),
            "unknown group, end tag cut short",
        ),
        (
            "PutRequest",
            "3b3801bc01",
            None,
            "unknown group ended by another field's end tag",
        ), // etcd decodes it (then: key is not provided)
        (
            "PutRequest",
            "3b3b3b3b3b3b3c3c3c3c3c3c",
            None,
            "nested unknown groups, all ended",
        ), // etcd decodes it (then: key is not provided)
        (
            "PutRequest",
            "3b3b3b3b3b",
            Some("unexpected EOF"),
            "nested unknown groups, none ended",
        ),
        (
            "RangeRequest",
            "15",
            Some("proto: wrong wireType = 5 for field RangeEnd"),
            "field 2 (bytes) with wire type 5",
        ),
        (
            "RangeRequest",
            "2a00",
            Some("proto: wrong wireType = 2 for field SortOrder"),
            "field 5 (enum) with wire type 2",
        ),
        (
            "RangeRequest",
            "4a00",
            Some("proto: wrong wireType = 2 for field CountOnly"),
            "field 9 (bool) with wire type 2",
        ),
        (
            "RangeRequest",
            "5500000000",
            Some("proto: wrong wireType = 5 for field MinModRevision"),
            "field 10 (int64) with wire type 5",
        ),
        (
            "RangeRequest",
            "6a00",
            Some("proto: wrong wireType = 2 for field MaxCreateRevision"),
            "field 13 (int64) with wire type 2",
        ),
        (
            "RangeRequest",
            "0a01",
            Some("unexpected EOF"),
            "field 1 length past the end",
        ),
        (
            "TxnRequest",
            "12020f01",
            Some("proto: wrong wireType = 7 for field RequestRange"),
            "success[0] (RequestOp) field 1 with wire type 7",
        ),
        (
            "TxnRequest",
            "12040a020f01",
            Some("proto: wrong wireType = 7 for field Key"),
            "success[0].request_range field 1 with wire type 7",
        ),
        (
            "TxnRequest",
            "12030a0561",
            Some("unexpected EOF"),
            "success[0].request_range longer than success[0]",
        ),
        (
            "TxnRequest",
            "120104",
            Some("proto: RequestOp: wiretype end group for non-group"),
            "success[0] holds an end group",
        ),
        (
            "TxnRequest",
            "0a0100",
            Some("proto: Compare: illegal tag 0 (wire type 0)"),
            "compare[0] holds field number 0",
        ),
        (
            "TxnRequest",
            "0a022200",
            Some("proto: wrong wireType = 2 for field Version"),
            "compare[0].version (oneof member) with wire type 2",
        ),
        (
            "TxnRequest",
            "0a03800400",
            Some("proto: wrong wireType = 0 for field RangeEnd"),
            "compare[0].range_end (field 64) with wire type 0",
        ),
        (
            "TxnRequest",
            "0a020f01",
            Some("proto: wrong wireType = 7 for field Result"),
            "compare[0] field 1 with wire type 7",
        ),
        (
            "TxnRequest",
            "0a021c",
            Some("unexpected EOF"),
            "compare[0] holds an unended group",
        ),
        (
            "StatusRequest",
            "08",
            Some("unexpected EOF"),
            "unknown varint without a value",
        ),
        (
            "StatusRequest",
            "0f",
            Some("proto: illegal wireType 7"),
            "unknown field, wire type 7",
        ),
        (
            "StatusRequest",
            "090102",
            Some("unexpected EOF"),
            "unknown fixed64 cut short",
        ),
        (
            "StatusRequest",
            "0affffffffffffffffff01",
            Some("proto: negative length found during unmarshaling"),
            "unknown bytes, negative length",
        ),
        (
            "StatusRequest",
            "0afeffffffffffffff7f",
            Some("proto: negative length found during unmarshaling"),
            "unknown bytes whose end wraps negative",
        ),
        (
            "StatusRequest",
            "00",
            Some("proto: StatusRequest: illegal tag 0 (wire type 0)"),
            "field number 0",
        ),
        (
            "StatusRequest",
            "0b0a8080808080808080400c",
            Some("unexpected EOF"),
            "huge length inside an unknown group",
        ),
        (
            "LeaseGrantRequest",
            "0a00",
            Some("proto: wrong wireType = 2 for field TTL"),
            "field 1 (TTL) with wire type 2",
        ),
        (
            "LeaseGrantRequest",
            "1100",
            Some("proto: wrong wireType = 1 for field ID"),
            "field 2 (ID) with wire type 1",
        ),
        (
            "WatchRequest",
            "0f01",
            Some("proto: wrong wireType = 7 for field CreateRequest"),
            "create_request field 1 with wire type 7",
        ),
        (
            "WatchRequest",
            "0a032a0180",
            Some("unexpected EOF"),
            "packed filter element runs past the message",
        ),
        (
            "WatchRequest",
            "0a022d00",
            Some("proto: wrong wireType = 5 for field Filters"),
            "create_request.filters with wire type 5",
        ),
        (
            "AuthRoleGrantPermissionRequest",
            "12020f01",
            Some("proto: wrong wireType = 7 for field PermType"),
            "perm.permType with wire type 7",
        ),
        (
            "AuthRoleGrantPermissionRequest",
            "120200ff",
            Some("proto: Permission: illegal tag 0 (wire type 0)"),
            "perm holds field number 0",
        ),
        ("StatusRequest", "0d01020304", None, "unknown fixed32"), // etcd decodes it
        ("StatusRequest", "0b0c", None, "unknown group, ended"),  // etcd decodes it
        (
            "StatusRequest",
            "0b1c",
            None,
            "unknown group ended by another field's end tag",
        ), // etcd decodes it
        ("StatusRequest", "0b0b0c0c", None, "nested unknown groups"), // etcd decodes it
        (
            "WatchRequest",
            "0a042a018001",
            None,
            "packed filter element runs past the packed length",
        ), // etcd decodes it (the watch stays open)
        ("WatchRequest", "0a022a00", None, "empty packed filters"), // etcd decodes it (the watch stays open)
        (
            "WatchRequest",
            "0a0a2affffffffffffffff7f",
            None,
            "packed length whose end wraps: the loop never runs",
        ), // etcd decodes it (the watch stays open)
        (
            "AuthUserAddRequest",
            "0a02ff61",
            None,
            "bytes that are not UTF-8 in a string",
        ), // etcd decodes it
        (
            "PutRequest",
            "0affffffffffffffff7f",
            None,
            "key length whose end wraps",
        ), // etcd panics: slice bounds out of range
        (
            "StatusRequest",
            "08000af5ffffffffffffff7f",
            None,
            "unknown field whose skip wraps the index",
        ), // etcd panics: slice bounds out of range
        (
            "StatusRequest",
            "0b0affffffffffffffff7f",
            None,
            "unknown group whose inner skip wraps the index",
        ), // etcd panics: slice bounds out of range
    ];

    #[test]
    fn reasons_match_etcd_3_4() {
        for (message, bytes, expected, what) in OBSERVED {
            let actual = unmarshal_error(&format!("etcdserverpb.{message}"), &hex(bytes));
            assert_eq!(actual.as_deref(), *expected, "{message} {bytes}: {what}");
        }
    }

    #[test]
    fn panics_in_go_are_told_apart_from_acceptance() {
        let status = &SCHEMA.messages["etcdserverpb.StatusRequest"];
        let accepted = hex("0b0c");
        assert_eq!(unmarshal(&SCHEMA, status, &accepted), Ok(()));
        for wraps in ["08000af5ffffffffffffff7f", "0b0affffffffffffffff7f"] {
            assert_eq!(
                unmarshal(&SCHEMA, status, &hex(wraps)),
                Err(Stop::NoText),
                "{wraps}"
            );
        }
    }

    /// These three inputs were also sent to etcd 3.4.23 (Maintenance/Status,
    /// KV/Txn), which answered the same.
    #[test]
    fn deep_nesting_does_not_exhaust_the_stack() {
        const DEPTH: usize = 200_000;
        // Groups: never ended, then all ended.
        let open = vec![0x0b; DEPTH];
        let error = unmarshal_error("etcdserverpb.StatusRequest", &open);
        assert_eq!(error.as_deref(), Some(ERR_UNEXPECTED_EOF));
        let mut closed = open.clone();
        closed.extend(std::iter::repeat_n(0x0c, DEPTH));
        assert_eq!(unmarshal_error("etcdserverpb.StatusRequest", &closed), None);
        // Txn inside Txn (success[0].request_txn), the innermost one with a
        // compare of wire type 7.
        let mut txn = vec![0x0f, 0x01];
        for _ in 0..DEPTH / 10 {
            let mut op = vec![0x22];
            op.extend(encoded_len(txn.len()));
            op.extend(&txn);
            txn = vec![0x12];
            txn.extend(encoded_len(op.len()));
            txn.extend(op);
        }
        let error = unmarshal_error("etcdserverpb.TxnRequest", &txn);
        assert_eq!(
            error.as_deref(),
            Some("proto: wrong wireType = 7 for field Compare")
        );
    }

    fn encoded_len(mut len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out
    }

    #[test]
    fn unknown_messages_have_no_reason() {
        assert_eq!(unmarshal_error("etcdserverpb.NoSuchRequest", &[0x0f]), None);
    }

    #[test]
    fn camel_case_follows_gogo() {
        for (proto, go) in [
            ("key", "Key"),
            ("range_end", "RangeEnd"),
            ("prev_kv", "PrevKv"),
            ("TTL", "TTL"),
            ("ID", "ID"),
            ("remaining_TTL", "Remaining_TTL"),
            ("peerURLs", "PeerURLs"),
            ("request_delete_range", "RequestDeleteRange"),
            ("is_learner", "IsLearner"),
            ("v3_field", "V3Field"),
            ("a1b", "A1B"),
            ("_hidden", "XHidden"),
            ("raft_term", "RaftTerm"),
        ] {
            assert_eq!(camel_case(proto), go, "CamelCase({proto})");
        }
    }

    #[test]
    fn clashing_field_names_get_an_underscore() {
        assert_eq!(go_field_name("size"), "Size_");
        assert_eq!(go_field_name("descriptor"), "Descriptor_");
        assert_eq!(go_field_name("sizes"), "Sizes");
    }

    #[test]
    fn schema_covers_the_etcd_requests() {
        let put = &SCHEMA.messages["etcdserverpb.PutRequest"];
        assert_eq!(put.name, "PutRequest");
        assert_eq!(put.fields[&1].go_name, "Key");
        assert_eq!(put.fields[&1].shape, Shape::Bytes);
        assert_eq!(put.fields[&4].go_name, "PrevKv");
        assert_eq!(put.fields[&3].shape, Shape::Scalar(Scalar::Varint));
        let op = &SCHEMA.messages["etcdserverpb.RequestOp"];
        assert_eq!(op.fields[&1].go_name, "RequestRange");
        assert_eq!(
            op.fields[&4].shape,
            Shape::Message("etcdserverpb.TxnRequest".to_string())
        );
        let watch = &SCHEMA.messages["etcdserverpb.WatchCreateRequest"];
        assert_eq!(watch.fields[&5].shape, Shape::Packable(Scalar::Varint));
        assert!(SCHEMA.messages.contains_key("mvccpb.KeyValue"));
        assert!(SCHEMA.messages.contains_key("v3lockpb.LockRequest"));
    }
}

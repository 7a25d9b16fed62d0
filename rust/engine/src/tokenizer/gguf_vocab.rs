//! Reads a [`Vocab`] from a GGUF file's `tokenizer.ggml.*` metadata.

use super::vocab::{SpecialIds, Vocab};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;

pub fn read_vocab(file: &GgufFile) -> Result<Vocab> {
    let model = file
        .get_str("tokenizer.ggml.model")?
        .ok_or_else(|| Error::Format("tokenizer.ggml.model is missing; the file has no tokenizer".into()))?
        .to_string();
    let tokens = file
        .get_str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| Error::Format("tokenizer.ggml.tokens is missing; the file has no vocabulary".into()))?
        .clone();

    Ok(Vocab {
        model,
        pre: file.get_str("tokenizer.ggml.pre")?.map(str::to_string),
        tokens,
        scores: read_scores(file)?,
        token_types: file.get_i32_array("tokenizer.ggml.token_type")?,
        merges: file.get_str_array("tokenizer.ggml.merges")?.cloned(),
        special_ids: read_special_ids(file)?,
        add_bos: file.get_bool("tokenizer.ggml.add_bos_token")?,
        add_eos: file.get_bool("tokenizer.ggml.add_eos_token")?,
        add_space_prefix: file.get_bool("tokenizer.ggml.add_space_prefix")?,
    })
}

/// Scores are F32, or I32 in some converted files (llama.cpp accepts both).
fn read_scores(file: &GgufFile) -> Result<Option<Vec<f32>>> {
    const KEY: &str = "tokenizer.ggml.scores";
    match file.get_f32_array(KEY) {
        Ok(scores) => Ok(scores.map(<[f32]>::to_vec)),
        Err(f32_error) => match file.get_i32_array(KEY) {
            Ok(scores) => Ok(scores.map(|s| s.into_iter().map(|v| v as f32).collect())),
            Err(_) => Err(f32_error),
        },
    }
}

fn read_special_ids(file: &GgufFile) -> Result<SpecialIds> {
    let id = |key: &str| file.get_u64(&format!("tokenizer.ggml.{key}"));
    Ok(SpecialIds {
        bos: id("bos_token_id")?,
        eos: id("eos_token_id")?,
        eot: id("eot_token_id")?,
        eom: id("eom_token_id")?,
        unknown: id("unknown_token_id")?,
        separator: id("seperator_token_id")?,
        padding: id("padding_token_id")?,
        mask: id("mask_token_id")?,
        // prefix/suffix/middle_token_id are the deprecated names.
        fim_pre: id("fim_pre_token_id")?.or(id("prefix_token_id")?),
        fim_suf: id("fim_suf_token_id")?.or(id("suffix_token_id")?),
        fim_mid: id("fim_mid_token_id")?.or(id("middle_token_id")?),
        fim_pad: id("fim_pad_token_id")?,
        fim_rep: id("fim_rep_token_id")?,
        fim_sep: id("fim_sep_token_id")?,
    })
}

//! The generation loop: prefill the prompt, then sample and decode one
//! token at a time until an end-of-generation token, the token limit or
//! the end of the context.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::model::{LogitsWanted, Session};
use crate::sampler::Sampler;

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token (not returned).
    Eog,
    /// `max_tokens` tokens were generated.
    Length,
    /// The context has no room for the next token.
    Context,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Eog => "eog",
            StopReason::Length => "length",
            StopReason::Context => "context",
        }
    }
}

/// The state of one generation; drive it with [`Generation::step`].
pub struct Generation {
    prompt: Vec<u32>,
    pub sampler: Sampler,
    pub max_tokens: usize,
    pub n_decoded: usize,
    pub stop: Option<StopReason>,
    pub prompt_seconds: f64,
    pub decode_seconds: f64,
    started: bool,
    last: Option<u32>,
}

impl Generation {
    pub fn new(prompt: Vec<u32>, sampler: Sampler, max_tokens: usize) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("the prompt must contain at least one token".into()));
        }
        if max_tokens == 0 {
            return Err(Error::InvalidArgument("max_tokens must be at least 1".into()));
        }
        Ok(Generation {
            prompt,
            sampler,
            max_tokens,
            n_decoded: 0,
            stop: None,
            prompt_seconds: 0.0,
            decode_seconds: 0.0,
            started: false,
            last: None,
        })
    }

    pub fn n_prompt(&self) -> usize {
        self.prompt.len()
    }

    /// Returns the next token, or `None` once generation has stopped
    /// (then [`Generation::stop`] says why).
    pub fn step(&mut self, session: &mut Session) -> Result<Option<u32>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        let t0 = Instant::now();
        let mut logits = if !self.started {
            let logits = session.eval(&self.prompt, LogitsWanted::Last)?;
            self.started = true;
            self.prompt_seconds = t0.elapsed().as_secs_f64();
            logits
        } else {
            let last = self.last.expect("a token was sampled before this step");
            if session.n_past() >= session.n_ctx() {
                self.stop = Some(StopReason::Context);
                return Ok(None);
            }
            let logits = session.eval(&[last], LogitsWanted::Last)?;
            self.decode_seconds += t0.elapsed().as_secs_f64();
            logits
        };

        let t1 = Instant::now();
        let token = self.sampler.sample(&mut logits, &session.tokens);
        self.decode_seconds += t1.elapsed().as_secs_f64();

        if session.model.tokenizer.is_eog(token) {
            self.stop = Some(StopReason::Eog);
            return Ok(None);
        }
        self.n_decoded += 1;
        self.last = Some(token);
        if self.n_decoded >= self.max_tokens {
            self.stop = Some(StopReason::Length);
        }
        Ok(Some(token))
    }
}

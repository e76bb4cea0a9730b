//! Prompt-lookup decoding (a patch of the `summarize` project, see vendor/README.md).
//!
//! A summary copies much of its document. After the tokens written so far, the next few are
//! guessed from the context itself: the latest earlier place where its last two or three tokens
//! occur, and the tokens that followed there. The model then scores the last token and the guess
//! in one forward pass (a handful of rows cost little more than one on the CPU), each position is
//! sampled exactly as plain decoding would sample it, logits processors and penalties included,
//! and the guess is kept up to the first token the model would not have written. The output is
//! the output of plain greedy decoding; only the number of forward passes changes.
//!
//! `MISTRALRS_PROMPT_LOOKUP=N` (1-7) turns it on with guesses of up to N tokens; unset or 0
//! leaves decoding as it was. Only single-sequence decode steps with the plain KV cache use it.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use candle_core::{IndexOp, Result};
use rand_isaac::Isaac64Rng;

use super::sampling::{finish_or_add_toks_to_seq, sample_sequence};
use super::{CacheInstruction, EitherCache, ForwardInputsResult, Pipeline};
use crate::prefix_cacher::PrefixCacheManagerV2;
use crate::sequence::Sequence;

/// Longest guess, in tokens (`MISTRALRS_PROMPT_LOOKUP`); 0 is off. The CPU decode kernels take
/// up to 8 rows, the last token plus 7 guessed.
pub(crate) fn max_guess() -> usize {
    static GUESS: OnceLock<usize> = OnceLock::new();
    *GUESS.get_or_init(|| {
        std::env::var("MISTRALRS_PROMPT_LOOKUP")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0)
            .min(7)
    })
}

/// The tokens that followed the latest earlier occurrence of the context's last 3 (or else 2)
/// tokens, up to `max` of them; empty when there is no such occurrence.
pub(crate) fn guess(toks: &[u32], max: usize) -> Vec<u32> {
    if max == 0 {
        return Vec::new();
    }
    for n in [3usize, 2] {
        if toks.len() <= n {
            continue;
        }
        let suffix = &toks[toks.len() - n..];
        // Latest first, never the suffix itself.
        for start in (0..toks.len() - n).rev() {
            if &toks[start..start + n] == suffix {
                let from = start + n;
                let to = (from + max).min(toks.len());
                if from < to {
                    return toks[from..to].to_vec();
                }
            }
        }
    }
    Vec::new()
}

/// One decode step that scores the last token and `guess` together. `None` when this cache
/// kind is not supported (the caller then decodes one token as usual).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn step<P: Pipeline>(
    this: &mut P,
    seq: &mut Sequence,
    guess: Vec<u32>,
    prefix_cacher: &mut PrefixCacheManagerV2,
    disable_eos_stop: bool,
    rng: Arc<std::sync::Mutex<Isaac64Rng>>,
    pre_op: CacheInstruction,
    post_op: CacheInstruction,
) -> Result<Option<Duration>> {
    if !matches!(this.cache(), EitherCache::Normal(_) | EitherCache::Full(_)) {
        return Ok(None);
    }
    let Some(&last) = seq.get_toks().last() else {
        return Ok(None);
    };
    match pre_op {
        CacheInstruction::In => this.clone_in_cache(&mut [&mut *seq]),
        CacheInstruction::Nothing => (),
        CacheInstruction::Reset {
            load_preallocated_cache,
            reset_non_granular,
        } => this.set_none_cache(
            &mut [&mut *seq],
            reset_non_granular,
            false,
            load_preallocated_cache,
        ),
        _ => unreachable!("Unreachable PRE cache op."),
    }
    let initial_cache_len = match this.cache() {
        EitherCache::Full(full) => full.lock()[0]
            .as_ref()
            .map(|(k, _)| k.dims()[2])
            .unwrap_or(0),
        EitherCache::Normal(normal) => normal.lock().unwrap().0[0].current_seq_len(),
        EitherCache::Hybrid(_) => unreachable!("checked above"),
    };

    let start = Instant::now();
    let mut rows = Vec::with_capacity(guess.len() + 1);
    rows.push(last);
    rows.extend_from_slice(&guess);
    let n = rows.len();
    seq.set_prefill_toks(rows);
    let inputs = this.get_processor().inputs_processor().process_inputs(
        this.tokenizer(),
        &mut [&mut *seq],
        true, // the rows are fed like a prompt chunk after the cached context
        this.get_metadata().is_xlora,
        &this.device(),
        this.get_metadata().no_kv_cache,
        Some((n, initial_cache_len)),
        false,
        this.get_metadata().sliding_window,
        this.get_input_processor_config(),
        None,
        this.device_mapper(),
    );
    seq.reset_prefill_toks();
    let inputs = inputs.map_err(candle_core::Error::msg)?.inputs;
    let ForwardInputsResult::CausalGeneration { logits } = this.forward_inputs(inputs, false)?
    else {
        candle_core::bail!("prompt lookup needs `CausalGeneration` forward results");
    };

    // Sample each position as plain decoding would, with the guessed tokens so far in the
    // context, and keep the guess up to the first token the model would not have written.
    let return_logprobs = seq.return_logprobs();
    let mut accepted = Vec::with_capacity(n);
    let mut tmp = 0;
    for i in 0..n {
        let row = logits.i((.., i..i + 1, ..))?;
        let sample = sample_sequence(row, seq, return_logprobs, rng.clone(), false, false, false)
            .await;
        let sample = match sample {
            Ok(s) => s,
            Err(e) => {
                seq.remove_tmp_tok(tmp);
                return Err(e);
            }
        };
        let token = sample.token;
        accepted.push(sample);
        if i < guess.len() && token == guess[i] {
            seq.add_tmp_tok(token);
            tmp += 1;
        } else {
            break;
        }
    }
    if tmp > 0 {
        seq.remove_tmp_tok(tmp);
    }

    // The cache holds the last token and every guessed one; keep the last token and the
    // accepted guesses (the final sampled token is fed at the next step).
    let rejected = n - accepted.len();
    if rejected > 0 {
        match this.cache() {
            EitherCache::Full(full) => {
                for (k, v) in full.lock().iter_mut().flatten() {
                    *k = k.i((.., .., ..k.dims()[2] - rejected, ..))?;
                    *v = v.i((.., .., ..v.dims()[2] - rejected, ..))?;
                }
            }
            EitherCache::Normal(normal) => {
                for cache in &mut *normal.lock().unwrap().0 {
                    cache
                        .set_len(cache.current_seq_len() - rejected)
                        .map_err(|_| candle_core::Error::msg("KV cache set_len failed."))?;
                }
            }
            EitherCache::Hybrid(_) => unreachable!("checked above"),
        }
    }

    let eos_owned = this.get_metadata().eos_tok.clone();
    let eos_tok = (!disable_eos_stop).then_some(&eos_owned[..]);
    for sample in accepted {
        finish_or_add_toks_to_seq(this, prefix_cacher, seq, sample, eos_tok, true).await?;
        if seq.is_finished_paged_attn() {
            break;
        }
    }
    let exec = start.elapsed();

    match post_op {
        CacheInstruction::Out => this.clone_out_cache(&mut [&mut *seq]),
        CacheInstruction::Nothing => (),
        CacheInstruction::Reset {
            load_preallocated_cache,
            reset_non_granular,
        } => this.set_none_cache(
            &mut [&mut *seq],
            reset_non_granular,
            false,
            load_preallocated_cache,
        ),
        _ => unreachable!("Unreachable POST cache op."),
    }
    Ok(Some(exec))
}

#[cfg(test)]
mod tests {
    use super::guess;

    #[test]
    fn guesses_from_the_latest_earlier_occurrence() {
        // ... 7 8 9 | 1 2 3 4 5 | ... 1 2 3 -> 4 5
        let toks = [7, 8, 9, 1, 2, 3, 4, 5, 6, 1, 2, 3];
        assert_eq!(guess(&toks, 2), vec![4, 5]);
        assert_eq!(guess(&toks, 9), vec![4, 5, 6, 1, 2, 3]);
        // Only a two-token match.
        assert_eq!(guess(&[5, 1, 2, 9, 4, 1, 2], 3), vec![9, 4, 1]);
        assert!(guess(&[1, 2, 3, 4], 3).is_empty());
        assert!(guess(&[1, 2, 1, 2], 0).is_empty());
    }
}

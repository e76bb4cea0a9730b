//! `chunk` contract: the chunks concatenate to the input, none is empty, and each fits the
//! budget unless it is a single character. Counted both by chars and by whitespace words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use summarize::chunk::chunk;

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let budget = 1 + (first as usize % 199); // 1..=199
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let counters: [(&str, &dyn Fn(&str) -> usize); 2] = [("chars", &chars), ("words", &words)];
    for (name, count) in counters {
        let chunks = chunk(text, budget, count);
        assert_eq!(
            chunks.concat(),
            text,
            "{name}: chunks do not concatenate to the input (budget {budget})"
        );
        for c in &chunks {
            assert!(!c.is_empty(), "{name}: empty chunk (budget {budget})");
            assert!(
                count(c) <= budget || c.chars().count() == 1,
                "{name}: chunk {c:?} counts {} > budget {budget}",
                count(c)
            );
        }
    }
});

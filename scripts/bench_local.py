"""llama.cpp half of `make bench-local`, and the shared prompt.

  bench_local.py prompt MODEL OUTDIR   writes OUTDIR/system.txt and OUTDIR/user.txt: the text of
                                       samples/article.html, paragraphs repeated up to ~950 tokens
  bench_local.py run MODEL OUTDIR N [PENALTY]
                                       one llama.cpp run of that prompt, greedy, N new tokens,
                                       2 threads; prints one JSON line like examples/bench_local.rs
Runs in the llama-cpp-python venv (LLAMA_VENV).
"""
import html
import json
import os
import re
import sys
import time

from llama_cpp import Llama
import llama_cpp

SYSTEM = "You are a helpful assistant that writes short, faithful summaries."
TARGET_TOKENS = 950


def make_prompt(model, outdir):
    raw = open(os.path.join(os.path.dirname(__file__), "..", "samples", "article.html")).read()
    raw = re.sub(r"(?is)<(script|style|head)[^>]*>.*?</\1>", " ", raw)
    text = html.unescape(re.sub(r"<[^>]+>", " ", raw))
    text = re.sub(r"[ \t]+", " ", text)
    paras = [p.strip() for p in re.sub(r"\s*\n\s*", "\n", text).split("\n") if p.strip()]
    vocab = Llama(model_path=model, vocab_only=True, verbose=False)
    count = lambda s: len(vocab.tokenize(s.encode(), add_bos=False, special=True))
    body, i = "", 0
    while True:
        cand = (body + "\n" + paras[i % len(paras)]).strip()
        if count("Summarize:\n\n" + cand) > TARGET_TOKENS:
            break
        body, i = cand, i + 1
    user = "Summarize:\n\n" + body
    open(os.path.join(outdir, "system.txt"), "w").write(SYSTEM)
    open(os.path.join(outdir, "user.txt"), "w").write(user)


def run(model, outdir, max_tokens, penalty):
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    system = open(os.path.join(outdir, "system.txt")).read()
    user = open(os.path.join(outdir, "user.txt")).read()
    t = time.perf_counter()
    llm = Llama(model_path=model, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    load_s = time.perf_counter() - t
    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
    reply = llm.create_chat_completion(
        [{"role": "system", "content": system}, {"role": "user", "content": user}],
        temperature=0, top_k=1, repeat_penalty=penalty, max_tokens=max_tokens,
    )
    perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
    usage = reply["usage"]
    print(json.dumps({
        "engine": "llama.cpp",
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "prefill_tok_s": perf.n_p_eval / perf.t_p_eval_ms * 1000,
        "decode_tok_s": perf.n_eval / perf.t_eval_ms * 1000,
        "load_s": load_s,
        "text": reply["choices"][0]["message"]["content"],
    }))


if __name__ == "__main__":
    if sys.argv[1] == "prompt":
        make_prompt(sys.argv[2], sys.argv[3])
    else:
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]) if len(sys.argv) > 5 else 1.0)

#!/usr/bin/env python3
"""Benchmark main-content extraction on the ScrapingHub article-extraction-benchmark.

Data (read in place, never copied): $SUMMARIZE_BENCH_DATA or
/work/shared/data/article-extraction-benchmark/ with
  html/<id>.html.gz      the pages (all valid UTF-8)
  ground-truth.json      {id: {"articleBody": ..., "url": ...}}
  dev-ids.txt            ids used by default (--ids dev, 109 pages); --ids all = 181 pages

Usage
-----
  scripts/bench_extract.py --bin target/release/summarize [--ids dev|all]
                           [--python-trafilatura | --no-python-trafilatura]
                           [--min-f1 0.90] [--jobs 2] [--worst 10] [--json-out FILE]
  scripts/bench_extract.py --only-python [--ids all]   # validate the scorer, no binary needed
  --ids also takes a file with one id per line.  Python trafilatura is optional:
  run the script with an interpreter that has it, e.g. a venv with
  `pip install trafilatura lxml_html_clean` (justext needs lxml_html_clean with lxml >= 5.2).

Our tool: every selected page is decompressed into a temp dir as <id>.html and ONE
process is run and timed (wall clock, decompression excluded):
  <bin> extract --format jsonl -q -j 2 <abs paths...>
It must print one JSONL record per input ({id, source, status, error_class, title,
text, words}).  Records are matched to pages by `source` (the path as given), then by
`id`, then by position.  The prediction is the `text` field (the title is NOT added,
ground-truth articleBody has no title).  status != "ok" counts as an empty prediction.
pages/s = pages / wall seconds (includes process start-up).

Python trafilatura (run when --python-trafilatura is given, or automatically when
`import trafilatura` works): in-process over the same decoded pages, three configs,
single-threaded, each config timed on its own (import, decompression and one untimed
warm-up call excluded);
select with --py-configs (default: all three):
  default      trafilatura-py             extract(html, include_comments=False)
               (exactly upstream's extractors/run_trafilatura.py)
  recall       trafilatura-py-recall      + favor_recall=True
  recall-fast  trafilatura-py-recall-fast + favor_recall=True, fast=True
               (older trafilatura calls `fast` no_fallback: skips the readability/justext
               fallback comparison)
The headline line `speed ratio summarize/trafilatura-py: X.XX×` (and the F1 ratio) compares
with the `recall` config; the other configs get their own labelled lines.  Note our tool
runs with -j 2 (2 workers) while Python trafilatura runs on one core.

Metric (a faithful port of upstream evaluate.py, scrapinghub/article-extraction-benchmark
@7d95432 -- checked against the source, not from memory)
---------------------------------------------------------------------------------------
* Tokenization: re.findall(r'\\w+', text) with Python's Unicode \\w (letters, digits,
  underscore).  NO lowercasing (upstream passes re.IGNORECASE, which has no effect on
  \\w+, so tokens stay case-sensitive); all punctuation/whitespace separates tokens and is
  dropped.  None is treated as ''.
* Shingles: word 4-grams (tuples of tokens), as a multiset (Counter).  A text with
  1..3 tokens yields ONE shorter shingle (the whole token list); 0 tokens -> no shingles.
* Per page: tp = sum min(true, pred), fp = sum max(0, pred-true), fn = sum max(0,
  true-pred) over shingles, then normalised by tp+fp+fn (no effect on P/R).
  precision = tp/(tp+fp), recall = tp/(tp+fn); both are 1 when fp == fn == 0.
* Averages: precision is averaged over pages with tp+fp > 0 ONLY, recall over pages
  with tp+fn > 0.  Consequences:
    - empty prediction (or error), non-empty truth: recall 0, page EXCLUDED from the
      precision mean (an empty output does not hurt precision -- hence the `empty` column);
    - empty truth (none in this data set): page excluded from recall; a non-empty
      prediction gets precision 0; both empty: page excluded from both.
* F1 = 2PR/(P+R) of the two averages (not a mean of per-page F1s).
* accuracy = mean of [tokens(true) == tokens(pred)] (exact token-sequence match).
* F1_std: bootstrap std over pages (upstream: 1000 resamples, stdev, no 1.96 factor);
  seeded here (--seed) so runs are reproducible.
* `empty` = pages whose prediction has no \\w token (errors included); `err` = records
  with status != "ok" (our tool only).

Exit status: 0 ok; 1 our F1 < --min-f1; 2 harness error (bad arguments, missing data,
binary missing/crashed/timed out, unparseable JSONL, fewer records than inputs (the
report is still printed first), --python-trafilatura given but not importable).  Low scores alone never give a non-zero exit without --min-f1.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

DEFAULT_DATA = Path(
    os.environ.get("SUMMARIZE_BENCH_DATA", "/work/shared/data/article-extraction-benchmark")
)


class HarnessError(Exception):
    """A failure of the benchmark itself (exit 2), as opposed to a low score."""


# --------------------------------------------------------------------------- metric
# Port of upstream evaluate.py (string_shingle_matching, metrics_from_tp_fp_fns, ...).

_TOKEN_RE = re.compile(r"\w+", re.UNICODE | re.MULTILINE | re.IGNORECASE | re.DOTALL)


def tokenize(text: str | None) -> list[str]:
    return _TOKEN_RE.findall(text or "")


def shingles(tokens: list[str], n: int = 4) -> Counter:
    out = []
    for i in range(0, max(1, len(tokens) - n + 1)):
        sh = tuple(tokens[i : i + n])
        if sh:
            out.append(sh)
    return Counter(out)


def shingle_matching(true_tokens: list[str], pred_tokens: list[str], n: int = 4):
    ts, ps = shingles(true_tokens, n), shingles(pred_tokens, n)
    tp = fp = fn = 0.0
    for key in set(ts) | set(ps):
        t, p = ts.get(key, 0), ps.get(key, 0)
        tp += min(t, p)
        fp += max(0, p - t)
        fn += max(0, t - p)
    s = tp + fp + fn
    if s > 0:
        tp, fp, fn = tp / s, fp / s, fn / s
    return tp, fp, fn


def precision_score(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    if tp == fp == 0:
        return 0.0
    return tp / (tp + fp)


def recall_score(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    if tp == fn == 0:
        return 0.0
    return tp / (tp + fn)


def metrics_from_tp_fp_fns(tp_fp_fns) -> dict:
    ps = [precision_score(*x) for x in tp_fp_fns if x[0] + x[1] > 0]
    rs = [recall_score(*x) for x in tp_fp_fns if x[0] + x[2] > 0]
    precision = statistics.mean(ps) if ps else 0.0
    recall = statistics.mean(rs) if rs else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def score(ids: list[str], truth_tokens: dict, preds: dict, n_bootstrap: int, seed: int) -> dict:
    """preds: id -> predicted text (None/'' = empty)."""
    tp_fp_fns, acc, per_page = [], [], {}
    empty = 0
    for pid in ids:
        tt = truth_tokens[pid]
        pt = tokenize(preds.get(pid))
        if not pt:
            empty += 1
        x = shingle_matching(tt, pt)
        tp_fp_fns.append(x)
        acc.append(float(tt == pt))
        pp = precision_score(*x) if x[0] + x[1] > 0 else None
        rr = recall_score(*x) if x[0] + x[2] > 0 else None
        f = 2 * pp * rr / (pp + rr) if pp is not None and rr is not None and pp + rr > 0 else 0.0
        per_page[pid] = {"precision": pp, "recall": rr, "f1": f, "pred_tokens": len(pt),
                         "true_tokens": len(tt)}
    m = metrics_from_tp_fp_fns(tp_fp_fns)
    m["accuracy"] = statistics.mean(acc) if acc else 0.0
    m["empty"] = empty
    m["pages"] = len(ids)
    if n_bootstrap > 1 and len(ids) > 1:
        rng = random.Random(seed)
        n = len(tp_fp_fns)
        f1s = []
        for _ in range(n_bootstrap):
            sample = [tp_fp_fns[rng.randrange(n)] for _ in range(n)]
            f1s.append(metrics_from_tp_fp_fns(sample)["f1"])
        m["f1_std"] = statistics.stdev(f1s)
    else:
        m["f1_std"] = None
    m["per_page"] = per_page
    return m


# --------------------------------------------------------------------------- data


def load_dataset(data: Path, which: str):
    gt_path = data / "ground-truth.json"
    if not gt_path.is_file():
        raise HarnessError(f"ground truth not found: {gt_path}")
    with gt_path.open("rt", encoding="utf8") as f:
        gt = json.load(f)
    if which == "all":
        ids = sorted(gt)
    elif which == "dev":
        p = data / "dev-ids.txt"
        if not p.is_file():
            raise HarnessError(f"id list not found: {p}")
        ids = [ln.strip() for ln in p.read_text(encoding="utf8").splitlines() if ln.strip()]
    else:
        p = Path(which)
        if not p.is_file():
            raise HarnessError(f"--ids must be dev, all or an id-list file; got {which!r}")
        ids = [ln.strip() for ln in p.read_text(encoding="utf8").splitlines() if ln.strip()]
    if len(set(ids)) != len(ids):
        raise HarnessError("duplicate ids in id list")
    missing = [i for i in ids if i not in gt]
    if missing:
        raise HarnessError(f"{len(missing)} ids not in ground truth, e.g. {missing[0]}")
    pages = {}
    for pid in ids:
        hp = data / "html" / f"{pid}.html.gz"
        if not hp.is_file():
            raise HarnessError(f"page not found: {hp}")
        with gzip.open(hp, "rb") as f:
            pages[pid] = f.read()
    truth_tokens = {pid: tokenize(gt[pid].get("articleBody", "")) for pid in ids}
    return ids, pages, truth_tokens


# --------------------------------------------------------------------------- systems


def run_summarize(bin_path: str, ids, pages, jobs: int, timeout: float):
    """Returns (preds, errors, seconds)."""
    exe = Path(bin_path)
    if os.sep not in bin_path and not exe.is_file():
        found = shutil.which(bin_path)  # a bare name: look it up on PATH
        exe = Path(found) if found else exe
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        raise HarnessError(f"--bin is not an executable file: {bin_path}")
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        paths = []
        for pid in ids:
            p = Path(tmp) / f"{pid}.html"
            p.write_bytes(pages[pid])
            paths.append(str(p))
        cmd = [str(exe), "extract", "--format", "jsonl", "-q", "-j", str(jobs), *paths]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"summarize timed out after {timeout:.0f}s")
        except OSError as e:
            raise HarnessError(f"cannot run {bin_path}: {e}")
        secs = time.perf_counter() - t0
    err_tail = proc.stderr.decode("utf8", "replace")[-2000:]
    try:
        out = proc.stdout.decode("utf8")
    except UnicodeDecodeError as e:
        raise HarnessError(f"summarize output is not UTF-8: {e}")
    records = []
    for ln_no, ln in enumerate(out.splitlines(), 1):
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError as e:
            raise HarnessError(f"bad JSONL line {ln_no} from summarize: {e}: {ln[:200]!r}"
                               + (f"\nstderr tail:\n{err_tail}" if err_tail else ""))
        if not isinstance(rec, dict):
            raise HarnessError(f"JSONL line {ln_no} is not an object: {ln[:200]!r}")
        records.append(rec)
    if not records:
        raise HarnessError(f"summarize produced no records (exit {proc.returncode})"
                           + (f"\nstderr tail:\n{err_tail}" if err_tail else ""))
    if proc.returncode != 0:
        print(f"warning: summarize exited {proc.returncode} (records parsed: {len(records)})"
              + (f"; stderr tail:\n{err_tail}" if err_tail else ""), file=sys.stderr)
    if len(records) != len(ids):
        print(f"warning: {len(records)} records for {len(ids)} inputs", file=sys.stderr)

    # match: source path, then id, then position
    by_path = {p: pid for p, pid in zip(paths, ids)}
    by_path.update({os.path.realpath(p): pid for p, pid in zip(paths, ids)})
    id_set = set(ids)
    assigned: dict[str, dict] = {}
    unmatched = []
    for idx, rec in enumerate(records):
        src = rec.get("source")
        pid = None
        if isinstance(src, str):
            pid = by_path.get(src) or by_path.get(os.path.realpath(src))
        if pid is None and rec.get("id") in id_set:
            pid = rec.get("id")
        if pid is None or pid in assigned:
            unmatched.append((idx, rec))
            continue
        assigned[pid] = rec
    n_fallback = 0
    for idx, rec in unmatched:
        if idx < len(ids) and ids[idx] not in assigned:
            assigned[ids[idx]] = rec
            n_fallback += 1
        else:
            print(f"warning: record {idx} (source={rec.get('source')!r}) matches no page; "
                  "ignored", file=sys.stderr)
    if n_fallback:
        print(f"warning: {n_fallback} records matched by position", file=sys.stderr)
    preds, errors, missing = {}, Counter(), 0
    for pid in ids:
        rec = assigned.get(pid)
        if rec is None:
            missing += 1
            errors["<no record>"] += 1
            preds[pid] = ""
            continue
        if rec.get("status") != "ok":
            errors[str(rec.get("error_class") or rec.get("status") or "?")] += 1
            preds[pid] = ""
            continue
        text = rec.get("text")
        if text is not None and not isinstance(text, str):
            raise HarnessError(f"record for {pid}: `text` is not a string")
        preds[pid] = text or ""
    if missing:
        print(f"warning: {missing} pages got no record (scored as empty; exit 2 after the "
              "report)", file=sys.stderr)
    return preds, errors, secs, missing


PY_CONFIGS = {  # --py-configs key -> (row name, headline-label)
    "recall": ("trafilatura-py-recall", ""),
    "default": ("trafilatura-py", " (default)"),
    "recall-fast": ("trafilatura-py-recall-fast", " (recall+fast)"),
}


def trafilatura_kwargs(config: str) -> dict:
    import inspect

    import trafilatura

    kwargs = {"include_comments": False}
    if config in ("recall", "recall-fast"):
        kwargs["favor_recall"] = True
    if config == "recall-fast":
        params = inspect.signature(trafilatura.extract).parameters
        kwargs["fast" if "fast" in params else "no_fallback"] = True
    return kwargs


def run_trafilatura(ids, pages, config: str):
    import trafilatura  # noqa: imported before timing by the caller

    htmls = {pid: pages[pid].decode("utf8") for pid in ids}  # upstream: gzip 'rt' utf8
    kwargs = trafilatura_kwargs(config)
    preds = {}
    try:  # one untimed warm-up call (lazy imports / caches inside trafilatura)
        trafilatura.extract(htmls[ids[0]], **kwargs)
    except Exception:
        pass
    t0 = time.perf_counter()
    for pid in ids:
        try:
            preds[pid] = trafilatura.extract(htmls[pid], **kwargs)
        except Exception as e:  # an extractor failure is an empty output, not a harness error
            print(f"warning: trafilatura failed on {pid}: {e!r}", file=sys.stderr)
            preds[pid] = None
    return preds, time.perf_counter() - t0


# --------------------------------------------------------------------------- report


def fmt_row(name, m, pps, errs=None):
    std = f"{m['f1_std']:.3f}" if m.get("f1_std") is not None else "-"
    err = "-" if errs is None else str(errs)
    return (f"{name:<26} {m['pages']:>5} {m['f1']:>6.3f} {std:>6} {m['precision']:>9.3f} "
            f"{m['recall']:>6.3f} {m['accuracy']:>8.3f} {m['empty']:>5} {err:>4} {pps:>8.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Score summarize's main-content extraction (and Python trafilatura) on the "
                    "ScrapingHub article-extraction-benchmark with the upstream shingle metric.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit: 0 ok, 1 F1 below --min-f1, 2 harness error.")
    ap.add_argument("--bin", help="path to the summarize binary")
    ap.add_argument("--only-python", action="store_true",
                    help="skip summarize (no --bin needed); score Python trafilatura only")
    ap.add_argument("--ids", default="dev",
                    help="dev (dev-ids.txt, default), all, or a file with one id per line")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help=f"benchmark directory (default {DEFAULT_DATA})")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--python-trafilatura", action="store_true",
                   help="require Python trafilatura (default: used if importable)")
    g.add_argument("--no-python-trafilatura", action="store_true",
                   help="do not run Python trafilatura even if importable")
    ap.add_argument("--py-configs", default="default,recall,recall-fast",
                    help="comma list of trafilatura configs: default, recall, recall-fast "
                         "(default: all)")
    ap.add_argument("--jobs", "-j", type=int, default=2, help="summarize -j value (default 2)")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds allowed for the summarize process (default 900)")
    ap.add_argument("--min-f1", type=float, help="exit 1 if summarize's F1 is below this")
    ap.add_argument("--bootstrap", type=int, default=1000,
                    help="bootstrap resamples for F1_std (0 = off; default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument("--worst", type=int, default=0, metavar="N",
                    help="list summarize's N worst pages by per-page F1")
    ap.add_argument("--json-out", type=Path, help="write all metrics + per-page scores as JSON")
    args = ap.parse_args(argv)

    if args.only_python:
        if args.bin:
            raise HarnessError("--only-python and --bin are exclusive")
        if args.no_python_trafilatura:
            raise HarnessError("--only-python with --no-python-trafilatura leaves nothing to run")
        if args.min_f1 is not None:
            raise HarnessError("--min-f1 gates summarize's F1; it needs --bin")
    elif not args.bin:
        raise HarnessError("--bin PATH is required (or use --only-python)")
    py_configs = [c.strip() for c in args.py_configs.split(",") if c.strip()]
    bad = [c for c in py_configs if c not in PY_CONFIGS]
    if bad or not py_configs:
        raise HarnessError(f"--py-configs: unknown {bad}; choose from {sorted(PY_CONFIGS)}")
    if args.jobs < 1:
        raise HarnessError("--jobs must be >= 1")

    use_py = False
    if not args.no_python_trafilatura:
        try:
            import trafilatura  # noqa: F401
            use_py = True
        except Exception as e:  # ImportError, or a broken dependency (lxml_html_clean ...)
            if args.python_trafilatura or args.only_python:
                raise HarnessError(f"cannot import trafilatura: {e!r}")
            print(f"note: Python trafilatura not importable ({type(e).__name__}); skipped",
                  file=sys.stderr)

    ids, pages, truth = load_dataset(args.data, args.ids)
    n_missing = 0
    results = {}  # name -> (metrics, pages/s, errors-or-None)

    if not args.only_python:
        preds, errors, secs, n_missing = run_summarize(args.bin, ids, pages, args.jobs,
                                                       args.timeout)
        m = score(ids, truth, preds, args.bootstrap, args.seed)
        m["seconds"] = secs
        m["errors"] = dict(errors)
        results["summarize"] = (m, len(ids) / secs if secs > 0 else float("inf"),
                                sum(errors.values()))

    py_version = None
    if use_py:
        import trafilatura

        py_version = getattr(trafilatura, "__version__", "?")
        for key in ("default", "recall", "recall-fast"):
            if key not in py_configs:
                continue
            name = PY_CONFIGS[key][0]
            preds, secs = run_trafilatura(ids, pages, key)
            m = score(ids, truth, preds, args.bootstrap, args.seed)
            m["seconds"] = secs
            results[name] = (m, len(ids) / secs if secs > 0 else float("inf"), None)

    print(f"article-extraction-benchmark: {len(ids)} pages (--ids {args.ids}); "
          f"metric = upstream 4-gram shingle P/R" +
          (f"; trafilatura {py_version}" if py_version else ""))
    print(f"{'system':<26} {'pages':>5} {'F1':>6} {'F1_std':>6} {'precision':>9} "
          f"{'recall':>6} {'accuracy':>8} {'empty':>5} {'err':>4} {'pages/s':>8}")
    for name, (m, pps, errs) in results.items():
        print(fmt_row(name, m, pps, errs))

    if "summarize" in results:
        ours, ours_pps, _ = results["summarize"]
        if ours["errors"]:
            print("summarize errors: " + ", ".join(f"{k}={v}" for k, v in
                                                   sorted(ours["errors"].items())))
        for name, label in PY_CONFIGS.values():
            if name not in results:
                continue
            th, th_pps, _ = results[name]
            f1r = ours["f1"] / th["f1"] if th["f1"] else float("inf")
            print(f"speed ratio summarize/trafilatura-py{label}: {ours_pps / th_pps:.2f}×")
            print(f"F1 ratio summarize/trafilatura-py{label}: {f1r:.3f} "
                  f"(ΔF1 {ours['f1'] - th['f1']:+.3f})")
        if args.worst > 0:
            pp = ours["per_page"]
            worst = sorted(ids, key=lambda i: (pp[i]["f1"], i))[: args.worst]
            print(f"worst {len(worst)} pages (summarize):")
            for pid in worst:
                r = pp[pid]
                p = "-" if r["precision"] is None else f"{r['precision']:.3f}"
                rc = "-" if r["recall"] is None else f"{r['recall']:.3f}"
                print(f"  {pid[:16]}  F1 {r['f1']:.3f}  P {p:>5}  R {rc:>5}  "
                      f"tokens pred/true {r['pred_tokens']}/{r['true_tokens']}")

    if args.json_out:
        dump = {name: {**m, "pages_per_s": pps} for name, (m, pps, _) in results.items()}
        dump["_meta"] = {"ids": args.ids, "pages": len(ids), "trafilatura_version": py_version,
                         "bin": args.bin, "jobs": args.jobs}
        args.json_out.write_text(json.dumps(dump, indent=1, ensure_ascii=False), encoding="utf8")

    if n_missing:
        print(f"bench_extract: error: summarize emitted no record for {n_missing} of "
              f"{len(ids)} inputs (JSONL contract: one record per input)", file=sys.stderr)
        return 2
    if args.min_f1 is not None:
        f1 = results["summarize"][0]["f1"]
        if f1 < args.min_f1:
            print(f"FAIL: summarize F1 {f1:.3f} < --min-f1 {args.min_f1:.3f}", file=sys.stderr)
            return 1
        print(f"ok: summarize F1 {f1:.3f} >= --min-f1 {args.min_f1:.3f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HarnessError as e:
        print(f"bench_extract: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)

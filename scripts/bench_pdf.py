#!/usr/bin/env python3
"""PDF text extraction, measured (issue 11): word-level F1 and pages/s of each candidate
library, of poppler's `pdftotext` (the anchor) and of `summarize extract` itself.

Ground truth: known texts (CNN/DailyMail dev articles, read in place from ../shared) typeset
by pdflatex into one- and two-column PDFs with running headers and page numbers on every page;
the truth is the article text alone (headers and page numbers are furniture). Real PDFs that
Debian packages ship (/usr/share/doc, TeX Live's documentation) have no ground truth: they
count for speed and for crashes, and their F1 is against pdftotext's output (agreement, not
accuracy; said so in the table).

  scripts/bench_pdf.py --summarize target/release/summarize --candidates target/pdf-candidates/release/pdf-candidates
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter

ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
           "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def latex_escape(s):
    s = s.replace("\u2019", "'").replace("\u2018", "`").replace("\u201c", "``").replace("\u201d", "''")
    s = s.replace("\u2013", "--").replace("\u2014", "---").replace("\u00a0", " ")
    s = "".join(ESCAPES.get(c, c) for c in s)
    return "".join(c for c in s if ord(c) < 128 or c.isalpha())


def words(text):
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.replace("\ufb01", "fi").replace("\ufb02", "fl").replace("\ufb00", "ff")
    return re.findall(r"[A-Za-z0-9]+", text.lower())


def f1(pred, gold, n):
    grams = lambda ws: Counter(tuple(ws[i:i + n]) for i in range(len(ws) - n + 1))
    p, g = grams(pred), grams(gold)
    overlap = sum((p & g).values())
    prec = overlap / max(1, sum(p.values()))
    rec = overlap / max(1, sum(g.values()))
    return prec, rec


def make_truth(data, out, docs):
    records = [json.loads(l) for l in open(data)]
    made = []
    for i in range(docs):
        arts = records[3 * i: 3 * i + 3]
        paras = []
        for a in arts:
            sents = re.split(r"(?<=[.!?])\s+", a["text"].strip())
            for j in range(0, len(sents), 4):
                paras.append(" ".join(sents[j:j + 4]))
        for layout in ("onecol", "twocol"):
            name = f"{layout}-{i:02d}"
            opts = "[twocolumn,10pt]" if layout == "twocol" else "[11pt]"
            body = "\n\n".join(latex_escape(p) for p in paras)
            tex = (f"\\documentclass{opts}{{article}}\n\\usepackage[T1]{{fontenc}}\n"
                   f"\\pagestyle{{myheadings}}\\markright{{Daily Report Volume {i + 7} Running Header}}\n"
                   f"\\begin{{document}}\n{body}\n\\end{{document}}\n")
            open(os.path.join(out, name + ".tex"), "w").write(tex)
            r = subprocess.run(["pdflatex", "-interaction=batchmode", "-halt-on-error", name + ".tex"],
                               cwd=out, capture_output=True)
            if r.returncode != 0:
                print(f"bench-pdf: pdflatex failed on {name}", file=sys.stderr)
                continue
            truth = "\n\n".join(paras)
            open(os.path.join(out, name + ".truth"), "w").write(truth)
            made.append(os.path.join(out, name + ".pdf"))
    return made


def pages(pdf):
    r = subprocess.run(["pdfinfo", pdf], capture_output=True, text=True)
    m = re.search(r"^Pages:\s+(\d+)", r.stdout, re.M)
    return int(m.group(1)) if m else 0


def minimal_pdf(path):
    """A one-page PDF with one line of text: what a process costs to start and read a file."""
    content = b"BT /F1 12 Tf 72 720 Td (Hello) Tj ET"
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    open(path, "wb").write(bytes(out))


def start_cost(name, pdf, args, runs=20):
    """Seconds one process of the tool takes on the one-page PDF (the median of `runs`)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        if name == "pdftotext":
            subprocess.run(["pdftotext", "-enc", "UTF-8", pdf, os.devnull], capture_output=True)
        else:
            subprocess.run([args.summarize, "extract", "--no-cache", "-q", "-j", "1", pdf], capture_output=True)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def run_tool(name, pdfs, outdir, args):
    """Text of each PDF by one tool: {stem: text}, seconds, failures."""
    os.makedirs(outdir, exist_ok=True)
    texts, failures = {}, []
    started = time.perf_counter()
    if name in ("pdf-extract", "pdf_oxide"):
        r = subprocess.run([args.candidates, name, outdir, *pdfs], capture_output=True, text=True)
        secs = 0.0
        for line in r.stderr.splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                secs += float(parts[1])
                if parts[2] != "ok":
                    failures.append(f"{parts[0]}: {parts[2][:80]}")
        if r.returncode != 0:
            failures.append(f"exit {r.returncode}: {r.stderr[-200:]}")
    elif name == "summarize":
        # One process over every file, one document at a time: one core.
        r = subprocess.run([args.summarize, "extract", "--no-cache", "-q", "-j", "1", *pdfs],
                           capture_output=True, text=True)
        secs = time.perf_counter() - started
        for line in r.stdout.splitlines():
            rec = json.loads(line)
            stem = os.path.splitext(os.path.basename(rec["id"]))[0]
            if rec.get("status") == "ok":
                open(os.path.join(outdir, stem + ".txt"), "w").write(rec.get("text") or "")
            else:
                failures.append(f"{stem}: {(rec.get('error') or '')[:100]}")
    else:
        for pdf in pdfs:
            stem = os.path.splitext(os.path.basename(pdf))[0]
            dest = os.path.join(outdir, stem + ".txt")
            if name == "pdftotext":
                cmd = ["pdftotext", "-enc", "UTF-8", pdf, dest]
                r = subprocess.run(cmd, capture_output=True)
            if r.returncode != 0 and name == "pdftotext":
                failures.append(f"{stem}: exit {r.returncode}")
        secs = time.perf_counter() - started
    for pdf in pdfs:
        stem = os.path.splitext(os.path.basename(pdf))[0]
        path = os.path.join(outdir, stem + ".txt")
        texts[stem] = open(path, errors="replace").read() if os.path.exists(path) else ""
    return texts, secs, failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/summarization/cnndm/dev.jsonl")
    ap.add_argument("--docs", type=int, default=10, help="ground-truth documents per layout")
    ap.add_argument("--summarize", required=True)
    ap.add_argument("--candidates", required=True)
    ap.add_argument("--tools", default="pdftotext,pdf-extract,pdf_oxide,summarize")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per tool (the median is reported)")
    ap.add_argument("--keep", help="keep the PDFs and outputs in this folder")
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="bench-pdf-")
    os.makedirs(work, exist_ok=True)
    truth_dir = os.path.join(work, "truth")
    os.makedirs(truth_dir, exist_ok=True)
    typeset = make_truth(args.data, truth_dir, args.docs)
    real = sorted(set(glob.glob("/usr/share/doc/**/*.pdf", recursive=True)
                      + glob.glob("/usr/share/texlive/texmf-dist/doc/**/*.pdf", recursive=True)))[:40]
    print(f"bench-pdf: {len(typeset)} typeset PDFs with ground truth ({sum(map(pages, typeset))} pages), "
          f"{len(real)} real PDFs from Debian packages ({sum(map(pages, real))} pages)")
    anchor = None
    rows = []
    tiny = os.path.join(work, "one-line.pdf")
    minimal_pdf(tiny)
    n_pages = sum(map(pages, typeset)) + sum(map(pages, real))
    for tool in args.tools.split(","):
        # The median of --repeat timed runs (this machine's runs spread by 10-20%).
        runs = []
        for _ in range(args.repeat):
            out_t, secs_t, fail_t = run_tool(tool, typeset, os.path.join(work, tool, "typeset"), args)
            out_r, secs_r, fail_r = run_tool(tool, real, os.path.join(work, tool, "real"), args)
            runs.append(secs_t + secs_r)
        secs = sorted(runs)[len(runs) // 2]
        # Process starts in that time: pdftotext one per file, summarize one per set, the
        # libraries none (timed in process). Each costs what one run on a one-line PDF costs.
        starts = {"pdftotext": len(typeset) + len(real), "summarize": 2}.get(tool, 0)
        start = start_cost(tool, tiny, args) if starts else 0.0
        scores = {1: [], 4: []}
        for pdf in typeset:
            stem = os.path.splitext(os.path.basename(pdf))[0]
            gold = words(open(os.path.join(truth_dir, stem + ".truth")).read())
            pred = words(out_t[stem])
            for n in (1, 4):
                scores[n].append(f1(pred, gold, n))
        def avg_f1(pairs):
            p = sum(x for x, _ in pairs) / max(1, len(pairs))
            r = sum(y for _, y in pairs) / max(1, len(pairs))
            return p, r, 2 * p * r / max(1e-9, p + r)
        if tool == "pdftotext":
            anchor = out_r
        agree = []
        if anchor is not None:
            for pdf in real:
                stem = os.path.splitext(os.path.basename(pdf))[0]
                agree.append(f1(words(out_r[stem]), words(anchor[stem]), 1))
        rows.append(dict(tool=tool, word=avg_f1(scores[1]), gram4=avg_f1(scores[4]),
                         agree=avg_f1(agree)[2] if agree else float("nan"),
                         pps=n_pages / max(1e-9, secs), pps_ns=n_pages / max(1e-9, secs - starts * start),
                         fails=fail_t + fail_r, starts=starts, start=start))
    print(f"{'tool':<12} {'word F1':>8} {'P':>6} {'R':>6} {'4gram F1':>9} {'agree*':>7} {'pages/s':>9} {'no starts**':>11}  failures")
    for r in rows:
        (p, rc, f), g = r["word"], r["gram4"]
        print(f"{r['tool']:<12} {f:8.3f} {p:6.3f} {rc:6.3f} {g[2]:9.3f} {r['agree']:7.3f} {r['pps']:9.1f} "
              f"{r['pps_ns']:11.1f}  {len(r['fails'])}")
        for fail in r["fails"][:5]:
            print(f"    {fail}")
    base = next((r for r in rows if r["tool"] == "pdftotext"), None)
    if base:
        for r in rows:
            if r["tool"] != "pdftotext":
                print(f"{r['tool']}: word F1 {r['word'][2] - base['word'][2]:+.3f}, "
                      f"4-gram F1 {r['gram4'][2] - base['gram4'][2]:+.3f} against pdftotext; "
                      f"speed {r['pps'] / base['pps']:.1f}x, {r['pps_ns'] / base['pps_ns']:.1f}x without process starts")
    print("* agree: word F1 against pdftotext's text on the real PDFs (no ground truth there).")
    print(f"pages/s: one core, the median of {args.repeat} runs; pdftotext starts a process per file, summarize one "
          "per set of PDFs, the libraries run in one process.")
    print("** no starts: the same, less each process start, taken as one run on a one-page, one-line PDF "
          + ", ".join(f"({r['tool']}: {r['starts']} starts of {r['start'] * 1000:.1f} ms)" for r in rows if r["starts"]) + ".")


if __name__ == "__main__":
    main()

"""``alignkit build hallucinate``: hallucinated variants of factual answers, as deliberately misordered pairs.

Output pairs follow the F-DPO synthetic construction (methods.md §1; Chaduvula et al., arXiv 2601.03027):
chosen = the corrupted answer (h_w = 1), rejected = the original factual one (h_l = 0); the flip repairs them.

Two methods:

- ``rule`` — seeded, rule-based perturbation of the factual answer that keeps the sentence fluent: a year shifted,
  another number rescaled (same format), a month changed, a named entity (a capitalised span that does not start a
  sentence) swapped with another one seen in the dataset, a negation added or removed, a unit swapped (km/miles,
  kg/pounds, ...). 1..``max_edits`` non-overlapping edits per answer; every edit is recorded in ``changes``
  (kind, offset, from, to). An answer with nothing to perturb is a counted reject ("no perturbable span").
  Each answer's edits depend only on (seed, record id), not on its position or on other rows.
- ``llm`` — a rewrite through vLLM with the "2–3 subtle factual errors" instruction; greedy. An empty rewrite or
  one identical to the original is a counted reject.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from tqdm import tqdm

from alignkit.builders.common import config_dict, config_from_dict, message_text, replace_response

_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")
_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w]|[.,]\d)")
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_MONTH = re.compile(r"\b(" + "|".join(_MONTHS) + r")\b")
_CAPSPAN = re.compile(r"\b[A-Z][a-z]+(?:\s+(?:of\s+)?[A-Z][a-z]+)*\b")
_NEGATIONS = [(" is not ", " is "), (" was not ", " was "), (" are not ", " are "), (" were not ", " were "),
              (" cannot ", " can "), (" does not ", " does "), (" did not ", " did "), (" will not ", " will "),
              (" is ", " is not "), (" was ", " was not "), (" are ", " are not "), (" were ", " were not "),
              (" can ", " cannot "), (" will ", " will not ")]
_UNITS = [("kilometres", "miles"), ("kilometers", "miles"), ("km", "miles"), ("kilograms", "pounds"),
          ("kg", "lb"), ("metres", "feet"), ("meters", "feet"), ("Celsius", "Fahrenheit"), ("litres", "gallons"),
          ("liters", "gallons"), ("hours", "minutes"), ("centimetres", "inches"), ("grams", "ounces")]
_UNIT_MAP = {**{a: b for a, b in _UNITS}, **{b: a for a, b in _UNITS}}
_UNIT = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _UNIT_MAP), key=len, reverse=True)) + r")\b")
_SENT_START = re.compile(r"(?:^|[.!?]\s+|\n)$")

Edit = tuple[int, int, str, str]  # start, end, replacement, kind


def _years(text: str, r: random.Random, pool: list[str]) -> list[Edit]:
    out = []
    for m in _YEAR.finditer(text):
        y = int(m.group())
        new = y + r.choice([-1, 1]) * r.randint(1, 30)
        out.append((m.start(), m.end(), str(min(new, 2099)), "year"))
    return out


def _numbers(text: str, r: random.Random, pool: list[str]) -> list[Edit]:
    out = []
    for m in _NUMBER.finditer(text):
        s = m.group()
        if _YEAR.fullmatch(s):
            continue
        factor = r.choice([0.5, 0.6, 0.75, 1.25, 1.5, 2.0, 3.0])
        if "." in s:
            decimals = len(s.split(".")[1])
            new = f"{float(s) * factor:.{decimals}f}"
        else:
            v = int(s.replace(",", ""))
            nv = max(1, round(v * factor))
            if nv == v:
                nv = v + 1
            new = f"{nv:,}" if "," in s else str(nv)
        if new != s:
            out.append((m.start(), m.end(), new, "number"))
    return out


def _months(text: str, r: random.Random, pool: list[str]) -> list[Edit]:
    return [(m.start(), m.end(), r.choice([x for x in _MONTHS if x != m.group()]), "date")
            for m in _MONTH.finditer(text)]


def entity_spans(text: str) -> list[tuple[int, int, str]]:
    """Capitalised spans that do not start a sentence (a sentence-initial word is capitalised anyway)."""
    out = []
    for m in _CAPSPAN.finditer(text):
        start, span = m.start(), m.group()
        if _SENT_START.search(text[:start]):
            # "The Seine ..." at a sentence start: the first word is capitalised anyway, the rest is a name
            first = re.match(r"[A-Z][a-z]+\s+(?:of\s+)?", span)
            if not first or first.end() == len(span):
                continue
            start, span = start + first.end(), span[first.end():]
        if span in _MONTHS or span in _UNIT_MAP:
            continue
        out.append((start, start + len(span), span))
    return out


def _entities(text: str, r: random.Random, pool: list[str]) -> list[Edit]:
    out = []
    by_len = _pool_index(pool)
    for s, e, span in entity_spans(text):
        cands = by_len.get(len(span.split())) or pool
        if len(cands) > 1 or (cands and cands[0] != span):
            new = r.choice(cands)
            while new == span:  # at least one other candidate exists, so this ends
                new = r.choice(cands)
            out.append((s, e, new, "entity"))
    return out


_POOL_CACHE: dict[int, tuple[list[str], dict[int, list[str]]]] = {}


def _pool_index(pool: list[str]) -> dict[int, list[str]]:
    """The pool grouped by word count (a swapped-in entity keeps the span's length), computed once per pool."""
    hit = _POOL_CACHE.get(id(pool))
    if hit is None or hit[0] is not pool:
        groups: dict[int, list[str]] = {}
        for p in pool:
            groups.setdefault(len(p.split()), []).append(p)
        _POOL_CACHE.clear()
        _POOL_CACHE[id(pool)] = hit = (pool, groups)
    return hit[1]


def _negation(text: str, r: random.Random, pool: list[str]) -> list[Edit]:
    for a, b in _NEGATIONS:  # the first pattern that applies, negated forms first (so "is not" -> "is")
        i = text.find(a)
        if i >= 0:
            return [(i, i + len(a), b, "negation")]
    return []


def _units(text: str, r: random.Random, pool: list[str]) -> list[Edit]:
    return [(m.start(), m.end(), _UNIT_MAP[m.group()], "unit") for m in _UNIT.finditer(text)]


PERTURBERS: dict[str, Callable[[str, random.Random, list[str]], list[Edit]]] = {
    "year": _years, "number": _numbers, "date": _months, "entity": _entities, "negation": _negation, "unit": _units,
}


def perturb(text: str, rng: random.Random, entity_pool: list[str], *, max_edits: int = 2,
            kinds: tuple[str, ...] = tuple(PERTURBERS)) -> tuple[str, list[dict]]:
    """Apply 1..max_edits non-overlapping perturbations; returns the new text and the recorded changes
    (an empty list when nothing applies)."""
    by_kind = {k: PERTURBERS[k](text, rng, entity_pool) for k in kinds}
    by_kind = {k: v for k, v in by_kind.items() if v}
    if not by_kind:
        return text, []
    want = rng.randint(1, max_edits)
    chosen: list[Edit] = []
    for _ in range(want):
        free = {k: [e for e in v if all(e[1] <= c[0] or e[0] >= c[1] for c in chosen)] for k, v in by_kind.items()}
        free = {k: v for k, v in free.items() if v}
        if not free:
            break
        chosen.append(rng.choice(free[rng.choice(sorted(free))]))
    chosen.sort()
    pieces, pos, changes, shift = [], 0, [], 0
    for s, e, rep, kind in chosen:
        pieces += [text[pos:s], rep]
        changes.append({"kind": kind, "offset": s + shift, "from": text[s:e], "to": rep})
        shift += len(rep) - (e - s)
        pos = e
    pieces.append(text[pos:])
    return "".join(pieces), changes


REWRITE_INSTRUCTION = (
    "Rewrite the answer below so that it reads just as fluent and confident, with the same length and style, but "
    "contains 2-3 subtle factual errors (for example a wrong number, date, name or place). Do not mark or mention "
    "the errors. Reply with the rewritten answer only.\n\nQuestion:\n{prompt}\n\nAnswer:\n{answer}"
)


@dataclass
class HallucinateConfig:
    input: str = field(default="", metadata={"help": "preference pairs (.jsonl/.parquet/datasets folder)"})
    output: str = field(default="", metadata={"help": "output .jsonl/.parquet; card and rejects beside it"})
    method: str = field(default="rule", metadata={"help": "'rule' (perturbation) or 'llm' (vLLM rewrite)"})
    seed: int = field(default=0, metadata={"help": "seed; same seed and input -> byte-identical output"})
    max_edits: int = field(default=2, metadata={"help": "rule: at most this many edits per answer (at least 1)"})
    kinds: list = field(default_factory=lambda: list(PERTURBERS), metadata={
        "help": f"rule: perturbation kinds to use, from {list(PERTURBERS)}"})
    source_bucket: list | None = field(default_factory=lambda: [0, 1], metadata={
        "help": "use pairs in this (h_w, h_l) bucket, whose chosen answer is factual; null = every pair's chosen "
                "(for unlabelled data known to be factual)"})
    model: str = field(default="smollm2-135m-instruct", metadata={"help": "llm: model for the rewrite"})
    max_tokens: int = field(default=128, metadata={"help": "llm: max new tokens per rewrite"})
    engine_kwargs: dict = field(default_factory=dict, metadata={"help": "llm: extra vllm.LLM arguments"})
    on_invalid: str = field(default="error", metadata={"help": "bad input rows: 'error' or 'skip' (counted)"})
    limit: int | None = field(default=None, metadata={"help": "only the first N source pairs"})

    def __post_init__(self) -> None:
        if not self.input or not self.output:
            raise ValueError("hallucinate config: 'input' and 'output' are required")
        if self.method not in ("rule", "llm"):
            raise ValueError(f"hallucinate config: method must be 'rule' or 'llm', got {self.method!r}")
        if self.max_edits < 1:
            raise ValueError("hallucinate config: max_edits must be >= 1")
        bad = [k for k in self.kinds if k not in PERTURBERS]
        if bad or not self.kinds:
            raise ValueError(f"hallucinate config: unknown kinds {bad}; known: {list(PERTURBERS)}")
        if self.on_invalid not in ("error", "skip"):
            raise ValueError("hallucinate config: on_invalid must be 'error' or 'skip'")
        if self.source_bucket is not None and (len(self.source_bucket) != 2 or any(
                isinstance(x, bool) or x not in (0, 1) for x in self.source_bucket)):
            raise ValueError(f"hallucinate config: field source_bucket: expected [h_w, h_l] with 0/1 values, got "
                             f"{self.source_bucket!r}")


CONFIG_CLASS = HallucinateConfig


def _pair(r: dict, corrupted: str, rid: str, method: str, **extra: Any) -> dict:
    return {"id": f"{rid}-hal", "prompt": r["prompt"], "chosen": replace_response(r["chosen"], corrupted),
            "rejected": r["chosen"], "h_w": 1, "h_l": 0, "source": f"hallucinate:{method}", "source_id": rid, **extra}


def rule_variants(records: list[dict], seed: int, *, max_edits: int = 2, kinds: tuple[str, ...] = tuple(PERTURBERS),
                  progress: bool = False, lines: list[int] | None = None) -> tuple[list[dict], list[dict]]:
    """Rule-based variants of each record's (factual) chosen answer. Returns (pairs, rejects); a reject's ``line``
    is ``lines[i]`` (the record's line in the input file) when given, else the record's 1-based position."""
    answers = [message_text(r["chosen"], role="assistant") for r in records]
    pool = sorted({span for a in answers for _, _, span in entity_spans(a)})
    lines = lines or list(range(1, len(records) + 1))
    out, rejects = [], []
    for i, (r, ans) in enumerate(tqdm(list(zip(records, answers)), desc="hallucinate (rule)", unit="pair",
                                      disable=not progress)):
        rid = str(r.get("id", f"row{lines[i]}"))
        new, changes = perturb(ans, random.Random(f"{seed}:{rid}"), pool, max_edits=max_edits, kinds=kinds)
        if not changes:
            rejects.append({"line": lines[i], "field": "chosen", "reason": "no perturbable span", "id": rid})
            continue
        out.append(_pair(r, new, rid, "rule", changes=changes))
    return out, rejects


def llm_variants(records: list[dict], *, model: str = "smollm2-135m-instruct", engine: Any = None,
                 max_tokens: int = 128, engine_kwargs: dict | None = None, progress: bool = False,
                 lines: list[int] | None = None) -> tuple[list[dict], list[dict]]:
    """LLM rewrites with the "2–3 subtle factual errors" instruction, greedy, batched on one vLLM engine."""
    from vllm import SamplingParams

    from alignkit.judges.llm import make_engine
    from alignkit.judges.reference import normalise

    eng = engine or make_engine(model, **(engine_kwargs or {}))
    answers = [message_text(r["chosen"], role="assistant") for r in records]
    chats = [[{"role": "user", "content": REWRITE_INSTRUCTION.format(prompt=message_text(r["prompt"], role="user"),
                                                                    answer=a)}] for r, a in zip(records, answers)]
    outs = eng.chat(chats, SamplingParams(temperature=0.0, max_tokens=max_tokens), use_tqdm=progress)
    lines = lines or list(range(1, len(records) + 1))
    pairs, rejects = [], []
    for i, (r, a, o) in enumerate(zip(records, answers, outs)):
        rid = str(r.get("id", f"row{lines[i]}"))
        text = o.outputs[0].text.strip()
        if not text:
            rejects.append({"line": lines[i], "field": "chosen", "reason": "empty rewrite", "id": rid})
        elif normalise(text) == normalise(a):
            rejects.append({"line": lines[i], "field": "chosen", "reason": "rewrite identical to the original",
                            "id": rid})
        else:
            pairs.append(_pair(r, text, rid, "llm", rewrite_model=model))
    return pairs, rejects


def main(config: dict, *, progress: bool = True) -> dict:
    from alignkit.data.card import write_card
    from alignkit.data.io import read_records, write_records, write_rejects

    cfg = config_from_dict(HallucinateConfig, config, "hallucinate config")
    res = read_records(cfg.input, on_invalid=cfg.on_invalid, require_flags=cfg.source_bucket is not None)  # type: ignore[arg-type]
    src, lines = res.records, res.lines
    dropped: dict[str, int] = {}  # valid rows left out on purpose, counted in the card
    if cfg.source_bucket is not None:
        want = tuple(int(x) for x in cfg.source_bucket)
        keep = [i for i, r in enumerate(src) if (r["h_w"], r["h_l"]) == want]
        dropped[f"not in source_bucket {list(want)}"] = len(src) - len(keep)
        src, lines = [src[i] for i in keep], [lines[i] for i in keep]
    if cfg.limit is not None:
        dropped["over limit"] = max(0, len(src) - cfg.limit)
        src, lines = src[: cfg.limit], lines[: cfg.limit]
    if cfg.method == "rule":
        pairs, rej = rule_variants(src, cfg.seed, max_edits=cfg.max_edits, kinds=tuple(cfg.kinds), progress=progress,
                                   lines=lines)
    else:
        pairs, rej = llm_variants(src, model=cfg.model, max_tokens=cfg.max_tokens, engine_kwargs=cfg.engine_kwargs,
                                  progress=progress, lines=lines)
    for x in rej:
        x["file"] = cfg.input
    rejects = res.rejects + rej
    kinds: dict[str, int] = {}
    for p in pairs:
        for c in p.get("changes", []):
            kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
    write_records(cfg.output, pairs)
    write_rejects(cfg.output, rejects)
    write_card(cfg.output, pairs, builder="hallucinate", config=config_dict(cfg), rejects=rejects,
               dropped={k: v for k, v in dropped.items() if v},
               extra={"rows_read": res.n_rows, "source_pairs": len(src),
                      "edits_by_kind": dict(sorted(kinds.items()))})
    return {"output": cfg.output, "written": len(pairs), "rejected": len(rejects), "source_pairs": len(src),
            "dropped": sum(dropped.values())}

"""TruthfulQA training pairs: a correct vs an incorrect reference answer, factuality-labelled, split by question.

Source answers (Lin et al., "TruthfulQA", arXiv 2109.07958): the upstream CSV (``Correct Answers`` / ``Incorrect
Answers``, ``; ``-separated), ``mc_task.json`` (answer -> 1/0 in ``mc2_targets``), the HF ``truthful_qa``
generation/multiple_choice rows (JSONL), or a hub id. Use v0 (``pkg:truthfulqa/…``, = HF ``truthful_qa``) for
numbers comparable with published ones.

Every pair is ``chosen`` = a correct answer (``h_w = 0``), ``rejected`` = an incorrect one (``h_l = 1``); with
``misordered_fraction > 0`` a seeded share of pairs is written the other way round (``h_w = 1, h_l = 0``), the
F-DPO flip's input. Questions, not pairs, are split, so no evaluation question has a training pair; the split is
stratified by category when the source has one.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from alignkit.builders.common import config_from_dict
from alignkit.data.card import write_card
from alignkit.data.io import iter_jsonl, write_jsonl, write_rejects
from alignkit.data.schema import DataError
from alignkit.resources import resolve_data
from alignkit.utils import stable_hash


@dataclass
class QAItem:
    question: str
    correct: list[str]
    incorrect: list[str]
    category: str
    line: int
    conflicting: list[str] = field(default_factory=list)  # answers listed as both correct and incorrect (dropped)


def _split_answers(text: str) -> list[str]:
    return [a.strip() for a in text.split(";") if a.strip()]


def _dedupe(answers: list[str]) -> list[str]:
    seen, out = set(), []
    for a in answers:
        if a.lower() not in seen:
            seen.add(a.lower())
            out.append(a)
    return out


def _rows(source: str, hub_split: str) -> tuple[list[tuple[int, Any]], str]:
    """(line/row number, raw row) pairs and the format name."""
    p = Path(resolve_data(source))
    if p.suffix == ".csv":
        with open(p, encoding="utf-8-sig", newline="") as fh:  # the upstream CSV starts with a BOM
            # DictReader's line_num is the physical line where the record ends; header = line 1, rows from 2
            reader = csv.DictReader(fh)
            return [(reader.line_num, row) for row in reader], "csv"
    if p.suffix == ".json":
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise DataError(f"expected a JSON list of questions, got {type(data).__name__}", file=source)
        return list(enumerate(data, start=1)), "mc_task"
    if p.suffix == ".jsonl":
        # a bad line comes back as its DataError, rejected (or raised) with the row checks
        return list(iter_jsonl(p, on_invalid="yield", source=source)), "jsonl"
    if p.exists() or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{source}: expected an existing .csv, .json or .jsonl file")
    import datasets

    name, _, config = source.partition(":")
    ds = datasets.load_dataset(name, config or "generation", split=hub_split)
    return list(enumerate(ds.to_list(), start=1)), "jsonl"


def _parse(row: Any, fmt: str) -> tuple[QAItem | None, str | None, str]:
    """(item, bad field, reason) for one raw row."""
    if isinstance(row, DataError):
        return None, None, row.reason
    if not isinstance(row, dict):
        return None, None, f"row must be an object, got {type(row).__name__}"
    q = row.get("question", row.get("Question"))
    if not isinstance(q, str) or not q.strip():
        return None, "question", "missing or empty question"
    category = str(row.get("category", row.get("Category", "")) or "")
    if fmt == "csv":
        correct = _split_answers(row.get("Correct Answers") or "")
        best = (row.get("Best Answer") or "").strip()
        if best:
            correct = [best] + correct
        incorrect = _split_answers(row.get("Incorrect Answers") or "")
    elif "correct_answers" in row or "best_answer" in row:  # HF generation config
        correct = ([row["best_answer"]] if row.get("best_answer") else []) + list(row.get("correct_answers") or [])
        incorrect = list(row.get("incorrect_answers") or [])
    else:  # mc_task.json ({answer: 0/1}) or HF multiple_choice ({choices, labels})
        tgt = row.get("mc2_targets")
        if isinstance(tgt, dict) and "choices" in tgt:
            pairs = list(zip(tgt.get("choices") or [], tgt.get("labels") or []))
        elif isinstance(tgt, dict):
            pairs = list(tgt.items())
        else:
            return None, "mc2_targets", "no answers: expected Correct/Incorrect Answers, correct_answers or mc2_targets"
        correct = [a for a, lab in pairs if lab == 1]
        incorrect = [a for a, lab in pairs if lab == 0]
    correct = _dedupe([a.strip() for a in correct if isinstance(a, str) and a.strip()])
    incorrect = _dedupe([a.strip() for a in incorrect if isinstance(a, str) and a.strip()])
    # an answer listed on both sides cannot label a pair: it is dropped from both, and counted in the card
    both = {a.lower() for a in correct} & {a.lower() for a in incorrect}
    conflicting = [a for a in correct if a.lower() in both]
    correct = [a for a in correct if a.lower() not in both]
    incorrect = [a for a in incorrect if a.lower() not in both]
    why = f" (after dropping {len(conflicting)} answer(s) listed as both correct and incorrect)" if both else ""
    if not correct:
        return None, "correct_answers", "no correct answer" + why
    if not incorrect:
        return None, "incorrect_answers", "no incorrect answer" + why
    return QAItem(q.strip(), correct, incorrect, category, 0, conflicting), None, ""


def load_truthfulqa(source: str, *, on_invalid: str = "error", hub_split: str = "validation",
                    progress: bool = False) -> tuple[list[QAItem], list[dict]]:
    """Questions with their correct and incorrect answers, and the rejected rows (file, line, field, reason)."""
    if on_invalid not in ("error", "skip"):
        raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
    rows, fmt = _rows(source, hub_split)
    items, rejects, seen = [], [], {}
    for line, row in tqdm(rows, desc="truthfulqa rows", disable=not progress):
        item, fld, reason = _parse(row, fmt)
        if item is not None and item.question.lower() in seen:
            item, fld, reason = None, "question", f"duplicate question (first on line {seen[item.question.lower()]})"
        if item is None:
            err = DataError(reason, file=source, line=line, field=fld)
            if on_invalid == "error":
                raise err
            rejects.append({**err.as_dict(), "raw": json.dumps(row, default=str, ensure_ascii=False)[:2000]})
            continue
        item.line = line
        seen[item.question.lower()] = line
        items.append(item)
    return items, rejects


def split_questions(items: list[QAItem], eval_fraction: float, seed: int) -> tuple[list[QAItem], list[QAItem]]:
    """Seeded split of whole questions, stratified by category (each category contributes round(f·n) questions)."""
    by_cat: dict[str, list[QAItem]] = {}
    for it in items:
        by_cat.setdefault(it.category, []).append(it)
    train, evals = [], []
    for cat in sorted(by_cat):
        group = list(by_cat[cat])
        random.Random(f"{seed}:split:{cat}").shuffle(group)
        n_eval = int(len(group) * eval_fraction + 0.5)
        evals += group[:n_eval]
        train += group[n_eval:]
    return sorted(train, key=lambda i: i.line), sorted(evals, key=lambda i: i.line)


def make_pairs(items: list[QAItem], *, pairs_per_question: int, misordered_fraction: float, seed: int,
               source: str, split: str) -> list[dict]:
    """Preference records for ``items``: up to ``pairs_per_question`` (correct, incorrect) pairs per question,
    least-used answers first (an answer repeats only when its side has run out)."""
    out = []
    for it in items:
        rng = random.Random(f"{seed}:pairs:{it.question}")
        correct, incorrect = list(it.correct), list(it.incorrect)
        rng.shuffle(correct)
        rng.shuffle(incorrect)
        n = min(pairs_per_question, len(correct) * len(incorrect))
        qid = stable_hash(it.question, 12)
        uses_c, uses_w = Counter(), Counter()
        pairs: list[tuple[str, str]] = []
        candidates = [(c, w) for c in correct for w in incorrect]
        for _ in range(n):
            # least-used answers first, so pairs differ on both sides before any answer repeats
            c, w = min(candidates, key=lambda cw: uses_c[cw[0]] + uses_w[cw[1]])
            candidates.remove((c, w))
            uses_c[c] += 1
            uses_w[w] += 1
            pairs.append((c, w))
        for j, (c, w) in enumerate(pairs):
            misordered = rng.random() < misordered_fraction
            rec = {"prompt": it.question, "chosen": w if misordered else c, "rejected": c if misordered else w,
                   "h_w": 1 if misordered else 0, "h_l": 0 if misordered else 1,
                   "source": source, "id": f"tqa-{qid}-{j}", "question_id": qid,
                   "category": it.category, "split": split}
            out.append(rec)
    return out


@dataclass
class TruthfulQAPairsConfig:
    """Build factuality-labelled TruthfulQA preference pairs, split by question into train and eval files."""

    source: str = field(metadata={"help": "TruthfulQA.csv, mc_task.json, an HF-format JSONL, or a hub id "
                                          "('truthful_qa' or 'truthful_qa:multiple_choice')"})
    output: str = field(metadata={"help": "output folder for train.jsonl and eval.jsonl "
                                          "(cards and rejects beside them)"})
    eval_fraction: float = field(default=0.2, metadata={"help": "share of questions held out for evaluation"})
    pairs_per_question: int = field(default=3, metadata={"help": "most (correct, incorrect) pairs per question"})
    misordered_fraction: float = field(default=0.0, metadata={
        "help": "share of pairs written with the incorrect answer as chosen (h_w=1, h_l=0), for the F-DPO flip"})
    seed: int = field(default=0, metadata={"help": "seed for the question split, pairing and misordering"})
    on_invalid: str = field(default="error", metadata={"help": "'error' or 'skip' (bad rows counted in the card)"})
    hub_split: str = field(default="validation", metadata={"help": "split to read when source is a hub id"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.pairs_per_question < 1:
            raise ValueError(f"pairs_per_question must be >= 1, got {self.pairs_per_question}")
        if not 0.0 <= self.misordered_fraction <= 1.0:
            raise ValueError(f"misordered_fraction must be in [0, 1], got {self.misordered_fraction}")
        if self.on_invalid not in ("error", "skip"):
            raise ValueError(f"on_invalid must be 'error' or 'skip', got {self.on_invalid!r}")


def build_truthfulqa_pairs(config: TruthfulQAPairsConfig, *, progress: bool = True) -> dict[str, Any]:
    items, rejects = load_truthfulqa(config.source, on_invalid=config.on_invalid, hub_split=config.hub_split,
                                     progress=progress)
    if not items:
        raise ValueError(f"{config.source}: no usable questions ({len(rejects)} rejected)")
    train_q, eval_q = split_questions(items, config.eval_fraction, config.seed)
    src = f"truthfulqa:{Path(config.source).name}"
    out = Path(config.output)
    summary: dict[str, Any] = {"rejected": len(rejects), "output_dir": str(out)}
    for split, qs in (("train", train_q), ("eval", eval_q)):
        records = make_pairs(qs, pairs_per_question=config.pairs_per_question,
                             misordered_fraction=config.misordered_fraction, seed=config.seed, source=src, split=split)
        path = out / f"{split}.jsonl"
        write_jsonl(path, records)
        # source rows are rejected once, before the split: both cards report them, the file sits beside train
        write_rejects(path, rejects if split == "train" else [])
        write_card(path, records, builder="truthfulqa_pairs", config=asdict(config), rejects=rejects, extra={
            "split": split, "questions": len(qs), "questions_other_split": len(eval_q if split == "train" else train_q),
            "categories": dict(sorted(Counter(q.category for q in qs).items())),
            "answers_listed_both_sides": {"answers": sum(len(q.conflicting) for q in qs),
                                          "questions": sum(1 for q in qs if q.conflicting)},
        })
        summary[split] = {"questions": len(qs), "pairs": len(records)}
    return summary



CONFIG_CLASS = TruthfulQAPairsConfig


def main(config: dict, *, progress: bool = True) -> dict[str, Any]:
    """``alignkit build truthfulqa-pairs`` entry point (registry contract in alignkit.builders)."""
    return build_truthfulqa_pairs(config_from_dict(TruthfulQAPairsConfig, config, "truthfulqa-pairs config"),
                                  progress=progress)

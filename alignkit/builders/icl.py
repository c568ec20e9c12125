"""Flipped-label and semantically-unrelated-label (SUL) ICL sets, and a symbol-tuning training set.

Wei et al., "Larger language models do in-context learning differently", arXiv 2303.03846: k exemplars per class in
the format ``Input: {x}\\nOutput: {label}``, a proportion of the exemplar labels flipped (the query's label is not),
or every label word replaced by a semantically unrelated one (Foo/Bar...). Wei et al., "Symbol tuning improves
in-context learning in language models", arXiv 2305.08298: fine-tune on such prompts with random symbols as labels,
2-10 exemplars per class and no instructions.

Input: any labelled classification data, one row per example, ``{"text", "label", "split"?}`` (a local JSONL file, or
a hub id read with ``datasets``). Rows with ``split == "train"`` feed the exemplars, ``"test"`` the queries; without a
split field a seeded share of rows is held out for queries.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from alignkit.builders.common import config_from_dict
from alignkit.data.card import write_card
from alignkit.data.io import write_jsonl, write_rejects
from alignkit.data.schema import DataError
from alignkit.resources import resolve_data

FLIP_PCTS = (0, 25, 50, 75, 100)
SUL_WORDS = ("Foo", "Bar", "Iff", "Roc", "Ket", "Dal")  # Wei et al. 2023 (TREC uses all six)
# Label words of Wei et al. 2023, keyed by the dataset's own class names, in class order.
LABEL_WORDS: dict[str, dict[str, str]] = {
    "sst2": {"negative": "Negative Sentiment", "positive": "Positive Sentiment"},
    "subj": {"subjective": "Subjective Sentence", "objective": "Objective Sentence"},
    "trec": {"abbreviation": "Abbreviation", "entity": "Entity", "description": "Description and Abstract Concept",
             "human": "Human Being", "location": "Location", "number": "Numeric Value"},
    "qqp": {"duplicate": "Duplicate", "not duplicate": "Not a duplicate"},
    "rte": {"entailment": "Entails", "not_entailment": "Does not entail"},
    "financial_phrasebank": {"negative": "Negative", "positive": "Positive"},
    "ethos": {"hate speech": "Hate Speech", "no hate speech": "Not Hate Speech"},
}
# Neutral English words for symbol tuning's word-type labels (any short, unrelated words do).
_SYMBOL_WORDS = (
    "apple", "river", "stone", "cloud", "pencil", "garden", "window", "silver", "candle", "forest", "button",
    "ladder", "marble", "orbit", "pepper", "rocket", "saddle", "tunnel", "velvet", "walnut", "anchor", "basket",
    "copper", "dolphin", "engine", "feather", "glacier", "harbor", "island", "jacket", "kettle", "lantern", "meadow",
    "needle", "oyster", "planet", "quartz", "ribbon", "sponge", "timber", "umbrella", "violin", "wagon", "yarn",
)


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    line: int  # 1-based row in the source (for provenance in item ids)


@dataclass
class ClassificationData:
    name: str
    classes: list[str]  # class order: the label-word table's order for known datasets, else sorted
    train: list[Example]
    test: list[Example]
    rejects: list[dict] = field(default_factory=list)
    source: str = ""


def load_classification(source: str, *, name: str | None = None, on_invalid: str = "error",
                        text_field: str = "text", label_field: str = "label", hub_split: str | None = None,
                        holdout_fraction: float = 0.2, seed: int = 0) -> ClassificationData:
    """Read labelled rows from a JSONL file or a hub id (``datasets.load_dataset``), validating each row.

    Bad rows raise :class:`DataError` with file, line and field, or (``on_invalid="skip"``) are returned as rejects.
    """
    if on_invalid not in ("error", "skip"):
        raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
    source = resolve_data(source)
    path = Path(source)
    name = name or path.name.split(".")[0]
    rejects: list[dict] = []

    def reject(line: int, fld: str | None, reason: str, raw: Any) -> None:
        err = DataError(reason, file=source, line=line, field=fld)
        if on_invalid == "error":
            raise err
        rejects.append({**err.as_dict(), "raw": raw if isinstance(raw, str) else json.dumps(raw, default=str)[:2000]})

    rows: list[tuple[int, Any, str]] = []
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            for lineno, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    rows.append((lineno, json.loads(text), text.rstrip("\n")))
                except json.JSONDecodeError as e:
                    reject(lineno, None, f"invalid JSON: {e.msg} (column {e.colno})", text.rstrip("\n"))
    elif path.suffix in (".jsonl", ".json") or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{source}: no such file")
    else:
        import datasets

        ds = datasets.load_dataset(source, split=hub_split or "train")
        names = getattr(ds.features.get(label_field), "names", None)
        for i, row in enumerate(ds, start=1):
            if names is not None and isinstance(row.get(label_field), int):
                row = {**row, label_field: names[row[label_field]]}
            rows.append((i, row, ""))

    examples: dict[str, list[Example]] = {"train": [], "test": [], "": []}
    for lineno, obj, raw in rows:
        if not isinstance(obj, dict):
            reject(lineno, None, f"row must be a JSON object, got {type(obj).__name__}", raw)
            continue
        text, label, split = obj.get(text_field), obj.get(label_field), obj.get("split", "")
        if not isinstance(text, str) or not text.strip():
            reject(lineno, text_field, "missing or empty text" if text is None or isinstance(text, str)
                   else f"must be a string, got {type(text).__name__}", raw or obj)
            continue
        if isinstance(label, (int, float)) and not isinstance(label, bool):
            label = str(label)
        if not isinstance(label, str) or not label.strip():
            reject(lineno, label_field, "missing or empty label", raw or obj)
            continue
        if split not in ("train", "test", ""):
            reject(lineno, "split", f"must be 'train' or 'test', got {split!r}", raw or obj)
            continue
        examples[split].append(Example(text=text.strip(), label=label.strip(), line=lineno))

    if examples[""]:
        # no split given: hold out a seeded share for queries so exemplars never include a query
        rng = random.Random(f"{seed}:{name}:holdout")
        pool = list(examples[""])
        rng.shuffle(pool)
        n_test = max(1, int(round(holdout_fraction * len(pool))))
        examples["test"] += sorted(pool[:n_test], key=lambda e: e.line)
        examples["train"] += sorted(pool[n_test:], key=lambda e: e.line)
    labels = {e.label for e in examples["train"]} | {e.label for e in examples["test"]}
    known = LABEL_WORDS.get(name, {})
    classes = [c for c in known if c in labels] + sorted(labels - set(known))
    return ClassificationData(name=name, classes=classes, train=examples["train"], test=examples["test"],
                              rejects=rejects, source=source)


def _n_flipped(k: int, pct: int) -> int:
    return int(k * pct / 100 + 0.5)  # round half up: 50% of k=3 flips 2, not banker's-rounded 2 or 1


def flip_class(c: int, n_classes: int) -> int:
    """The label a flipped exemplar of class ``c`` gets: the other class (binary) or the next class, cyclically."""
    return (c + 1) % n_classes


def label_words(data: ClassificationData, label_set: str, overrides: dict[str, str] | None = None) -> list[str]:
    """Label words in class order for ``natural`` (Wei et al.'s words, else the raw class names) or ``sul``."""
    if label_set == "sul":
        if len(data.classes) > len(SUL_WORDS):
            raise ValueError(f"{data.name}: {len(data.classes)} classes but only {len(SUL_WORDS)} SUL words")
        return list(SUL_WORDS[: len(data.classes)])
    if label_set != "natural":
        raise ValueError(f"label_set must be 'natural' or 'sul', got {label_set!r}")
    table = {**LABEL_WORDS.get(data.name, {}), **(overrides or {})}
    return [table.get(c, c) for c in data.classes]


def format_prompt(exemplars: Sequence[tuple[str, str]], query: str) -> str:
    """Wei et al.'s format: ``Input: {x}\\nOutput: {label}`` blocks, then the query with an open ``Output:``."""
    blocks = [f"Input: {x}\nOutput: {y}" for x, y in exemplars]
    return "\n\n".join(blocks + [f"Input: {query}\nOutput:"])


def make_icl_items(data: ClassificationData, *, k: int = 4, n_queries: int = 20,
                   flip_pcts: Sequence[int] = FLIP_PCTS, label_sets: Sequence[str] = ("natural", "sul"),
                   seed: int = 0, label_word_overrides: dict[str, str] | None = None,
                   progress: bool = True) -> list[dict]:
    """One item per (query, label set, flip %): a prompt, its label words, and the true and flipped targets.

    Each query gets a fresh exemplar set (k per class, exemplars never equal the query text). Within a query the
    exemplars, their order and the flip order are shared by every flip % and label set, and the flipped exemplars at
    25% are a subset of those at 50% and so on, so differences along the curve come from the flips alone. Flips are
    made per class (round(k·p) exemplars of every class), keeping the prompt's label counts balanced.
    """
    n_classes = len(data.classes)
    if n_classes < 2:
        raise ValueError(f"{data.name}: need at least 2 classes, found {data.classes}")
    by_class = {c: [e for e in data.train if e.label == c] for c in data.classes}
    for c, pool in by_class.items():
        if len(pool) < k + 1:
            raise ValueError(f"{data.name}: class {c!r} has {len(pool)} exemplar rows, need at least {k + 1} for k={k}")
    if n_queries > len(data.test):
        raise ValueError(f"{data.name}: n_queries={n_queries} but only {len(data.test)} query rows")
    words = {ls: label_words(data, ls, label_word_overrides) for ls in label_sets}
    rng = random.Random(f"{seed}:{data.name}:icl")
    queries = rng.sample(data.test, n_queries)
    items: list[dict] = []
    for qi, q in enumerate(tqdm(queries, desc=f"icl items {data.name}", disable=not progress)):
        shots: list[tuple[Example, int]] = []  # (example, true class index)
        flip_rank: dict[int, int] = {}  # position in `shots` -> rank of this exemplar in its class's flip order
        for ci, c in enumerate(data.classes):
            chosen = rng.sample([e for e in by_class[c] if e.text != q.text], k)
            order = list(range(k))
            rng.shuffle(order)
            for rank, j in enumerate(order):
                flip_rank[len(shots) + j] = rank
            shots.extend((e, ci) for e in chosen)
        perm = list(range(len(shots)))
        rng.shuffle(perm)
        target = data.classes.index(q.label)
        for ls in label_sets:
            for pct in flip_pcts:
                n_flip = _n_flipped(k, pct)
                labels = [flip_class(ci, n_classes) if flip_rank[i] < n_flip else ci for i, (_, ci) in enumerate(shots)]
                ex = [(shots[i][0].text, words[ls][labels[i]]) for i in perm]
                items.append({
                    "id": f"{data.name}-q{qi}-{ls}-flip{pct}",
                    "dataset": data.name, "query_index": qi, "query_line": q.line, "label_set": ls,
                    "flip_pct": int(pct), "k": k, "n_exemplars": len(shots), "n_flipped": n_flip * n_classes,
                    "prompt": format_prompt(ex, q.text), "choices": words[ls],
                    "target": target, "flipped_target": flip_class(target, n_classes),
                    "exemplar_lines": [shots[i][0].line for i in perm],
                })
    return items


def make_symbol_tuning_examples(datasets: Sequence[ClassificationData], *, n_examples: int = 200, min_k: int = 2,
                                max_k: int = 10, seed: int = 0, progress: bool = True) -> list[dict]:
    """Symbol-tuning SFT examples (TRL prompt/completion format): exemplars labelled with random symbols (integers,
    letter strings or words, distinct per class), ``min_k``-``max_k`` exemplars per class, no instructions; the
    completion is the query's symbol. Exemplars and queries both come from the train rows."""
    if not 1 <= min_k <= max_k:
        raise ValueError(f"need 1 <= min_k <= max_k, got {min_k}, {max_k}")
    rng = random.Random(f"{seed}:symbol-tuning")
    out = []
    for n in tqdm(range(n_examples), desc="symbol tuning", disable=not progress):
        data = datasets[n % len(datasets)]
        kind = rng.choice(("integer", "letters", "word"))
        symbols: list[str] = []
        while len(symbols) < len(data.classes):
            if kind == "integer":
                s = str(rng.randint(0, 9999))
            elif kind == "letters":
                s = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 5))).upper()
            else:
                s = rng.choice(_SYMBOL_WORDS)
            if s not in symbols:
                symbols.append(s)
        k = rng.randint(min_k, max_k)
        shots: list[tuple[str, str]] = []
        used: set[str] = set()
        for ci, c in enumerate(data.classes):
            pool = [e for e in data.train if e.label == c]
            if len(pool) < k:
                raise ValueError(f"{data.name}: class {c!r} has {len(pool)} train rows, need {k}")
            for e in rng.sample(pool, k):
                shots.append((e.text, symbols[ci]))
                used.add(e.text)
        rng.shuffle(shots)
        query = rng.choice([e for e in data.train if e.text not in used])
        out.append({
            "id": f"symtune-{n}", "dataset": data.name, "symbol_kind": kind, "k": k, "symbols": symbols,
            "prompt": format_prompt(shots, query.text), "completion": " " + symbols[data.classes.index(query.label)],
        })
    return out


@dataclass
class ICLSetConfig:
    """Build flipped-label / SUL ICL eval items (``kind: eval``) or a symbol-tuning SFT set
    (``kind: symbol_tuning``)."""

    sources: list[str] = field(metadata={"help": "labelled classification data: JSONL files or hub ids, "
                                                 "one per dataset"})
    output: str = field(metadata={"help": "output .jsonl; the dataset card goes beside it"})
    kind: str = field(default="eval", metadata={"help": "'eval' (flipped-label/SUL items) or 'symbol_tuning'"})
    names: list[str] | None = field(default=None, metadata={
        "help": "dataset names (for Wei et al.'s label words), one per source; default: the file stem"})
    k: int = field(default=4, metadata={"help": "exemplars per class (the paper: 16)"})
    n_queries: int = field(default=20, metadata={"help": "evaluation queries per dataset (the paper: 100)"})
    flip_pcts: list[int] = field(default_factory=lambda: list(FLIP_PCTS),
                                 metadata={"help": "percentages of exemplar labels to flip"})
    label_sets: list[str] = field(default_factory=lambda: ["natural", "sul"],
                                  metadata={"help": "'natural' (Wei et al.'s words) and/or 'sul' (Foo/Bar...)"})
    n_examples: int = field(default=200, metadata={"help": "symbol_tuning: number of training examples"})
    min_k: int = field(default=2, metadata={"help": "symbol_tuning: fewest exemplars per class"})
    max_k: int = field(default=10, metadata={"help": "symbol_tuning: most exemplars per class"})
    seed: int = field(default=0, metadata={"help": "seed for query, exemplar, order and flip sampling"})
    on_invalid: str = field(default="error", metadata={"help": "'error' or 'skip' (bad rows counted in the card)"})
    hub_split: str | None = field(default=None, metadata={"help": "split to read when a source is a hub id"})

    def __post_init__(self) -> None:
        if isinstance(self.sources, str):
            self.sources = [self.sources]
        if not self.sources:
            raise ValueError("sources: give at least one dataset")
        if self.names is not None and len(self.names) != len(self.sources):
            raise ValueError(f"names has {len(self.names)} entries for {len(self.sources)} sources")
        if self.kind not in ("eval", "symbol_tuning"):
            raise ValueError(f"kind must be 'eval' or 'symbol_tuning', got {self.kind!r}")
        if self.k < 1 or self.n_queries < 1 or self.n_examples < 1:
            raise ValueError("k, n_queries and n_examples must be >= 1")
        if any(not 0 <= p <= 100 for p in self.flip_pcts):
            raise ValueError(f"flip_pcts must lie in [0, 100], got {self.flip_pcts}")
        if not set(self.label_sets) <= {"natural", "sul"} or not self.label_sets:
            raise ValueError(f"label_sets must be a non-empty subset of ['natural', 'sul'], got {self.label_sets}")
        if self.on_invalid not in ("error", "skip"):
            raise ValueError(f"on_invalid must be 'error' or 'skip', got {self.on_invalid!r}")
        if not 1 <= self.min_k <= self.max_k:
            raise ValueError(f"need 1 <= min_k <= max_k, got {self.min_k}, {self.max_k}")


def build_icl(config: ICLSetConfig, *, progress: bool = True) -> dict[str, Any]:
    """Write the items (or symbol-tuning examples) and their card; returns a summary."""
    names = config.names or [None] * len(config.sources)
    datas = [load_classification(s, name=n, on_invalid=config.on_invalid, hub_split=config.hub_split, seed=config.seed)
             for s, n in zip(config.sources, names)]
    rejects = [r for d in datas for r in d.rejects]
    if config.kind == "eval":
        records = [it for d in datas for it in make_icl_items(
            d, k=config.k, n_queries=config.n_queries, flip_pcts=config.flip_pcts, label_sets=config.label_sets,
            seed=config.seed, progress=progress)]
    else:
        records = make_symbol_tuning_examples(datas, n_examples=config.n_examples, min_k=config.min_k,
                                              max_k=config.max_k, seed=config.seed, progress=progress)
    write_jsonl(config.output, records)
    write_rejects(config.output, rejects)
    per_dataset = {d.name: {"classes": d.classes, "train_rows": len(d.train), "test_rows": len(d.test),
                            "rejected": len(d.rejects), "items": sum(1 for r in records if r["dataset"] == d.name)}
                   for d in datas}
    write_card(config.output, records, builder=f"icl.{config.kind}", config=asdict(config), rejects=rejects,
               extra={"datasets": per_dataset})
    return {"written": len(records), "rejected": len(rejects), "output": config.output}



CONFIG_CLASS = ICLSetConfig


def main(config: dict, *, progress: bool = True) -> dict[str, Any]:
    """``alignkit build icl`` entry point (registry contract in alignkit.builders)."""
    return build_icl(config_from_dict(ICLSetConfig, config, "icl config"), progress=progress)

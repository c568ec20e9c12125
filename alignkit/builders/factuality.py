"""``alignkit build factuality``: preference pairs in, hallucination flags ``h_w``/``h_l`` added by a judge.

Each response (chosen and rejected) is judged alone (F-DPO protocol, methods.md §1; Chaduvula et al.,
arXiv 2601.03027). A pair whose chosen or rejected judgement failed (parse error or endpoint error) gets no flags:
it is written to ``<output>.rejects.jsonl`` with the judge's reason and counted in the card — never guessed
(the reference code maps unparsable answers to 1). Judgements are cached on disk (default: beside the output),
so a rerun after a crash judges only what is missing and writes byte-identical files. With an ensemble judge the
card gets per-item agreement and Fleiss' kappa, and low-agreement pairs go to ``<output>.review.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alignkit.builders.common import config_dict, config_from_dict, message_text
from alignkit.data.io import sidecar_path
from alignkit.judges import EnsembleJudge, JudgeItem, agreement_summary, get_judge, run_judge


@dataclass
class FactualityConfig:
    input: str = field(default="", metadata={"help": "preference pairs: .jsonl, .parquet or a datasets folder"})
    output: str = field(default="", metadata={"help": "output .jsonl/.parquet (card, rejects, review beside it)"})
    judge: str = field(default="reference", metadata={
        "help": "judge spec: reference | vllm:MODEL | openai:URL | ensemble:SPEC1,SPEC2"})
    judge_kwargs: dict = field(default_factory=dict, metadata={
        "help": "keyword arguments for the judge (mode, model, api_key_env, max_retries, members, ...)"})
    batch_size: int = field(default=64, metadata={"help": "items per judge call (and per cache flush)"})
    cache: str | None = field(default=None, metadata={
        "help": "judge cache file (JSONL); default <output stem>.judge_cache.jsonl beside the output"})
    flip: bool = field(default=False, metadata={"help": "apply the F-DPO flip after labelling"})
    on_invalid: str = field(default="error", metadata={"help": "bad input rows: 'error' or 'skip' (counted)"})
    reference_true_field: str = field(default="reference_true", metadata={
        "help": "record field with gold answers (reference judge)"})
    reference_false_field: str = field(default="reference_false", metadata={
        "help": "record field with false answers (reference judge)"})
    context_field: str = field(default="context", metadata={"help": "record field with a grounding passage"})
    limit: int | None = field(default=None, metadata={"help": "only the first N valid pairs"})
    seed: int | None = field(default=None, metadata={"help": "unused by this builder (no randomness); recorded"})

    def __post_init__(self) -> None:
        if not self.input or not self.output:
            raise ValueError("factuality config: 'input' and 'output' are required")
        if self.on_invalid not in ("error", "skip"):
            raise ValueError(f"factuality config: on_invalid must be 'error' or 'skip', got {self.on_invalid!r}")
        if self.batch_size < 1:
            raise ValueError("factuality config: batch_size must be >= 1")


CONFIG_CLASS = FactualityConfig


def _refs(record: dict, key: str) -> tuple[str, ...]:
    v = record.get(key)
    if v is None:
        return ()
    return (v,) if isinstance(v, str) else tuple(str(x) for x in v)


def items_for(record: dict, cfg: FactualityConfig) -> tuple[JudgeItem, JudgeItem]:
    prompt = message_text(record["prompt"], role="user")
    common: dict[str, Any] = {"prompt": prompt, "reference_true": _refs(record, cfg.reference_true_field),
                              "reference_false": _refs(record, cfg.reference_false_field),
                              "context": record.get(cfg.context_field), "id": record.get("id")}
    return (JudgeItem(response=message_text(record["chosen"], role="assistant"), **common),
            JudgeItem(response=message_text(record["rejected"], role="assistant"), **common))


def label_pairs(records: list[dict], judge, cfg: FactualityConfig, *, source_file: str, lines: list[int],
                progress: bool = True) -> tuple[list[dict], list[dict], list[dict], dict]:
    """Judge both sides of every pair. Returns (labelled rows, rejects, review rows, judge stats)."""
    items: list[JudgeItem] = []
    for r in records:
        items.extend(items_for(r, cfg))
    cache = cfg.cache or str(sidecar_path(cfg.output, "judge_cache.jsonl"))
    judgements, stats = run_judge(judge, items, cache=cache, batch_size=cfg.batch_size, progress=progress,
                                  desc=f"labelling ({judge.name})")
    out, rejects, review = [], [], []
    failures = {"chosen": {}, "rejected": {}}
    for i, r in enumerate(records):
        jw, jl = judgements[2 * i], judgements[2 * i + 1]
        bad = [(side, j) for side, j in (("chosen", jw), ("rejected", jl)) if j.status != "ok" or j.label is None]
        for side, j in bad:
            failures[side][j.status] = failures[side].get(j.status, 0) + 1
        if bad:
            side, j = bad[0]
            rejects.append({"file": source_file, "line": lines[i], "field": side,
                            "reason": f"judge {j.status}: {j.detail.get('reason', '')}".rstrip(": "),
                            "raw": j.raw, "id": r.get("id")})
            continue
        row = dict(r)
        if "h_w" in r and "h_l" in r:
            row["prior_h_w"], row["prior_h_l"] = r["h_w"], r["h_l"]
        row["h_w"], row["h_l"] = int(jw.label), int(jl.label)  # type: ignore[arg-type]
        flagged = [side for side, j in (("chosen", jw), ("rejected", jl)) if j.detail.get("flagged")]
        if isinstance(judge, EnsembleJudge):
            row["review"] = bool(flagged)
            row["judge_agreement"] = {"chosen": jw.detail.get("agreement"), "rejected": jl.detail.get("agreement")}
            if flagged:
                review.append({"id": r.get("id"), "line": lines[i], "flagged": flagged,
                               "votes": {"chosen": jw.detail.get("votes"), "rejected": jl.detail.get("votes")},
                               "agreement": {"chosen": jw.detail.get("agreement"),
                                             "rejected": jl.detail.get("agreement")}})
        out.append(row)
    judge_card: dict[str, Any] = {
        "spec": cfg.judge, "identity": getattr(judge, "cache_key", judge.name),
        "items_judged": len(items), "status": stats["status"],
        "failures_by_side": {s: dict(sorted(v.items())) for s, v in failures.items()},
        "pairs_rejected_for_judge_failure": len(rejects),
    }
    if isinstance(judge, EnsembleJudge):
        judge_card["agreement"] = agreement_summary(judgements, len(judge.judges))
        judge_card["agreement"]["pairs_flagged_for_review"] = len(review)
    return out, rejects, review, {"card": judge_card, "run": stats}


def _prior_agreement(rows: list[dict]) -> dict | None:
    rows = [r for r in rows if "prior_h_w" in r]
    if not rows:
        return None
    same = sum(1 for r in rows for a, b in (("h_w", "prior_h_w"), ("h_l", "prior_h_l")) if r[a] == r[b])
    return {"pairs": len(rows), "label_agreement": round(same / (2 * len(rows)), 6)}


def main(config: dict, *, progress: bool = True) -> dict:
    from alignkit.data.card import write_card
    from alignkit.data.io import read_records, write_jsonl, write_records, write_rejects
    from alignkit.data.transforms import fdpo_flip_counted

    cfg = config_from_dict(FactualityConfig, config, "factuality config")
    judge = get_judge(cfg.judge, **cfg.judge_kwargs)
    res = read_records(cfg.input, on_invalid=cfg.on_invalid, require_flags=False)  # type: ignore[arg-type]
    records = res.records[: cfg.limit] if cfg.limit is not None else res.records
    lines = res.lines[: len(records)]  # each record's line in the input file, for reject reasons
    dropped = {"over limit": len(res.records) - len(records)} if len(records) < len(res.records) else {}
    rows, judge_rejects, review, jstats = label_pairs(records, judge, cfg, source_file=cfg.input, lines=lines,
                                                      progress=progress)
    swapped = None
    if cfg.flip:
        rows, swapped = fdpo_flip_counted(rows)
    rejects = res.rejects + judge_rejects
    write_records(cfg.output, rows)
    write_rejects(cfg.output, rejects)
    review_path = sidecar_path(cfg.output, "review.jsonl")
    if review:
        write_jsonl(review_path, review)
    else:
        review_path.unlink(missing_ok=True)
    cd = config_dict(cfg)
    extra: dict[str, Any] = {"rows_read": res.n_rows, "judge": jstats["card"],
                             "prior_label_agreement": _prior_agreement(rows)}
    if swapped is not None:
        extra["flip"] = {"swapped": swapped}
    write_card(cfg.output, rows, builder="factuality", config=cd, rejects=rejects, extra=extra, dropped=dropped)
    return {"output": cfg.output, "written": len(rows), "rejected": len(rejects), "review": len(review),
            "cached": jstats["run"]["cached"], "judged": jstats["run"]["judged"],
            "judge_status": jstats["run"]["status"]}

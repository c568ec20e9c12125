"""Ensemble judge: majority vote of several judges, per-item agreement, Fleiss' kappa, review flags.

Items whose agreement (share of valid votes that agree with the majority) falls below ``min_agreement`` are
flagged for review: disagreement among judges is the label-error signal. A judge that failed on an item does not
vote; with no strict majority among the valid votes the item gets no label (status "error", reason
"no majority"), counted like any other failure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from alignkit.judges.base import Judge, JudgeItem, Judgement
from alignkit.metrics.agreement import fleiss_kappa


@dataclass
class EnsembleJudge:
    judges: list[Judge]
    min_agreement: float = 0.7
    name: str = field(default="")

    def __post_init__(self) -> None:
        if len(self.judges) < 2:
            raise ValueError("an ensemble needs at least two judges")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be in [0, 1], got {self.min_agreement}")
        self.name = self.name or "ensemble:" + ",".join(j.name for j in self.judges)

    @property
    def cache_key(self) -> str:
        keys = [getattr(j, "cache_key", j.name) for j in self.judges]
        return f"ensemble[{self.min_agreement}]:" + "|".join(keys)

    def judge(self, items: list[JudgeItem]) -> list[Judgement]:
        per_judge = [j.judge(items) for j in self.judges]
        out = []
        for i in range(len(items)):
            votes = [res[i] for res in per_judge]
            valid = [v.label for v in votes if v.status == "ok" and v.label is not None]
            detail = {"votes": [v.label for v in votes], "statuses": [v.status for v in votes],
                      "transient": any(v.detail.get("transient") for v in votes)}
            if not valid:
                detail.update(reason="no judge returned a label", agreement=None, flagged=True)
                out.append(Judgement(None, "error", detail=detail))
                continue
            (top, n_top), *rest = Counter(valid).most_common() + [(None, 0)]
            agreement = n_top / len(valid)
            detail.update(agreement=round(agreement, 6), flagged=agreement < self.min_agreement)
            if rest and rest[0][1] == n_top:
                detail["reason"] = "no majority"
                out.append(Judgement(None, "error", detail=detail))
                continue
            scores = [v.score for v in votes if v.status == "ok" and v.score is not None]
            score = sum(scores) / len(scores) if scores else None
            out.append(Judgement(top, "ok", score=score, detail=detail))
        return out


def agreement_summary(judgements: list[Judgement], n_judges: int) -> dict:
    """Card section for an ensemble run: mean agreement, flagged count, Fleiss' kappa over fully rated items."""
    rows, agreements, flagged = [], [], 0
    for j in judgements:
        votes = j.detail.get("votes", [])
        statuses = j.detail.get("statuses", [])
        if j.detail.get("agreement") is not None:
            agreements.append(j.detail["agreement"])
        flagged += bool(j.detail.get("flagged"))
        if len(votes) == n_judges and all(s == "ok" for s in statuses):
            rows.append([sum(1 for v in votes if v == 0), sum(1 for v in votes if v == 1)])
    kappa = fleiss_kappa(rows) if rows else None
    return {
        "n_judges": n_judges,
        "mean_agreement": round(sum(agreements) / len(agreements), 6) if agreements else None,
        "flagged_for_review": flagged,
        "fleiss_kappa": round(kappa, 6) if kappa is not None else None,
        "kappa_items": len(rows),
    }

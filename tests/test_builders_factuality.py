"""Factuality labelling with the reference judge and an ensemble: flags, flip, cache reuse, review flags, bad rows."""

from __future__ import annotations

import json

import pytest

from alignkit.builders.factuality import FactualityConfig, main
from alignkit.builders.factworld import build_factworld
from alignkit.data.io import read_jsonl, write_jsonl


@pytest.fixture
def pairs(tmp_path):
    train, _ = build_factworld(200, 0, rho=0.4, seed=9, share_00=0.1, share_11=0.1)
    stripped = [{k: v for k, v in r.items() if k not in ("h_w", "h_l")} for r in train]
    write_jsonl(tmp_path / "pairs.jsonl", stripped)
    return tmp_path / "pairs.jsonl", train


def test_reference_labels_recover_generation_flags_and_flip(pairs, tmp_path):
    src, train = pairs
    out = tmp_path / "o" / "lab.jsonl"
    s = main({"input": str(src), "output": str(out), "flip": True}, progress=False)
    assert s["written"] == 200 and s["rejected"] == 0 and s["judged"] == 400
    rows = read_jsonl(out).records
    truth = {r["id"]: (r["h_w"], r["h_l"]) for r in train}
    for r in rows:
        expected = truth[r["id"]]
        assert (r["h_w"], r["h_l"]) == ((0, 1) if expected == (1, 0) else expected)
        assert r["flipped"] == (expected == (1, 0))
    card = json.loads((tmp_path / "o" / "lab.card.json").read_text())
    assert card["stats"]["buckets"]["(1,0)"] == 0 and card["stats"]["flipped"] == sum(
        1 for v in truth.values() if v == (1, 0))
    assert card["judge"]["status"] == {"ok": 400} and card["judge"]["identity"] == "reference:margin=0.0"
    first = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    # rerun: everything from the cache, byte-identical files
    s2 = main({"input": str(src), "output": str(out), "flip": True}, progress=False)
    assert (s2["cached"], s2["judged"]) == (400, 0)
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == first


def test_ensemble_agreement_kappa_and_review(pairs, tmp_path):
    src, _ = pairs
    out = tmp_path / "o" / "ens.jsonl"
    # a strict-margin member disagrees with the others where ROUGE-L is close: those items get flagged
    cfg = {"input": str(src), "output": str(out), "judge": "ensemble:reference,reference",
           "judge_kwargs": {"min_agreement": 1.0}, "limit": 50}
    s = main(cfg, progress=False)
    card = json.loads((tmp_path / "o" / "ens.card.json").read_text())
    ag = card["judge"]["agreement"]
    assert s["written"] == 50 and ag["n_judges"] == 2 and ag["mean_agreement"] == 1.0
    assert ag["fleiss_kappa"] == 1.0 and ag["flagged_for_review"] == 0 and s["review"] == 0
    assert all(r["review"] is False for r in read_jsonl(out).records)


def test_disagreeing_ensemble_flags_items_for_review(tmp_path):
    rows = [{"id": f"p{i}", "prompt": "When was Velmora founded?", "chosen": "Velmora was founded in 1847.",
             "rejected": "Velmora was founded long ago.", "reference_true": ["1847", "Velmora was founded in 1847."],
             "reference_false": ["1863", "Velmora was founded in 1863."]} for i in range(3)]
    write_jsonl(tmp_path / "p.jsonl", rows)
    # On the vague rejected answer neither reference is contained and ROUGE-L ties: margins 0 and 1.0 say 1
    # (lacks the fact), margin -1.0 says 0 -> 2 of 3 agree, below min_agreement 0.9 -> flagged for review.
    from alignkit.builders.factuality import label_pairs
    from alignkit.judges import EnsembleJudge, ReferenceJudge

    judge = EnsembleJudge([ReferenceJudge(), ReferenceJudge(margin=1.0), ReferenceJudge(margin=-1.0)],
                          min_agreement=0.9)
    cfg = {"input": str(tmp_path / "p.jsonl"), "output": str(tmp_path / "o" / "e.jsonl")}
    c = FactualityConfig(**cfg)
    labelled, rejects, review, stats = label_pairs(rows, judge, c, source_file="p.jsonl", lines=[1, 2, 3],
                                                   progress=False)
    assert len(labelled) == 3 and not rejects and len(review) == 3
    assert review[0]["flagged"] == ["rejected"] and review[0]["votes"]["rejected"] == [1, 1, 0]
    assert stats["card"]["agreement"]["flagged_for_review"] == 3
    assert all(r["review"] and (r["h_w"], r["h_l"]) == (0, 1) for r in labelled)
    assert labelled[0]["judge_agreement"] == {"chosen": 1.0, "rejected": round(2 / 3, 6)}


def test_bad_rows_error_or_counted_skip(tmp_path, capsys):
    from alignkit.cli import main as cli

    src = tmp_path / "bad.jsonl"
    src.write_text('{"prompt": "q", "chosen": "a", "rejected": "b", "reference_true": ["a"]}\n'
                   '{"prompt": "q", "chosen": "same", "rejected": "same"}\n')
    out = tmp_path / "o.jsonl"
    assert cli(["build", "factuality", "--set", f"input={src}", "-o", str(out), "--quiet"]) == 1
    assert "bad.jsonl:2: field 'rejected': chosen == rejected" in capsys.readouterr().err
    assert cli(["build", "factuality", "--set", f"input={src}", "-o", str(out), "--quiet",
                "--set", "on_invalid=skip"]) == 0
    rows = read_jsonl(out).records
    assert [(r["h_w"], r["h_l"]) for r in rows] == [(0, 1)]
    card = json.loads((tmp_path / "o.card.json").read_text())
    assert card["rejected"] == {"n": 1, "reasons": {"rejected: chosen == rejected": 1}}
    with pytest.raises(ValueError):
        FactualityConfig(input="x", output="y", on_invalid="ignore")


def test_sidecars_keep_dots_in_the_name(tmp_path):
    """train_eps0.4.jsonl and train_eps0.jsonl get their own rejects, cache and card (today's bug: both wrote
    train_eps0.rejects.jsonl and the second run deleted the first one's rejects)."""
    rows = [{"id": "a", "prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon.",
             "reference_true": ["Paris"], "reference_false": ["Lyon"]},
            {"id": "b", "prompt": "No references here?", "chosen": "Yes.", "rejected": "No."}]  # judge error: reject
    src = tmp_path / "pairs.jsonl"
    write_jsonl(src, rows)
    out = tmp_path / "o"
    for name in ("train_eps0.4.jsonl", "train_eps0.jsonl"):
        s = main({"input": str(src), "output": str(out / name)}, progress=False)
        assert (s["written"], s["rejected"]) == (1, 1)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["train_eps0.4.jsonl", "train_eps0.4.rejects.jsonl", "train_eps0.4.card.json",
                            "train_eps0.4.judge_cache.jsonl", "train_eps0.jsonl", "train_eps0.rejects.jsonl",
                            "train_eps0.card.json", "train_eps0.judge_cache.jsonl"])


def test_rejects_and_limit_refer_to_input_lines(tmp_path):
    good = {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon.",
            "reference_true": ["Paris"], "reference_false": ["Lyon"]}
    lines = [json.dumps(dict(good, id="a")), "", json.dumps({"id": "bad", "prompt": "x"}),
             json.dumps({"id": "noref", "prompt": "Q?", "chosen": "Yes.", "rejected": "No."}),
             json.dumps(dict(good, id="d")), json.dumps(dict(good, id="e"))]
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "lab.jsonl"
    s = main({"input": str(src), "output": str(out), "on_invalid": "skip", "limit": 3}, progress=False)
    rejects = [json.loads(x) for x in (tmp_path / "lab.rejects.jsonl").read_text().splitlines()]
    assert sorted((r["line"], r["field"]) for r in rejects) == [(3, "chosen"), (4, "chosen")]
    card = json.loads((tmp_path / "lab.card.json").read_text())
    assert card["dropped"] == {"n": 1, "reasons": {"over limit": 1}}  # row "e" was valid but over the limit
    assert card["rows_read"] == 5 == s["written"] + s["rejected"] + card["dropped"]["n"]

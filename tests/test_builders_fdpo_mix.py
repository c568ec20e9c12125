"""F-DPO mix: bucket balancing to target counts, with/without replacement, seeded, then the flip."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from alignkit.builders.fdpo_mix import PAPER_TARGETS, FDPOMixConfig, mix
from alignkit.cli import main as cli
from alignkit.data.io import read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parents[1]


def _rows(bucket, n, prefix):
    return [{"id": f"{prefix}{i}", "prompt": "q", "chosen": f"a{prefix}{i}", "rejected": f"b{prefix}{i}",
             "h_w": bucket[0], "h_l": bucket[1]} for i in range(n)]


POOL = _rows((0, 0), 30, "a") + _rows((0, 1), 8, "b") + _rows((1, 0), 12, "c") + _rows((1, 1), 0, "d")


def _counts(rows):
    return Counter(f"({r['h_w']},{r['h_l']})" for r in rows)


def test_paper_shape_scaled_with_auto_replacement():
    assert PAPER_TARGETS == {"(0,0)": 15000, "(0,1)": 10000, "(1,0)": 10000, "(1,1)": 10000}
    rows, rep = mix(POOL, PAPER_TARGETS, seed=0, scale=0.001)  # 15 / 10 / 10 / 10
    assert rep["target"] == {"(0,0)": 15, "(0,1)": 10, "(1,0)": 10, "(1,1)": 10}
    assert _counts(rows) == {"(0,0)": 15, "(0,1)": 10, "(1,0)": 10}
    assert rep["resampled"] == {"(0,0)": 0, "(0,1)": 2, "(1,0)": 0, "(1,1)": 0}
    assert rep["shortfall"]["(1,1)"] == 10  # an empty bucket cannot be resampled: recorded, not hidden
    assert len({r["id"] for r in rows}) == len(rows)
    b = [r for r in rows if r["h_w"] == 0 and r["h_l"] == 1]
    assert {r["id"].split("#")[0] for r in b} == {f"b{i}" for i in range(8)}  # every row once, then repeats
    assert sum(1 for r in b if r.get("resampled")) == 2


def test_never_and_always_replacement():
    rows, rep = mix(POOL, {"(0,1)": 20, "(0,0)": 5}, seed=1, replacement="never")
    assert _counts(rows) == {"(0,1)": 8, "(0,0)": 5} and rep["shortfall"]["(0,1)"] == 12
    assert not any(r.get("resampled") for r in rows)
    rows, rep = mix(POOL, {"(0,0)": 30}, seed=1, replacement="always")
    assert len(rows) == 30 and rep["resampled"]["(0,0)"] > 0  # 30 draws from 30 with replacement repeat
    assert len({r["id"] for r in rows}) == 30


def test_seeded():
    a, _ = mix(POOL, PAPER_TARGETS, seed=3, scale=0.001)
    b, _ = mix(POOL, PAPER_TARGETS, seed=3, scale=0.001)
    c, _ = mix(POOL, PAPER_TARGETS, seed=4, scale=0.001)
    assert a == b and [r["id"] for r in a] != [r["id"] for r in c]


def test_config_validation():
    for bad in ({"targets": {"(2,0)": 1}}, {"replacement": "sometimes"}, {"scale": -1}, {"targets": {"(0,0)": -5}}):
        with pytest.raises(ValueError):
            FDPOMixConfig(inputs=["x"], output="y", **bad)
    assert FDPOMixConfig(inputs="x", output="y", targets={"(0, 1)": 3}).targets == {"(0,1)": 3}


def test_cli_flip_card_and_bytes(tmp_path, capsys):
    write_jsonl(tmp_path / "a.jsonl", POOL[:25])
    write_jsonl(tmp_path / "b.jsonl", POOL[25:])
    out = tmp_path / "o" / "mix.jsonl"
    args = ["build", "fdpo-mix", "--config", str(REPO / "data_builders" / "fdpo_mix.yaml"), "--quiet",
            "--set", f"inputs=[{tmp_path / 'a.jsonl'}, {tmp_path / 'b.jsonl'}]", "-o", str(out),
            "--set", "scale=0.002", "--seed", "5"]
    assert cli(args) == 0
    first = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert cli(args) == 0 and {p.name: p.read_bytes() for p in out.parent.iterdir()} == first
    rows = read_jsonl(out).records
    assert _counts(rows)["(1,0)"] == 0 and _counts(rows)["(0,1)"] == 20 + 20  # flipped (1,0) pairs join (0,1)
    card = json.loads((tmp_path / "o" / "mix.card.json").read_text())
    assert card["stats"]["flipped"] == 20 and card["mix"]["taken"]["(1,0)"] == 20 and card["seed"] == 5
    # the same id in two inputs is an error naming the file
    write_jsonl(tmp_path / "dup.jsonl", POOL[:1])
    bad = args[:5] + ["--set", f"inputs=[{tmp_path / 'a.jsonl'}, {tmp_path / 'dup.jsonl'}]"] + args[7:]
    capsys.readouterr()
    assert cli(bad) == 1
    assert "dup.jsonl" in capsys.readouterr().err


def _values_only_references(path: Path) -> dict[str, int]:
    """Rewrite the fact world's references without the answer sentences themselves (the fact world lists the exact
    chosen/rejected sentences among them, which would let the judge match a row against itself)."""
    from alignkit.builders.common import message_text

    rows = read_jsonl(path).records
    counts = Counter()
    for r in rows:
        judged = {message_text(r["chosen"], role="assistant"), message_text(r["rejected"], role="assistant")}
        for key in ("reference_true", "reference_false"):
            kept = [x for x in r[key] if x not in judged and not any(x in j and len(x) > 20 for j in judged)]
            counts["dropped"] += len(r[key]) - len(kept)
            counts["kept"] += len(kept)
            r[key] = kept
    write_jsonl(path, rows)
    return counts


@pytest.mark.slow
def test_all_builder_yamls_run_as_a_pipeline(tmp_path):
    """factworld -> factuality -> hallucinate -> fdpo-mix from data_builders/*.yaml via the runnable script."""
    script = REPO / "data_builders" / "build.py"
    o = tmp_path
    steps = [
        ["factworld", "--set", f"output_dir={o}/fw", "--set", "n_train=400", "--set", "n_test=20"],
        ["factuality", "--set", f"input={o}/fw/train.jsonl", "--set", f"output={o}/lab/train.jsonl"],
        ["hallucinate", "--set", f"input={o}/lab/train.jsonl", "--set", f"output={o}/hal/train.jsonl"],
        ["fdpo-mix", "--set", f"inputs=[{o}/lab/train.jsonl, {o}/hal/train.jsonl]", "--set",
         f"output={o}/mix/train.jsonl", "--set", "scale=0.01"],
    ]
    for i, step in enumerate(steps):
        p = subprocess.run([sys.executable, str(script), *step, "--quiet"], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        if i == 0:
            n_refs = _values_only_references(o / "fw" / "train.jsonl")
            assert n_refs["dropped"] > 0 and n_refs["kept"] > 0
    lab = json.loads((o / "lab" / "train.card.json").read_text())
    labelled = read_jsonl(o / "lab" / "train.jsonl").records
    # The references are now bare values ("1847"), never the judged sentences: the judge must find them inside the
    # answers. A contradicting answer states one value, so its flags are recovered exactly; an "unsupported" answer
    # holds the true value plus an invented one, which the reference judge decides by ROUGE-L and may miss.
    contradict = [r for r in labelled if r["hallucination"] == "contradict"]
    assert len(contradict) > 100
    assert all((r["h_w"], r["h_l"]) == (r["prior_h_w"], r["prior_h_l"]) for r in contradict)
    assert lab["prior_label_agreement"]["label_agreement"] >= 0.9
    mix_rows = read_jsonl(o / "mix" / "train.jsonl").records
    assert len(mix_rows) == 450 and _counts(mix_rows)["(1,0)"] == 0
    assert any(r["source"] == "hallucinate:rule" for r in mix_rows)

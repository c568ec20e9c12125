"""Rule-based hallucinated variants: each perturbation kind, recorded changes, determinism, counted rejects."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from alignkit.builders.factworld import build_factworld
from alignkit.builders.hallucinate import PERTURBERS, entity_spans, perturb, rule_variants
from alignkit.cli import main as cli
from alignkit.data.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]


def _apply(text: str, changes: list[dict]) -> str:
    """Replay recorded changes (offsets are in the corrupted text) backwards to recover the original."""
    for c in reversed(changes):
        o = c["offset"]
        assert text[o:o + len(c["to"])] == c["to"]
        text = text[:o] + c["from"] + text[o + len(c["to"]):]
    return text


@pytest.mark.parametrize("kind,text,check", [
    ("year", "The bridge opened in 1889.", lambda new, c: c["from"] == "1889" and 1859 <= int(c["to"]) <= 1919),
    ("number", "It has 12,400 residents.", lambda new, c: c["from"] == "12,400" and "," in c["to"]),
    ("number", "It weighs 3.5 tonnes.", lambda new, c: c["from"] == "3.5" and len(c["to"].split(".")[1]) == 1),
    ("date", "It opened in March.", lambda new, c: c["from"] == "March" and c["to"] in
     ("January February April May June July August September October November December".split())),
    ("entity", "The tower stands in Paris.", lambda new, c: c["from"] == "Paris" and c["to"] == "Lyon"),
    ("negation", "The river is navigable.", lambda new, c: "is not navigable" in new),
    ("negation", "The river is not navigable.", lambda new, c: new == "The river is navigable."),
    ("unit", "The road is 40 km long.", lambda new, c: new == "The road is 40 miles long."),
])
def test_each_perturbation_kind(kind, text, check):
    for seed in range(5):
        new, changes = perturb(text, random.Random(seed), ["Paris", "Lyon"], max_edits=1, kinds=(kind,))
        assert len(changes) == 1 and changes[0]["kind"] == kind and new != text
        assert check(new, changes[0]), (new, changes)
        assert _apply(new, changes) == text


def test_sentence_initial_words_are_not_entities():
    spans = [s for _, _, s in entity_spans("Paris is large. The Seine flows through Paris. It rains.")]
    assert spans == ["Seine", "Paris"]


def test_multiple_edits_do_not_overlap_and_replay():
    text = "In May 1901 the Velmora Works built 40 km of track to Dorholm, which was not finished."
    for seed in range(30):
        new, changes = perturb(text, random.Random(seed), ["Kasby", "Selmar Works"], max_edits=3)
        assert 1 <= len(changes) <= 3 and new != text
        assert _apply(new, changes) == text


def test_variants_are_deterministic_per_id_and_reject_with_reasons():
    train, _ = build_factworld(400, 0, rho=0.0, seed=4)
    train.append({"id": "plain", "prompt": "q", "chosen": "it makes boots.", "rejected": "x", "h_w": 0, "h_l": 1})
    pairs, rejects = rule_variants(train, seed=11)
    assert len(pairs) == 400 and len(rejects) == 1
    assert rejects[0] == {"line": 401, "field": "chosen", "reason": "no perturbable span", "id": "plain"}
    # same seed, reversed input order: every id gets the same variant
    again, _ = rule_variants(list(reversed(train)), seed=11)
    assert {p["id"]: p["chosen"] for p in again} == {p["id"]: p["chosen"] for p in pairs}
    other, _ = rule_variants(train, seed=12)
    assert [p["chosen"] for p in other] != [p["chosen"] for p in pairs]
    by_id = {r["id"]: r for r in train}
    for p in pairs:
        src = by_id[p["source_id"]]
        assert (p["h_w"], p["h_l"]) == (1, 0) and p["rejected"] == src["chosen"] and p["prompt"] == src["prompt"]
        assert _apply(p["chosen"][0]["content"], p["changes"]) == src["chosen"][0]["content"]
    kinds = {c["kind"] for p in pairs for c in p["changes"]}
    assert {"year", "number", "entity", "negation"} <= kinds


def test_cli_from_yaml_with_counted_skips(tmp_path):
    train, _ = build_factworld(120, 0, rho=0.0, seed=5)
    src = tmp_path / "src.jsonl"
    lines = [json.dumps(r) for r in train] + ['{"prompt": "q", "chosen": "x"}']  # a bad row: no rejected
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "hal.jsonl"
    args = ["build", "hallucinate", "--config", str(REPO / "data_builders" / "hallucinate.yaml"), "--quiet",
            "--set", f"input={src}", "--set", f"output={out}", "--set", "on_invalid=skip"]
    assert cli(args) == 0
    first = out.read_bytes()
    assert cli(args) == 0 and out.read_bytes() == first
    written = read_jsonl(out).records  # valid preference records
    card = json.loads((tmp_path / "out" / "hal.card.json").read_text())
    rejects = [json.loads(x) for x in (tmp_path / "out" / "hal.rejects.jsonl").read_text().splitlines()]
    assert card["stats"]["buckets"]["(1,0)"] == len(written) and card["rejected"]["n"] == len(rejects)
    assert card["source_pairs"] == len(written) + sum(r["reason"] == "no perturbable span" for r in rejects) == 120
    assert any(r["line"] == 121 and r["field"] == "rejected" for r in rejects)
    assert sum(card["edits_by_kind"].values()) == sum(len(r["changes"]) for r in written)
    assert cli(args[:-2] + ["--set", "kinds=[teleport]"]) == 2  # a config error (exit-code policy)


def test_perturbers_registry_is_complete():
    assert set(PERTURBERS) == {"year", "number", "date", "entity", "negation", "unit"}


def test_source_bucket_filter_is_counted_and_rejects_name_input_lines(tmp_path, reliability_log):
    """Rows outside source_bucket are counted in the card (issue 11 item 7), and a reject's line is the row's line in
    the input file, not its position among the filtered rows."""
    train, _ = build_factworld(60, 0, rho=0.5, seed=3)
    plain = {"id": "plain", "prompt": "q", "chosen": "it makes boots.", "rejected": "x", "h_w": 0, "h_l": 1}
    rows = train + [plain]
    src = tmp_path / "src.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    plain_line = len(rows)
    out = tmp_path / "hal.jsonl"
    assert cli(["build", "hallucinate", "--quiet", "--set", f"input={src}", "--set", f"output={out}"]) == 0
    card = json.loads((tmp_path / "hal.card.json").read_text())
    n_other = sum(1 for r in rows if (r["h_w"], r["h_l"]) != (0, 1))
    assert n_other > 0
    assert card["dropped"] == {"n": n_other, "reasons": {"not in source_bucket [0, 1]": n_other}}
    rejects = [json.loads(x) for x in (tmp_path / "hal.rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["line"]) for r in rejects] == [("plain", plain_line)]
    written = len(read_jsonl(out).records)
    # every input row is accounted for: written, rejected or dropped on purpose
    assert card["rows_read"] == len(rows) == written + card["rejected"]["n"] + card["dropped"]["n"]
    reliability_log.record("bad input (skip mode)", "hallucinate: rows outside source_bucket, an unperturbable row",
                           f"{n_other} dropped by the filter and counted; reject at input line {plain_line}",
                           rows_in=len(rows), rows_out=written + card["dropped"]["n"], rejected=card["rejected"]["n"])


def test_builder_config_types_are_checked(tmp_path):
    from alignkit.builders.hallucinate import main

    src = tmp_path / "src.jsonl"
    src.write_text("")
    with pytest.raises(ValueError, match="hallucinate config: field max_edits: expected int, got str '2'"):
        main({"input": str(src), "output": str(tmp_path / "o.jsonl"), "max_edits": "2"})
    with pytest.raises(ValueError, match=r"field source_bucket: expected \[h_w, h_l\] with 0/1 values"):
        main({"input": str(src), "output": str(tmp_path / "o.jsonl"), "source_bucket": [0, 2]})

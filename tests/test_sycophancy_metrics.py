"""ToF / NoF against hand-computed cases and against every per-item value in the SYCON-Bench reference results."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from alignkit.evals.metrics import number_of_flips, sycophancy_summary, turn_of_flip

FULL = re.compile(r"^Row (\d+): ToF = (\d+), NoF = (\d+), Alignments = \[([01](?: [01])*)\]$")
SHORT = re.compile(r"^Row (\d+): (\d+)$")


@pytest.mark.parametrize(
    "judgments, tof, nof",
    [
        ([1, 1, 1, 1, 1], 5, 0),
        ([0, 0, 0, 0, 0], 0, 0),
        ([1, 0, 1, 0, 1], 1, 4),
        ([0, 1, 0, 0, 0], 0, 2),
        ([1, 1, 1, 1, 0], 4, 1),
        ([1, 1, 0, 1, 1], 2, 2),
        ([True, False], 1, 1),
        ([], 0, 0),
    ],
)
def test_tof_nof_hand_computed(judgments, tof, nof):
    assert turn_of_flip(judgments) == tof
    assert number_of_flips(judgments) == nof


@pytest.mark.parametrize("bad", [[1, None, 1], [1, 2], [0.5]])
def test_tof_rejects_non_binary(bad):
    with pytest.raises(ValueError, match="must be 0 or 1"):
        turn_of_flip(bad)
    with pytest.raises(ValueError, match="must be 0 or 1"):
        number_of_flips(bad)


def test_summary_histograms():
    s = sycophancy_summary([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [0, 0, 0, 0, 0]])
    assert s["n"] == 3 and s["tof"] == [5, 1, 0] and s["nof"] == [0, 4, 0]
    assert s["mean_tof"] == pytest.approx(2.0) and s["mean_nof"] == pytest.approx(4 / 3)
    assert s["tof_hist"] == {0: 1, 1: 1, 5: 1} and s["nof_hist"] == {0: 2, 4: 1}


def _parse_txt(path: Path) -> tuple[list[list[int]] | None, list[int], list[int] | None]:
    """(alignment vectors or None, ToF column, NoF column or None) of a ``prompt{k}_results.txt``."""
    vectors, tofs, nofs, full = [], [], [], None
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        m = FULL.match(line)
        if m:
            assert full in (None, True), f"{path}:{lineno}: mixed formats"
            full = True
            vectors.append([int(x) for x in m.group(4).split()])
            nofs.append(int(m.group(3)))
        else:
            m = SHORT.match(line)
            assert m, f"{path}:{lineno}: unrecognised line {line!r}"
            assert full in (None, False), f"{path}:{lineno}: mixed formats"
            full = False
        assert int(m.group(1)) == len(tofs) + 1, f"{path}:{lineno}: rows out of order"
        tofs.append(int(m.group(2)))
    return (vectors if full else None), tofs, (nofs if full else None)


def test_reference_results_reproduced(shared_data):
    """Every per-item ToF/NoF in the txt, csv and summary.json files under sycon/ equals the metric on its vector."""
    root = shared_data / "sycon"
    checked = {"tof": 0, "nof": 0, "files": 0, "tof_only_rows_in_range": 0}
    for txt in sorted(root.rglob("prompt*_results.txt")):
        vectors, tofs, nofs = _parse_txt(txt)
        checked["files"] += 1
        if vectors is None:
            # ToF-only files (Qwen/Llama prompts 1-4) carry no vectors to recompute from; they can only be
            # range-checked.
            assert all(0 <= t <= 5 for t in tofs), txt
            checked["tof_only_rows_in_range"] += len(tofs)
            continue
        assert len(vectors) == 100, txt
        for i, (v, t, n) in enumerate(zip(vectors, tofs, nofs), start=1):
            assert len(v) == 5, f"{txt} row {i}"
            assert turn_of_flip(v) == t, f"{txt} row {i}: {v} ToF {turn_of_flip(v)} != {t}"
            assert number_of_flips(v) == n, f"{txt} row {i}: {v} NoF {number_of_flips(v)} != {n}"
            checked["tof"] += 1
            checked["nof"] += 1
        csv_path = txt.with_name(txt.name.replace("_results.txt", ".csv"))
        if csv_path.exists():
            with open(csv_path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            assert len(rows) == len(vectors), csv_path
            for row, v in zip(rows, vectors):
                cv = [int(row[f"Response_{j}"]) for j in range(1, 6)]
                assert cv == v, f"{csv_path} question {row['QuestionID']}"
                assert turn_of_flip(cv) == int(row["ToF"]), f"{csv_path} question {row['QuestionID']}"
                assert number_of_flips(cv) == int(row["NoF"]), f"{csv_path} question {row['QuestionID']}"
                checked["tof"] += 1
                checked["nof"] += 1
        summary = txt.with_name("summary.json")
        key = txt.name.split("_")[0]
        if summary.exists():
            data = json.loads(summary.read_text())
            if key in data:
                s = sycophancy_summary(vectors)
                assert s["tof"] == data[key]["tof_results"], f"{summary} {key}"
                assert s["nof"] == data[key]["nof_results"], f"{summary} {key}"
                assert s["mean_tof"] == pytest.approx(data[key]["mean_tof"]), f"{summary} {key}"
                assert s["mean_nof"] == pytest.approx(data[key]["mean_nof"]), f"{summary} {key}"
                checked["tof"] += len(vectors)
                checked["nof"] += len(vectors)
        align = txt.with_name("alignment_results.json")
        if key == "prompt0" and align.exists():
            # turn-1/turn-2 vectors of the same run: first two columns of the prompt0 vectors
            raw = json.loads(align.read_text())["raw_results"]
            assert raw["response1"] == [v[0] for v in vectors], align
            assert raw["response2"] == [v[1] for v in vectors], align
    print(f"SYCON reference check: {checked}")
    # vectors: prompt0 of 3 models + o3-mini prompts 1-4 = 7 runs, each in txt and csv (x 100 rows), + 6 summary lists
    assert checked["tof"] == checked["nof"] == 7 * 2 * 100 + 6 * 100
    assert checked["files"] == 15

"""The preference-data contract: readers/writers round-trip, transforms, statistics, and the `alignkit data` CLI."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignkit.cli import main as cli_main
from alignkit.data import (
    DataError,
    bucket_stats,
    fdpo_flip,
    inject_noise,
    read_records,
    swap_pair,
    validate_record,
    write_records,
)


def rec(i: int, hw: int, hl: int, chat: bool = False) -> dict:
    c, r = f"chosen answer {i}", f"rejected answer {i}"
    if chat:
        return {"id": f"r{i}", "prompt": [{"role": "user", "content": f"question {i}"}],
                "chosen": [{"role": "assistant", "content": c}], "rejected": [{"role": "assistant", "content": r}],
                "h_w": hw, "h_l": hl, "source": "test", "extra": {"k": i}}
    return {"id": f"r{i}", "prompt": f"question {i}", "chosen": c, "rejected": r, "h_w": hw, "h_l": hl,
            "source": "test", "extra": {"k": i}}


BUCKETS = [(0, 0), (0, 1), (1, 0), (1, 1)]
records_st = st.lists(st.tuples(st.sampled_from(BUCKETS), st.booleans()), max_size=60).map(
    lambda xs: [rec(i, hw, hl, chat) for i, ((hw, hl), chat) in enumerate(xs)])


def test_flip_swaps_only_hallucinated_chosen():
    out = fdpo_flip([rec(0, 1, 0), rec(1, 0, 1), rec(2, 0, 0), rec(3, 1, 1)])
    assert out[0]["chosen"] == "rejected answer 0" and (out[0]["h_w"], out[0]["h_l"]) == (0, 1) and out[0]["flipped"]
    assert [r["flipped"] for r in out[1:]] == [False, False, False]
    assert out[1]["chosen"] == "chosen answer 1"
    assert out[0]["extra"] == {"k": 0}  # extra keys carried through


def test_flip_reads_the_flags_not_the_flipped_column(tmp_path, capsys):
    """README-format rows say "flipped": false; the (1, 0) ones are swapped anyway, and counted — by the function
    and by `alignkit data flip` (which records the count in the dataset card)."""
    from alignkit.data.transforms import fdpo_flip_counted

    rows = [dict(rec(0, 1, 0), flipped=False), dict(rec(1, 0, 1), flipped=True), dict(rec(2, 1, 0), flipped=False),
            dict(rec(3, 1, 1), flipped=False), {"id": "u", "prompt": "q", "chosen": "a", "rejected": "b"}]
    out, swapped = fdpo_flip_counted(rows)
    assert swapped == 2
    assert [(r.get("h_w"), r.get("h_l"), r["flipped"]) for r in out] == [
        (0, 1, True), (0, 1, True), (0, 1, True), (1, 1, False), (None, None, False)]
    assert out[0]["chosen"] == "rejected answer 0" and out[1]["chosen"] == "chosen answer 1"
    assert fdpo_flip_counted(out) == (out, 0)  # idempotent: nothing left to swap
    src = write_records(tmp_path / "in.jsonl", rows[:4])
    assert cli_main(["data", "flip", str(src), "-o", str(tmp_path / "out.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["flip"] == {"swapped": 2}
    card = json.loads((tmp_path / "out.card.json").read_text())
    assert card["flip"] == {"swapped": 2} and card["stats"]["buckets"]["(1,0)"] == 0


@settings(max_examples=60, deadline=None)
@given(records_st)
def test_flip_properties(records):
    out = fdpo_flip(records)
    assert len(out) == len(records)
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in records)  # no row lost or duplicated
    assert not any((r["h_w"], r["h_l"]) == (1, 0) for r in out)
    assert fdpo_flip(out) == out  # idempotent
    before, after = bucket_stats(records)["buckets"], bucket_stats(out)["buckets"]
    assert after["(0,1)"] == before["(0,1)"] + before["(1,0)"]  # bucket counts conserved
    assert (after["(0,0)"], after["(1,1)"]) == (before["(0,0)"], before["(1,1)"])
    # the swap itself is an involution: applying it twice restores every flipped row
    for orig, new in zip(records, out):
        if new["flipped"]:
            back = swap_pair(new)
            back.pop("flipped")
            assert back == orig


@settings(max_examples=60, deadline=None)
@given(records_st, st.floats(0, 1), st.integers(0, 2**16))
def test_noise_properties(records, eps, seed):
    out, idx = inject_noise(records, eps, seed)
    assert len(idx) == round(eps * len(records)) and len(set(idx)) == len(idx)
    assert [r["id"] for r in out] == [r["id"] for r in records]
    for i, (orig, new) in enumerate(zip(records, out)):
        assert new["noised"] == (i in idx)
        if new["noised"]:
            assert (new["chosen"], new["h_w"]) == (orig["rejected"], orig["h_l"])
    again, idx2 = inject_noise(records, eps, seed)
    assert again == out and idx2 == idx  # seeded
    # applying the same swaps again restores the input
    restored = [swap_pair(r) if r["noised"] else r for r in out]
    assert [{k: v for k, v in r.items() if k != "noised"} for r in restored] == records


def test_noise_rejects_bad_eps():
    with pytest.raises(ValueError, match=r"eps must be in \[0, 1\]"):
        inject_noise([rec(0, 0, 1)], 1.5, 0)


def test_stats_counts():
    s = bucket_stats(fdpo_flip([rec(0, 1, 0), rec(1, 0, 1, chat=True), rec(2, 0, 0)]))
    assert s["buckets"] == {"(0,0)": 1, "(0,1)": 2, "(1,0)": 0, "(1,1)": 0}
    assert (s["n"], s["flipped"], s["conversational"], s["delta_h_1"]) == (3, 1, 1, 2)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_round_trip(tmp_path, suffix):
    records = [rec(i, *BUCKETS[i % 4], chat=suffix == ".parquet") for i in range(8)]
    path = write_records(tmp_path / f"d{suffix}", records)
    back = read_records(path).records
    assert back == records


def test_datasets_dir_round_trip(tmp_path):
    import datasets

    records = [rec(i, 0, 1) for i in range(5)]
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "ds"))
    assert read_records(tmp_path / "ds").records == records


def test_validate_record_messages():
    with pytest.raises(DataError, match="field 'h_w': must be 0 or 1 \\(integer\\), got True"):
        validate_record(dict(rec(0, 0, 1), h_w=True))
    assert validate_record(rec(0, 0, 1, chat=True))["id"] == "r0"


def test_cli_noise_and_stats(tmp_path, capsys):
    src = write_records(tmp_path / "in.jsonl", [rec(i, 0, 1) for i in range(10)])
    out = tmp_path / "noisy.jsonl"
    assert cli_main(["data", "noise", str(src), "-o", str(out), "--eps", "0.3", "--seed", "1"]) == 0
    noisy = read_records(out).records
    assert sum(r["noised"] for r in noisy) == 3
    capsys.readouterr()
    assert cli_main(["data", "stats", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["buckets"]["(1,0)"] == 3 and stats["noised"] == 3
    card = json.loads((tmp_path / "noisy.card.json").read_text())
    assert card["config"]["eps"] == 0.3 and card["stats"]["noised"] == 3
    # same seed and input -> byte-identical output and card
    out2 = tmp_path / "noisy2.jsonl"
    cli_main(["data", "noise", str(src), "-o", str(out2), "--eps", "0.3", "--seed", "1"])
    assert out.read_bytes() == out2.read_bytes()


def test_card_path_keeps_dots_in_stem():
    from alignkit.data import card_path
    assert card_path("d/train.jsonl").name == "train.card.json"
    # eps 0 and eps 0.4 must not share a card
    assert card_path("d/train_eps0.4.jsonl").name == "train_eps0.4.card.json"
    assert card_path("d/train_eps0.jsonl").name == "train_eps0.card.json"
    assert card_path("d/x.parquet").name == "x.card.json"


def test_atomic_outputs_get_umask_permissions(tmp_path):
    """mkstemp creates 0600 files; outputs shared on a cluster need the usual umask permissions."""
    import stat

    from alignkit.utils import _UMASK, atomic_write_text

    out = atomic_write_text(tmp_path / "o.txt", "x")
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_UMASK


# --- issue 11 item 7: sidecar names, partial `flipped` columns ------------------------------------------------------

def test_rejects_files_keep_dots_in_the_name(tmp_path):
    """train_eps0.4.jsonl and train_eps0.jsonl get distinct rejects files; neither run deletes the other's."""
    from alignkit.data import rejects_path

    assert rejects_path("d/train_eps0.4.jsonl").name == "train_eps0.4.rejects.jsonl"
    assert rejects_path("d/train_eps0.jsonl").name == "train_eps0.rejects.jsonl"
    assert rejects_path("d/x.parquet").name == "x.rejects.jsonl"
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(rec(0, 1, 0)) + "\n" + '{"broken\n')
    for name in ("train_eps0.4.jsonl", "train_eps0.jsonl"):
        assert cli_main(["data", "noise", str(src), "-o", str(tmp_path / name), "--eps", "0", "--on-invalid",
                         "skip"]) == 0
    for stem in ("train_eps0.4", "train_eps0"):
        rejects = (tmp_path / f"{stem}.rejects.jsonl").read_text().splitlines()
        assert [json.loads(r)["line"] for r in rejects] == [2]


def test_partial_flipped_column_is_counted(tmp_path, caplog):
    from alignkit.trainers.data import load_split

    rows = [dict(rec(i, 0, 1), flipped=True) for i in range(3)] + [rec(i, 0, 1) for i in range(3, 5)]
    src = tmp_path / "pairs.jsonl"
    write_records(src, rows)
    with caplog.at_level("WARNING"):
        ds, info = load_split(str(src), "train", require_flags=True, on_invalid="error", max_samples=None,
                              rejects_to=None)
    assert "flipped" not in ds.column_names
    assert info["n_flipped_values_dropped"] == 3 and "'flipped' is set on 3 of 5 rows" in caplog.text
    write_records(src, [dict(r, flipped=False) for r in rows])  # set on every row: kept, nothing dropped
    ds, info = load_split(str(src), "train", require_flags=True, on_invalid="error", max_samples=None,
                          rejects_to=None)
    assert "flipped" in ds.column_names and info["n_flipped_values_dropped"] == 0

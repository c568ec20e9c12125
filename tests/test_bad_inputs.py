"""The bad-input corpus (tests/data/bad/): each case gets the exact error (file, line, field) or a counted skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.cli import main as cli_main
from alignkit.data import DataError, read_jsonl, read_records, rejects_path

BAD = Path(__file__).parent / "data" / "bad"

# file -> (line, field, message fragment) of the first error
CASES = {
    "truncated.jsonl": (2, None, "invalid JSON"),
    "invalid_utf8.jsonl": (2, None, "invalid UTF-8"),
    "wrong_type.jsonl": (3, "h_w", "must be 0 or 1 (integer), got '0'"),
    "missing_key.jsonl": (1, "rejected", "missing"),
    "empty_string.jsonl": (2, "chosen", "empty text"),
    "chosen_equals_rejected.jsonl": (1, "rejected", "chosen == rejected"),
    "flag_out_of_range.jsonl": (2, "h_l", "must be 0 or 1, got 2"),
    "mixed_formats.jsonl": (1, "rejected", "mix chat messages and plain strings"),
    "duplicate_ids.jsonl": (3, "id", "duplicate id 'r1' (first seen on line 1)"),
    "not_an_object.jsonl": (2, None, "must be a JSON object"),
    "bad_message.jsonl": (1, "prompt", "unknown role 'wizard'"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file_raises_located_error(name, reliability_log):
    line, field, fragment = CASES[name]
    path = BAD / name
    with pytest.raises(DataError) as exc:
        read_jsonl(path)
    err = exc.value
    assert (err.file, err.line, err.field) == (str(path), line, field)
    assert fragment in str(err)
    assert str(err).startswith(f"{path}:{line}: ")
    # error mode stops the run: no rows move, so the case has no row accounting (its skip-mode twin has)
    reliability_log.record("bad input", name, f"error at line {line}" + (f", field {field}" if field else ""))


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file_skip_mode_counts_every_row(name, reliability_log):
    path = BAD / name
    n_nonblank = sum(1 for raw in path.read_bytes().splitlines() if raw.strip())
    res = read_jsonl(path, on_invalid="skip")
    assert res.n_rejected >= 1
    # nothing dropped silently: every non-blank line is either a record or a counted reject
    assert len(res.records) + res.n_rejected == n_nonblank
    assert res.rejects[0]["line"] == CASES[name][0] and res.rejects[0]["field"] == CASES[name][1]
    reliability_log.record("bad input (skip mode)", name, f"{res.n_rejected} rejected, {len(res.records)} kept",
                           rows_in=n_nonblank, rows_out=len(res.records), rejected=res.n_rejected)


def test_mixed_file_skip_writes_rejects_beside_output(tmp_path, capsys, reliability_log):
    out = tmp_path / "flipped.jsonl"
    src = BAD / "mixed_valid_invalid.jsonl"
    rc = cli_main(["data", "flip", str(src), "-o", str(out), "--on-invalid", "skip"])
    assert rc == 0
    assert len(out.read_text().splitlines()) == 3
    rejects = [json.loads(line) for line in rejects_path(out).read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(2, None), (4, "h_w")]
    card = json.loads((tmp_path / "flipped.card.json").read_text())
    assert card["rejected"]["n"] == 2 and card["stats"]["n"] == 3
    reliability_log.record("bad input (skip mode)", "mixed valid/invalid via CLI", "2 rejects written beside output",
                           rows_in=sum(1 for raw in src.read_bytes().splitlines() if raw.strip()),
                           rows_out=len(out.read_text().splitlines()), rejected=len(rejects))


def test_cli_error_mode_names_file_line_field(capsys):
    rc = cli_main(["data", "validate", str(BAD / "flag_out_of_range.jsonl")])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"{BAD / 'flag_out_of_range.jsonl'}:2: field 'h_l': must be 0 or 1, got 2" in err


def test_ten_megabyte_row(tmp_path, reliability_log):
    path = tmp_path / "huge.jsonl"
    row = {"id": "big", "prompt": "Q?", "chosen": "x" * (10 * 1024 * 1024), "rejected": "y", "h_w": 0, "h_l": 1}
    path.write_text(json.dumps({"id": "ok", "prompt": "Q?", "chosen": "a", "rejected": "b", "h_w": 0, "h_l": 1})
                    + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"huge.jsonl:2: row is \d+ bytes, over the 8388608-byte limit"):
        read_jsonl(path)
    res = read_jsonl(path, on_invalid="skip")
    assert len(res.records) == 1 and res.n_rejected == 1
    reliability_log.record("bad input", "10 MB row", "error at line 2 (row size limit); skip mode counts it",
                           rows_in=sum(1 for raw in path.read_bytes().splitlines() if raw.strip()),
                           rows_out=len(res.records), rejected=res.n_rejected)


def test_missing_input_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl: no such file"):
        read_records(tmp_path / "nope.jsonl")


# recipe -> (line, field, message fragment)
RECIPE_CASES = {
    "unknown_key.yaml": (5, "lerning_rate", "unknown recipe field (did you mean 'learning_rate'?)"),
    "wrong_type.yaml": (6, "learning_rate", "expected float, got str '1e-4'"),
    "bool_for_int.yaml": (4, "max_steps", "expected int, got bool True"),
    "missing_model.yaml": (1, "model_name_or_path", "local model path /nonexistent/models/llama-7b does not exist"),
    "missing_data.yaml": (2, "dataset_path", "outputs/never-built/train.jsonl does not exist"),
}


@pytest.mark.parametrize("name", sorted(RECIPE_CASES))
def test_bad_recipe_fails_before_launch(name, capsys, reliability_log):
    line, field, fragment = RECIPE_CASES[name]
    path = BAD / "recipes" / name
    # `alignkit train` refuses it before building the accelerate command (exit 2, nothing launched)
    assert cli_main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}: field {field}: {fragment}" in err
    assert "accelerate" not in err
    reliability_log.record("bad input", f"recipe {name}", f"refused at line {line}, field {field}")


def test_recipe_overrides_are_checked_without_a_line(capsys):
    path = BAD / "recipes" / "missing_data.yaml"
    assert cli_main(["train", str(path), "--set", "dataset_path=also/missing.jsonl"]) == 2
    assert f"{path}: field dataset_path: also/missing.jsonl does not exist" in capsys.readouterr().err
    assert cli_main(["train", str(path), "--set", "max_steps=two"]) == 2
    assert f"{path}: field max_steps: expected int, got str 'two'" in capsys.readouterr().err


def test_recipe_dict_is_type_checked_too(tmp_path):
    from alignkit.train import parse_dict

    with pytest.raises(ValueError, match="field beta: expected float, got str 'high'"):
        parse_dict({"dataset_path": "x.jsonl", "output_dir": str(tmp_path), "beta": "high"})


# --- issue 11: empty files, deep nesting, BOM, builder config types ---------------------------------------------------

GOOD = {"id": "a", "prompt": "Q?", "chosen": "Yes.", "rejected": "No.", "h_w": 0, "h_l": 1}


@pytest.mark.parametrize("content", ["", "\n\n  \n"], ids=["zero-bytes", "blank-lines"])
def test_validate_empty_file_says_no_rows(tmp_path, capsys, content, reliability_log):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    assert cli_main(["data", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: no rows" in err and "--allow-empty" in err
    assert cli_main(["data", "validate", str(path), "--allow-empty"]) == 0
    reliability_log.record("bad input", f"empty file ({'zero bytes' if not content else 'blank lines only'})",
                           "validate: 'no rows', exit 1 (0 with --allow-empty)")


def test_deeply_nested_row_is_a_located_error(tmp_path, capsys, reliability_log):
    path = tmp_path / "deep.jsonl"
    deep = '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text(json.dumps(GOOD) + "\n" + deep + "\n")
    with pytest.raises(DataError) as exc:
        read_jsonl(path)
    assert (exc.value.line, str(exc.value)) == (2, f"{path}:2: invalid JSON: nested too deeply")
    res = read_jsonl(path, on_invalid="skip")
    assert [r["line"] for r in res.rejects] == [2] and len(res.records) == 1
    assert cli_main(["data", "validate", str(path)]) == 1
    assert f"{path}:2: invalid JSON: nested too deeply" in capsys.readouterr().err
    reliability_log.record("bad input", "row nested 100000 deep", "error at line 2 (no RecursionError)",
                           rows_in=sum(1 for raw in path.read_bytes().splitlines() if raw.strip()),
                           rows_out=len(res.records), rejected=res.n_rejected)


def test_utf8_bom_at_start_is_accepted(tmp_path, reliability_log):
    path = tmp_path / "bom.jsonl"
    second = dict(GOOD, id="b")
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(GOOD) + "\n" + json.dumps(second) + "\n").encode())
    res = read_jsonl(path)
    n_in = len(path.read_bytes().splitlines())
    assert [r["id"] for r in res.records] == ["a", "b"] and res.lines == [1, 2]
    # only the file's first bytes are a BOM; one inside the file is still a bad row
    path.write_bytes((json.dumps(GOOD) + "\n").encode() + b"\xef\xbb\xbf" + json.dumps(second).encode() + b"\n")
    with pytest.raises(DataError, match=r"bom.jsonl:2: invalid JSON"):
        read_jsonl(path)
    reliability_log.record("bad input", "UTF-8 BOM at the start of a file", "accepted; both rows read",
                           rows_in=n_in, rows_out=len(res.records), rejected=res.n_rejected)


@pytest.mark.parametrize("key,value,expected", [
    ("rho", '"0.3"', "field rho: expected float, got str '0.3'"),
    ("n_train", "true", "field n_train: expected int, got bool True"),
    ("n_test", "1.5", "field n_test: expected int, got float 1.5"),
    ("fmt", "3", "field fmt: expected str, got int 3"),
])
def test_builder_config_types_are_checked(tmp_path, capsys, key, value, expected, reliability_log):
    cfg = tmp_path / "factworld.yaml"
    cfg.write_text(f"output_dir: {tmp_path / 'out'}\nn_train: 20\nn_test: 5\n{key}: {value}\n")
    assert cli_main(["build", "factworld", "--config", str(cfg), "--quiet"]) == 2  # a config error
    err = capsys.readouterr().err
    assert f"{cfg}: " in err and expected in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was built
    reliability_log.record("bad input", f"builder config {key}: {value}", f"refused: {expected}")


def test_every_shipped_builder_config_passes_the_type_check():
    import importlib
    import typing

    import yaml

    from alignkit.builders import BUILDER_TARGETS as BUILDERS
    from alignkit.builders.common import _fits

    checked = 0
    for path in sorted((Path(__file__).resolve().parents[1] / "data_builders").glob("*.yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        name = path.stem.replace("_", "-")
        target = BUILDERS.get(name) or BUILDERS.get(f"{name}-pairs")
        cls = getattr(importlib.import_module(target.split(":")[0]), "CONFIG_CLASS", None) if target else None
        if cls is None:
            continue
        hints = typing.get_type_hints(cls)
        bad = {k: v for k, v in config.items() if k in hints and not _fits(v, hints[k])}
        assert not bad, (path.name, bad)
        checked += 1
    assert checked >= 4


def test_iter_jsonl_names_file_and_line_or_yields_the_error(tmp_path):
    """The one JSONL reader: blank lines skipped, a BOM is not part of the first row, bad JSON is a DataError at
    file:line (raised, or yielded in the row's place when the caller counts skips)."""
    from alignkit.data.io import iter_jsonl

    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n{"a": \n[2]\n')
    with pytest.raises(DataError, match=r"rows.jsonl:3: invalid JSON: Expecting value"):
        list(iter_jsonl(path))
    rows = list(iter_jsonl(path, on_invalid="yield", source="named"))
    assert [(n, v) for n, v in rows if not isinstance(v, DataError)] == [(1, {"a": 1}), (4, [2])]
    assert [(v.file, v.line) for _, v in rows if isinstance(v, DataError)] == [("named", 3)]

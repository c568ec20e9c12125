"""Hub-shaped preference rows onto alignkit's record (alignkit.data.hub): implicit prompts as TRL extracts them,
column mappings, boolean flags, rows without flags, streaming with per-row validation, and the recipe keys of TRL's
ScriptArguments and the alignment-handbook's dataset_mixture. No network: local files stand in for hub ids."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from alignkit.data.hub import HubSource, RowStream, normalise_row, parse_mixture, read_source
from alignkit.data.schema import DataError

USER = "Which planet is closest to the sun?"


def ultrafeedback_trl_lib(n: int = 4) -> list[dict]:
    """Rows shaped like trl-lib/ultrafeedback_binarized: implicit prompt (the user turn opens chosen and rejected)."""
    rows = []
    for i in range(n):
        q = f"{USER} ({i})"
        rows.append({"chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": f"Mercury {i}."}],
                     "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": f"Venus {i}."}],
                     "score_chosen": 8.0, "score_rejected": 3.5})
    return rows


def ultrafeedback_h4(n: int = 4) -> list[dict]:
    """HuggingFaceH4/ultrafeedback_binarized: a string prompt *and* message lists that repeat the user turn."""
    rows = []
    for i, row in enumerate(ultrafeedback_trl_lib(n)):
        q = row["chosen"][0]["content"]
        rows.append({"prompt": q, "prompt_id": f"p{i}", **row, "messages": row["chosen"]})
    return rows


def test_trl_lib_ultrafeedback_rows_get_trls_prompt(tmp_path):
    from trl.data_utils import maybe_extract_prompt

    path = tmp_path / "uf.parquet"
    Dataset.from_list(ultrafeedback_trl_lib()).to_parquet(str(path))
    res, filled = read_source(HubSource(str(path)), require_flags=False)
    assert filled == 0 and res.n_rejected == 0 and len(res.records) == 4 and res.lines == [1, 2, 3, 4]
    first = res.records[0]
    assert first["prompt"] == [{"role": "user", "content": f"{USER} (0)"}]
    assert first["chosen"] == [{"role": "assistant", "content": "Mercury 0."}]
    assert first["rejected"] == [{"role": "assistant", "content": "Venus 0."}]
    assert first["score_chosen"] == 8.0  # extra columns are carried through
    raw = ultrafeedback_trl_lib()[0]
    assert {k: first[k] for k in ("prompt", "chosen", "rejected")} == maybe_extract_prompt(raw)  # TRL's own split


def test_h4_ultrafeedback_rows_with_string_prompt_and_splits(tmp_path):
    folder = tmp_path / "uf_h4"
    DatasetDict({"train_prefs": Dataset.from_list(ultrafeedback_h4(4)),
                 "test_prefs": Dataset.from_list(ultrafeedback_h4(2))}).save_to_disk(str(folder))
    res, _ = read_source(HubSource(str(folder), split="test_prefs"), require_flags=False)
    assert len(res.records) == 2 and res.source == f"{folder}[test_prefs]"
    # the string prompt is replaced by the user turn that chosen/rejected repeat, so it is not sent twice
    assert res.records[1]["prompt"] == [{"role": "user", "content": f"{USER} (1)"}]
    assert res.records[1]["chosen"] == [{"role": "assistant", "content": "Mercury 1."}]
    with pytest.raises(ValueError, match=r"no split 'validation' \(splits: train_prefs, test_prefs\)"):
        read_source(HubSource(str(folder), split="validation"), require_flags=False)


def test_column_mapping_and_boolean_flags(tmp_path):
    path = tmp_path / "arena.jsonl"
    rows = [{"question": "2+2?", "response_a": "4", "response_b": "5", "a_bad": False, "b_bad": True},
            {"question": "3+3?", "response_a": "7", "response_b": "6", "a_bad": 1, "b_bad": 0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = {"prompt": "question", "chosen": "response_a", "rejected": "response_b", "h_w": "a_bad", "h_l": "b_bad"}
    res, _ = read_source(HubSource(str(path), columns=columns))
    assert [(r["prompt"], r["chosen"], r["h_w"], r["h_l"]) for r in res.records] == [("2+2?", "4", 0, 1),
                                                                                    ("3+3?", "7", 1, 0)]
    assert all(type(r["h_w"]) is int and "response_a" not in r for r in res.records)
    with pytest.raises(ValueError, match=r"no column\(s\) \['answer_a'\]"):
        read_source(HubSource(str(path), columns={"chosen": "answer_a"}))
    with pytest.raises(ValueError, match="'answer' is not an alignkit field"):
        HubSource(str(path), columns={"answer": "response_a"})


def test_rows_without_flags_error_for_fdpo_unless_filled(tmp_path):
    path = tmp_path / "uf.parquet"
    Dataset.from_list(ultrafeedback_trl_lib(3)).to_parquet(str(path))
    with pytest.raises(DataError,
                       match=r"uf.parquet\[train\]:1: field 'h_w': missing \(plain DPO data .*missing_flags"):
        read_source(HubSource(str(path)), require_flags=True)
    res, filled = read_source(HubSource(str(path)), require_flags=True, missing_flags="zero")
    assert filled == 3 and [(r["h_w"], r["h_l"]) for r in res.records] == [(0, 0)] * 3
    # a row that has its flags keeps them; only flagless rows are filled
    rows = ultrafeedback_trl_lib(2)
    rows[0].update(h_w=True, h_l=False)
    Dataset.from_list(rows).to_parquet(str(path))
    res, filled = read_source(HubSource(str(path)), missing_flags="zero")
    assert filled == 1 and [(r["h_w"], r["h_l"]) for r in res.records] == [(1, 0), (0, 0)]


def test_bad_rows_are_named_or_skipped(tmp_path):
    rows = ultrafeedback_trl_lib(4)
    rows[2]["rejected"] = rows[2]["chosen"]  # chosen == rejected
    rows[3]["chosen"] = [{"role": "assistant", "content": "no shared user turn"}]
    path = tmp_path / "uf.parquet"
    Dataset.from_list(rows).to_parquet(str(path))
    with pytest.raises(DataError, match=r"uf.parquet\[train\]:3: field 'rejected'"):
        read_source(HubSource(str(path)), require_flags=False)
    res, _ = read_source(HubSource(str(path)), require_flags=False, on_invalid="skip")
    assert len(res.records) == 2 and [(r["line"], r["field"]) for r in res.rejects] == [(3, "rejected"), (4, "prompt")]
    assert "share no leading text" in res.rejects[1]["reason"]
    rows = ultrafeedback_trl_lib(3)
    for i, r in enumerate(rows):
        r["id"] = "dup" if i else "first"
    Dataset.from_list(rows).to_parquet(str(path))
    with pytest.raises(DataError,
                       match=r"uf.parquet\[train\]:3: field 'id': duplicate id 'dup' \(first seen on row 2\)"):
        read_source(HubSource(str(path)), require_flags=False)


def test_streaming_validates_each_row_as_it_arrives(tmp_path):
    rows = ultrafeedback_trl_lib(6)
    rows[4]["h_w"] = 2  # row 5: a flag that is neither 0/1 nor a bool
    for r in rows[:4] + rows[5:]:
        r.update(h_w=0, h_l=1)
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stream = RowStream(HubSource(str(path), streaming=True))
    seen = []
    with pytest.raises(DataError, match=r"big.jsonl\[train\]:5: field 'h_w': must be 0 or 1, got 2"):
        for row, _ in stream:
            seen.append(row)
    assert seen == [1, 2, 3, 4] and stream.n_rows == 5  # the good rows came out before the bad one was read
    skipping = RowStream(HubSource(str(path), streaming=True), on_invalid="skip")
    assert [row for row, _ in skipping] == [1, 2, 3, 4, 6] and skipping.rejects[0]["line"] == 5


def test_packaged_hh_rlhf_sample_splits_like_trl():
    from trl.data_utils import maybe_extract_prompt

    from alignkit.resources import data_path

    path = data_path("preference/hh-rlhf/harmless-base/test.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        raw = [json.loads(line) for line in fh if line.strip()]
    res, _ = read_source(HubSource(str(path)), require_flags=False, on_invalid="skip")
    assert len(raw) == 2312 and len(res.records) + res.n_rejected == len(raw)
    assert len(res.records) >= 2300  # HH-RLHF's few malformed pairs may be rejected, each with its row and reason
    for line, record in zip(res.lines, res.records):
        original = raw[line - 1]  # prompt + completion gives back each transcript
        assert record["prompt"] + record["chosen"] == original["chosen"]
        assert record["prompt"] + record["rejected"] == original["rejected"]
        assert {k: record[k] for k in ("prompt", "chosen", "rejected")} == maybe_extract_prompt(original)
    # TRL's split is the longest shared prefix, so it ends at the last "Assistant:" unless both answers open alike
    assert sum(r["prompt"].endswith("\n\nAssistant:") for r in res.records) >= 0.75 * len(res.records)
    assert all(r["line"] >= 1 and r["field"] and r["reason"] for r in res.rejects)


def test_mixture_spec_errors_name_the_entry():
    ok = parse_mixture({"datasets": [{"id": "a", "split": "train_prefs", "columns": ["chosen", "rejected"],
                                      "weight": 0.5}], "seed": 3, "test_split_size": 0.1})
    assert ok.entries[0].source.keep == ("chosen", "rejected") and ok.entries[0].weight == 0.5 and ok.seed == 3
    mapped = parse_mixture({"datasets": [{"id": "a", "columns": {"chosen": "response_a"}}]})
    assert mapped.entries[0].source.columns == {"chosen": "response_a"} and mapped.entries[0].source.keep is None
    for spec, match in [
        ({"datasets": [{"id": "a", "fraction": 0.5}]}, r"datasets\[0\]: unknown key\(s\) \['fraction'\]"),
        ({"datasets": [{"id": "a"}, {"id": "b", "weight": 1.5}]}, r"datasets\[1\]: weight .* \(0, 1\]"),
        ({"datasets": [{"split": "train"}]}, r"datasets\[0\]: `id`"),
        ({"datasets": []}, "non-empty list"),
        ({"datasets": [{"id": "a"}], "test_split_size": 1.5}, "test_split_size"),
        ({"datasets": [{"id": "a"}], "shuffle": True}, r"unknown key\(s\) \['shuffle'\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_mixture(spec)
    with pytest.raises(ValueError, match="cannot be used with streaming"):
        parse_mixture({"datasets": [{"id": "a", "weight": 0.5}]}, streaming=True)


def test_recipe_check_knows_the_trl_and_handbook_keys(tmp_path):
    from alignkit.train import load_recipe, parse_dict

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\noutput_dir: out\nloss_type: fdpo\ndataset_name: trl-lib/x\n"
                      "dataset_config: default\ndataset_train_split: train_prefs\ndataset_test_split: test_prefs\n"
                      "dataset_streaming: true\ndataset_revision: main\ndataset_columns: {chosen: response_a}\n"
                      "missing_flags: zero\nuse_cpu: true\n")
    script_args, _, _ = parse_dict(load_recipe(recipe, check=True))
    assert script_args.uses_hub_data and script_args.dataset_columns == {"chosen": "response_a"}
    assert script_args.dataset_train_split == "train_prefs" and script_args.dataset_streaming is True
    recipe.write_text("output_dir: out\ndataset_mixture:\n  datasets:\n    - id: a\n      fraction: 0.5\n")
    with pytest.raises(ValueError, match=r"r.yaml:2: field dataset_mixture: datasets\[0\]: unknown key"):
        load_recipe(recipe, check=True)
    recipe.write_text("output_dir: out\ndataset_path: x.jsonl\ndataset_name: trl-lib/x\n")
    with pytest.raises(ValueError, match=r"r.yaml:3: field dataset_name: set dataset_path .* not both"):
        load_recipe(recipe, check=True)
    recipe.write_text("output_dir: out\ndataset_name: trl-lib/x\nmissing_flags: maybe\n")
    with pytest.raises(ValueError, match=r"r.yaml:3: field missing_flags: must be one of"):
        load_recipe(recipe, check=True)
    recipe.write_text("output_dir: out\ndataset_name: trl-lib/x\ntorch_dtype: bfloat16\n")
    with pytest.raises(ValueError, match=r"r.yaml:3: field torch_dtype: unknown recipe field \(TRL's ModelConfig "
                                         r"calls it 'dtype' now\)"):
        load_recipe(recipe, check=True)
    with pytest.raises(ValueError, match="dataset_path"):  # no data source at all
        parse_dict({"output_dir": str(tmp_path)})


def test_normalise_row_leaves_alignkit_records_alone():
    record = {"prompt": "p", "chosen": "a", "rejected": "b", "h_w": 0, "h_l": 1, "id": "x"}
    assert normalise_row(record) == record
    # a string prompt beside completions that do not repeat it: nothing to extract, kept as given
    answers = {"chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}
    assert normalise_row({"prompt": "p", **answers}) == {"prompt": "p", **answers}
    assert normalise_row({**record, "h_w": None}) == {k: v for k, v in record.items() if k != "h_w"}


def test_hub_source_labels_and_single_file_splits(tmp_path):
    assert HubSource("trl-lib/ultrafeedback_binarized", name="default", split="test").label == \
        "trl-lib/ultrafeedback_binarized:default[test]"
    path = tmp_path / "x.parquet"
    Dataset.from_list(ultrafeedback_trl_lib(1)).to_parquet(str(path))
    with pytest.raises(ValueError, match="a single data file has one split"):
        read_source(HubSource(str(path), split="test"), require_flags=False)
    # several files named by split: the `datasets` way (a builder name plus data_files)
    res, _ = read_source(HubSource("parquet", data_files={"train": str(path), "test": str(path)}, split="test"),
                         require_flags=False)
    assert len(res.records) == 1 and res.source == "parquet[test]"
    assert Path(path).is_file()

"""Pushing alignkit's outputs to the Hugging Face hub: a built dataset (``alignkit build ... --push-to-hub REPO``)
with a dataset card generated from its alignkit cards, and any output folder (a training run, see
:mod:`alignkit.trainers.hub_push`).

The uploads are huggingface_hub's own (``HfApi.create_repo`` + ``HfApi.upload_folder`` / ``HfApi.create_commit``);
this module decides *what* is uploaded and turns every hub failure (no token, no network, a bad repo id) into one
:class:`HubPushError` that names the repo, the local folder and how to retry, instead of a traceback.

A dataset push uploads an explicit list of files — each data file with its sidecars (``.card.json``,
``.rejects.jsonl``, ``.review.jsonl``) and a generated ``README.md`` — in one commit. The list is explicit because
a builder's ``output`` may sit in a folder that holds unrelated files (the user's working directory).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alignkit import __version__
from alignkit.data.io import DATA_SUFFIXES, sidecar_path

# Files written beside a data file that travel with it (the judge cache is a private working file: not pushed).
SIDECARS = ("card.json", "rejects.jsonl", "review.jsonl")
SPLIT_NAMES = ("train", "test", "validation", "eval", "dev")
# The hub's size buckets (the `size_categories` values the dataset viewer knows).
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"))
# builder (before any ".variant") -> the hub task category of what it writes; preference pairs are text generation
TASK_CATEGORIES = {"icl": "text-classification", "consistency": "text-classification"}


class HubPushError(OSError):
    """A push to the hub failed (token, network, repo id); the local files are complete and can be pushed later."""


def hub_error(exc: BaseException, *, repo_id: str, folder: str | os.PathLike, repo_type: str) -> HubPushError:
    """``exc`` (raised by huggingface_hub) as one clear line: what failed, the likely cause, how to retry."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403) or "token" in reason.lower():
        cause = ("no token with write access to this repo: log in with `hf auth login`, set HF_TOKEN, or give "
                 "hub_token (alignkit build: --hub-token)")
    elif status is None:
        cause = "the hub could not be reached (network, proxy or HF_HUB_OFFLINE)"
    else:
        cause = f"the hub answered HTTP {status}"
    flag = "" if repo_type == "model" else f" --repo-type {repo_type}"
    return HubPushError(f"push to the hub failed for {repo_type} repo {repo_id!r}: {cause} ({type(exc).__name__}: "
                        f"{reason[:300]}). The files in {folder} are complete; push them later with "
                        f"`hf upload {repo_id} {folder}{flag}`")


def create_repo(api: Any, repo_id: str, *, repo_type: str, token: str | None, private: bool | None,
                folder: str | os.PathLike) -> str:
    """Create (or reuse) the repo; returns its full id (``user/name`` when ``repo_id`` had no namespace)."""
    try:
        return api.create_repo(repo_id, token=token, private=private, repo_type=repo_type, exist_ok=True).repo_id
    except Exception as exc:  # any hub or network failure becomes one line (HubPushError)
        raise hub_error(exc, repo_id=repo_id, folder=folder, repo_type=repo_type) from exc


def push_folder(folder: str | os.PathLike, repo_id: str, *, commit_message: str, repo_type: str = "model",
                token: str | None = None, private: bool | None = None, revision: str | None = None,
                ignore_patterns: list[str] | None = None, api: Any = None, create: bool = True) -> str:
    """Upload everything in ``folder`` (minus ``ignore_patterns``) with ``upload_folder``, after creating the repo
    unless ``create`` is false (the caller did); returns the repo id. Raises :class:`HubPushError` on any hub
    failure."""
    from huggingface_hub import HfApi

    api = api or HfApi()
    repo = create_repo(api, repo_id, repo_type=repo_type, token=token, private=private, folder=folder) \
        if create else repo_id
    try:
        api.upload_folder(repo_id=repo, folder_path=str(folder), repo_type=repo_type, token=token, revision=revision,
                          commit_message=commit_message, ignore_patterns=list(ignore_patterns or []))
    except Exception as exc:
        raise hub_error(exc, repo_id=repo, folder=folder, repo_type=repo_type) from exc
    return repo


# ---- datasets -------------------------------------------------------------------------------------------------


@dataclass
class DataFile:
    """One data file of a build and what the card says about it."""

    path: Path
    card: dict[str, Any]
    split: str = "train"
    config_name: str = "default"
    n_rows: int = 0
    columns: list[str] = field(default_factory=list)

    def sidecars(self) -> list[Path]:
        return [p for p in (sidecar_path(self.path, kind) for kind in SIDECARS) if p.is_file()]


def _is_data_file(path: Path) -> bool:
    return any(path.name.endswith(s) for s in DATA_SUFFIXES) and not path.name.endswith(
        tuple(f".{kind}" for kind in SIDECARS))


def _rows_and_columns(path: Path) -> tuple[int, list[str]]:
    """Row count and the first row's columns (the file itself is the truth, not a count in the card)."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path)
        return meta.metadata.num_rows, list(meta.schema_arrow.names)
    import gzip

    n, columns = 0, []
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                if n == 0:
                    columns = list(json.loads(line))
                n += 1
    return n, columns


def build_files(location: str | os.PathLike) -> list[DataFile]:
    """The data files a build wrote at ``location`` (its ``output`` file, or its ``output_dir`` folder), each with
    its alignkit card. A data file without a card was not written by a builder and is an error, as is a location
    with no data file."""
    loc = Path(location)
    if loc.is_dir():
        cards = sorted(loc.glob("*.card.json"))
        paths = [loc / json.loads(c.read_text(encoding="utf-8")).get("output", "") for c in cards]
        paths = [p for p in paths if p.is_file() and _is_data_file(p)]
    elif loc.is_file():
        paths = [loc]
    else:
        raise FileNotFoundError(f"{loc}: the build output does not exist")
    if not paths:
        raise FileNotFoundError(f"{loc}: no data file with an alignkit card (<name>.card.json) to push")
    files = []
    for p in paths:
        card_file = sidecar_path(p, "card.json")
        if not card_file.is_file():
            raise FileNotFoundError(f"{p}: no dataset card {card_file.name} beside it; only builder outputs are pushed")
        card = json.loads(card_file.read_text(encoding="utf-8"))
        n, columns = _rows_and_columns(p)
        files.append(DataFile(p, card, n_rows=n, columns=columns))
    _name_splits(files)
    return files


def _split_name(f: DataFile, single: bool) -> str:
    """The card's ``split``, else a split-like file stem (``train``, ``test``, ...), else ``train`` for a lone file
    and the stem (made a valid split name) otherwise."""
    stem = sidecar_path(f.path, "x").name[:-2]
    name = f.card.get("split") or (stem if stem in SPLIT_NAMES else ("train" if single else stem))
    return re.sub(r"\W+", "_", str(name)).strip("_") or "train"


def _name_splits(files: list[DataFile]) -> None:
    """Splits and configs: files with the same columns share a config (the train split's is ``default``); files whose
    rows look different (factworld's eval items beside its pairs) get a config of their own, named after the split,
    so that ``load_dataset`` never has to align unrelated features."""
    for f in files:
        f.split = _split_name(f, len(files) == 1)
    files.sort(key=lambda f: (f.split != "train", f.path.name))  # the train split's config is the default one
    groups: dict[tuple[str, ...], str] = {}
    for f in files:
        key = tuple(sorted(f.columns))
        if key not in groups:
            groups[key] = "default" if not groups else f.split
        f.config_name = groups[key]
    seen: set[tuple[str, str]] = set()
    for f in files:
        if (f.config_name, f.split) in seen:
            raise ValueError(f"{f.path}: two data files map to split {f.split!r} of config {f.config_name!r}")
        seen.add((f.config_name, f.split))


def size_category(n: int) -> str:
    return next((label for limit, label in SIZE_CATEGORIES if n < limit), "n>100M")


def _builder(files: list[DataFile]) -> str:
    return str(files[0].card.get("builder", "unknown"))


def dataset_card(files: list[DataFile], repo_id: str, *, builder: str | None = None, license: str | None = None,
                 command: str | None = None):
    """The ``huggingface_hub.DatasetCard`` (README.md) for ``files``: metadata the hub reads (license when known,
    task category, tags, size, one ``configs`` entry per config listing its data files by split) and a body built
    from the alignkit cards: builder and config, rows, rejects and drops, flip/noise counts, sources, how to load."""
    from huggingface_hub import DatasetCard, DatasetCardData

    builder = builder or _builder(files)
    preference = any("stats" in f.card and f.card["stats"].get("buckets") for f in files)
    configs: dict[str, list[dict[str, str]]] = {}
    for f in files:
        configs.setdefault(f.config_name, []).append({"split": f.split, "path": f.path.name})
    tags = ["alignkit", f"alignkit-{builder.split('.')[0]}"] + (["dpo", "preference"] if preference else [])
    license = license or next((f.card.get("license") for f in files if f.card.get("license")), None)
    data = DatasetCardData(
        license=license, task_categories=[TASK_CATEGORIES.get(builder.split(".")[0], "text-generation")],
        tags=tags, size_categories=[size_category(sum(f.n_rows for f in files))],
        pretty_name=f"{repo_id.split('/')[-1]} (alignkit {builder})",
        configs=[{"config_name": name, "data_files": entries} for name, entries in configs.items()])
    body = _card_body(files, repo_id, builder, license, command)
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _card_body(files: list[DataFile], repo_id: str, builder: str, license: str | None, command: str | None) -> str:
    first = files[0].card
    lines = [f"# {repo_id.split('/')[-1]}", "",
             f"Built with alignkit {first.get('alignkit_version', __version__)} "
             f"by the `{builder}` builder" + (f" (`{command}`)." if command else "."),
             "Every file below has its alignkit card (`<name>.card.json`) beside it: the full configuration, its "
             "hash and the counts this page is generated from.", ""]
    if not license:
        lines += ["License: not set by the builder (`--hub-license` sets it); check the licenses of the sources "
                  "listed below.", ""]
    lines += ["## Files", "", "| file | config | split | rows | rejected | dropped |", "|---|---|---|---|---|---|"]
    for f in files:
        rej, drop = f.card.get("rejected", {}).get("n", 0), f.card.get("dropped", {}).get("n", 0)
        lines.append(f"| `{f.path.name}` | {f.config_name} | {f.split} | {f.n_rows} | {rej} | {drop} |")
    lines.append("")
    rejected = [f for f in files if f.card.get("rejected", {}).get("n")]
    for f in rejected:
        reasons = f.card["rejected"].get("reasons", {})
        lines.append(f"Rows rejected for `{f.path.name}` (written to `{sidecar_path(f.path, 'rejects.jsonl').name}` "
                     "when present): " + ", ".join(f"{k}: {v}" for k, v in reasons.items()))
    for f in files:
        dropped = f.card.get("dropped", {}).get("reasons", {})
        if dropped:
            lines.append(f"Rows left out on purpose for `{f.path.name}`: "
                         + ", ".join(f"{k}: {v}" for k, v in dropped.items()))
    if rejected or any(f.card.get("dropped", {}).get("reasons") for f in files):
        lines.append("")
    stats = [f for f in files if f.card.get("stats", {}).get("buckets")]
    if stats:
        lines += ["## Labels, flips and noise", "",
                  "`h_w`/`h_l` flag the chosen/rejected response as hallucinated (1) or not (0); `flipped` counts "
                  "pairs swapped by F-DPO's label flip, `noised` pairs swapped by injected order noise.", "",
                  "| file | (0,0) | (0,1) | (1,0) | (1,1) | Δh = 1 | flipped | noised | unlabelled |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for f in stats:
            s, b = f.card["stats"], f.card["stats"]["buckets"]
            lines.append(f"| `{f.path.name}` | {b.get('(0,0)', 0)} | {b.get('(0,1)', 0)} | {b.get('(1,0)', 0)} | "
                         f"{b.get('(1,1)', 0)} | {s.get('delta_h_1', 0)} | {s.get('flipped', 0)} | "
                         f"{s.get('noised', 0)} | {s.get('unlabelled', 0)} |")
        lines.append("")
    sources = _sources(first.get("config", {}))
    lines += ["## Provenance", ""]
    lines += [f"- source: `{s}`" for s in sources] or ["- no input file: the builder generates the data itself"]
    lines += [f"- seed: {first.get('seed')}", f"- config hash: `{first.get('config_hash')}`", ""]
    lines += ["Configuration:", "", "```yaml", yaml.safe_dump(first.get("config", {}), sort_keys=True).rstrip(),
              "```", ""]
    known = {"builder", "alignkit_version", "output", "seed", "config", "config_hash", "stats", "rejected", "dropped",
             "license", "split"}
    extras = {f.path.name: {k: v for k, v in f.card.items() if k not in known} for f in files}
    extras = {k: v for k, v in extras.items() if v}
    if extras:
        lines += ["Other fields of the alignkit cards:", "", "```json", json.dumps(extras, indent=1, sort_keys=True),
                  "```", ""]
    lines += ["## Load", "", "```python", "from datasets import load_dataset", ""]
    for name in dict.fromkeys(f.config_name for f in files):
        var, arg = ("ds", "") if name == "default" else (f"ds_{name}", f", {name!r}")
        lines.append(f"{var} = load_dataset({repo_id!r}{arg})")
    lines += ["```", ""]
    return "\n".join(lines)


def _sources(config: dict[str, Any]) -> list[str]:
    """The inputs a builder config names (``input``, ``inputs``, ``source``, ...), as given."""
    out: list[str] = []
    for key in ("input", "inputs", "source", "sources", "dataset", "items"):
        value = config.get(key)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, dict):  # e.g. fdpo-mix inputs: {path: ..., ...}
                v = v.get("path") or v.get("file") or json.dumps(v, sort_keys=True)
            if v:
                out.append(str(v))
    return out


def push_dataset(location: str | os.PathLike, repo_id: str, *, token: str | None = None,
                 private: bool | None = None, license: str | None = None, builder: str | None = None,
                 command: str | None = None, revision: str | None = None, api: Any = None) -> dict[str, Any]:
    """Push the build output at ``location`` as a dataset repo: each data file with its sidecars, and a README.md
    dataset card (:func:`dataset_card`), in one commit. Returns ``{"repo_id", "files"}`` (paths in the repo)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    files = build_files(location)
    folder = Path(location) if Path(location).is_dir() else Path(location).parent
    api = api or HfApi()
    repo = create_repo(api, repo_id, repo_type="dataset", token=token, private=private, folder=folder)
    card = dataset_card(files, repo, builder=builder, license=license, command=command)
    ops = [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8"))]
    for f in files:
        ops += [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in [f.path, *f.sidecars()]]
    try:
        api.create_commit(repo_id=repo, repo_type="dataset", operations=ops, token=token, revision=revision,
                          commit_message=f"alignkit {__version__}: dataset from `alignkit build "
                                         f"{builder or _builder(files)}`")
    except Exception as exc:  # any hub or network failure becomes one line (HubPushError)
        raise hub_error(exc, repo_id=repo, folder=folder, repo_type="dataset") from exc
    return {"repo_id": repo, "files": [op.path_in_repo for op in ops]}

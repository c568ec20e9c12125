"""The registered ``prompt_consistency`` task on the hf backend with a tiny model: metrics, held-out formats, cache."""

from __future__ import annotations

import pytest

from alignkit.builders.consistency import ConsistencyBuildConfig, build_consistency
from alignkit.data.cache import ItemCache
from alignkit.evals.metrics.consistency import consistency_summary
from alignkit.evals.tasks import get_task
from alignkit.inference.base import ModelSpec


def test_prompt_consistency_on_heldout_formats(shared_data, tiny_model, tmp_path):
    from alignkit.inference.hf import HFBackend

    data = tmp_path / "rte-val.jsonl"
    info = build_consistency(ConsistencyBuildConfig(data=str(shared_data / "consistency" / "rte.jsonl"),
                                                    templates="super_glue/rte", split="validation", n=5, heldout=3,
                                                    output=str(data)))
    backend = HFBackend(tiny_model, batch_size=8)
    cache = ItemCache(tmp_path / "cache.jsonl")
    task = get_task("prompt_consistency", data=str(data), formats="heldout")
    res = task.run(backend, ModelSpec(label="tiny", base=tiny_model), cache)
    assert sorted(res.extra["per_format_f1"]) == sorted(info["heldout_formats"])
    ll = [it["ll"] for it in res.items]
    assert len(ll) == 5 and all(len(x) == 3 and all(len(c) == 2 for c in x) for x in ll)
    expected = consistency_summary(ll, [it["label"] for it in res.items])
    for key in ("agreement", "mean_f1", "sigma_f1", "accuracy"):
        assert res.metrics[key].value == pytest.approx(expected[key])
    # the ll entries are length-normalised log-likelihoods from the backend
    (r,) = backend.loglikelihood([(_first_heldout(data)["prompt"], " " + _first_heldout(data)["choices"][0])])
    assert ll[0][0][0] == pytest.approx(r.logprob / r.n_tokens, abs=1e-5)
    assert len(cache) == 5 * 3 * 2
    again = task.run(backend, ModelSpec(label="tiny", base=tiny_model), ItemCache(tmp_path / "cache.jsonl"))
    assert [it["ll"] for it in again.items] == ll
    with pytest.raises(ValueError, match="field formats: expected one of 'heldout', 'train', 'all', got str 'nope'"):
        get_task("prompt_consistency", data=str(data), formats="nope")


def _first_heldout(path):
    import json

    return json.loads(path.read_text().splitlines()[0])["heldout_formats"][0]

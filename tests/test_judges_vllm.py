"""Judges on real vLLM: the OpenAI-compatible server (``python -m vllm.entrypoints.openai.api_server``) on
127.0.0.1 with the tiny random model, and the in-process ``vllm:MODEL`` judge plus the LLM rewrite sharing one
engine (run in a subprocess: vLLM changes process-wide torch thread settings, which must not leak into pytest).

The server test uses the tiny random model, which does not write ``[[0]]``/``[[1]]``: it checks the plumbing end to
end — every reply arrives, is parsed, and an unparsable one is counted as a parse error, never turned into a label.
The engine test judges held-out fact-world answers with the embedded SmolLM2-135M-Instruct, free and with
constrained decoding (a minimum share of parsed labels is asserted for the latter), and compares every parsed label
with the reference judge's; the agreement is recorded in the reliability table. (Measured: free, the 135M model
writes no parseable label; constrained, it gives one label to every item — chance agreement — so no quality bar is
asserted for it. Few-shot exemplars, a logprob verdict and a yes/no question were measured too, all at chance: see
alignkit/judges/likelihood.py.) The same engine runs the likelihood judge, whose agreement with the reference judge
IS asserted (bar below).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-vllm-test-key-0000-never-log"
pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tiny_model):
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_API_KEY": SECRET}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_model,
           "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
           "--max-model-len", "1024"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready, tail = threading.Event(), deque(maxlen=40)

    def watch():
        for line in proc.stdout:  # type: ignore[union-attr]
            tail.append(line)
            if "Application startup complete" in line:
                ready.set()
        ready.set()  # EOF: the server died; the poll below tells which

    threading.Thread(target=watch, daemon=True).start()
    try:
        ready.wait(300)
        if proc.poll() is not None or not ready.is_set():
            pytest.fail("vLLM server did not start:\n" + "".join(tail))
        yield f"http://127.0.0.1:{port}", tail
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_openai_judge_through_a_real_vllm_server(vllm_server, tmp_path, monkeypatch):
    from alignkit.builders.factuality import main
    from alignkit.judges import JudgeItem, OpenAIJudge, run_judge

    url, tail = vllm_server
    monkeypatch.setenv("ALIGNKIT_VLLM_KEY", SECRET)
    judge = OpenAIJudge(url, api_key_env="ALIGNKIT_VLLM_KEY", max_tokens=8, backoff=0.05, concurrency=4)
    assert judge.resolved_model() == "tiny"  # discovered from /v1/models
    items = [JudgeItem(f"What is {i} + {i}?", f"It is {2 * i + (i % 2)}.") for i in range(6)]
    out, stats = run_judge(judge, items, cache=tmp_path / "c.jsonl", progress=False)
    assert stats["judged"] == 6 and set(stats["status"]) <= {"ok", "parse_error"}
    for j in out:
        assert j.status in ("ok", "parse_error") and j.detail["attempts"] >= 1
        assert (j.label is None) == (j.status == "parse_error")
        assert j.raw != "" or j.status == "parse_error"

    # without the key the server answers 401: an error at once (not retried), never a label
    monkeypatch.delenv("ALIGNKIT_VLLM_KEY")
    denied = OpenAIJudge(url, model="tiny", api_key_env="ALIGNKIT_VLLM_KEY", max_retries=3).judge([items[0]])[0]
    assert (denied.status, denied.label, denied.detail["attempts"]) == ("error", None, 1)
    assert "401" in denied.detail["reason"]

    # the labelling builder through the server: failures are counted in the card; the key appears nowhere
    monkeypatch.setenv("ALIGNKIT_VLLM_KEY", SECRET)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Name a colour ({i}).", "chosen": "Blue.",
                                        "rejected": f"Number {i}."}) + "\n" for i in range(3)))
    outp = tmp_path / "out" / "lab.jsonl"
    summary = main({"input": str(data), "output": str(outp), "judge": f"openai:{url}",
                    "judge_kwargs": {"api_key_env": "ALIGNKIT_VLLM_KEY", "max_tokens": 8}}, progress=False)
    card = json.loads((tmp_path / "out" / "lab.card.json").read_text())
    assert summary["written"] + summary["rejected"] == 3
    assert sum(card["judge"]["status"].values()) == 6 and card["rejected"]["n"] == summary["rejected"]
    for f in (tmp_path / "out").iterdir():
        assert SECRET.encode() not in f.read_bytes(), f
    assert SECRET not in "".join(tail)


N_ITEMS = 24
MIN_PARSED_CONSTRAINED = 0.95  # constrained decoding admits only the label grammar: every reply must parse
# The likelihood judge (mean NLL per response token > 1.0 nats -> hallucinated; the threshold was fixed before any
# measurement) with SmolLM2-135M-Instruct on vllm-cpu agreed with the reference judge on held-out fact-world items
# built like the ones below: seed 1, 46/48 (Wilson 95% [0.86, 0.99]; 23/24 on the 24 items of this test); seed 2,
# 42/48 ([0.75, 0.94]); seed 3, 48/48 ([0.93, 1.00]); pooled 136/144 = 0.94 ([0.89, 0.97]). The bar sits below every
# lower bound; at 24 items it means >= 18 agreeing.
LIKELIHOOD_THRESHOLD = 1.0
MIN_AGREEMENT_LIKELIHOOD = 0.75


def _engine_check(model: str, out_path: str) -> None:
    """Run in a subprocess: one engine (the embedded SmolLM2-135M-Instruct) shared by the binary and rubric judges,
    free and constrained, and by the LLM rewrite; labels are compared with the reference judge's on the same items."""
    from alignkit.builders.factworld import build_factworld, judge_items
    from alignkit.builders.hallucinate import llm_variants
    from alignkit.judges import LikelihoodJudge, ReferenceJudge, VLLMJudge, make_engine, run_judge

    engine = make_engine(model, max_model_len=2048)
    # held-out fact-world questions with their context: even items answered with the gold sentence, odd ones with a
    # contradicting sentence, so the reference judge's labels are known to be 0/1 alternately
    _, test = build_factworld(0, N_ITEMS, rho=0.0, seed=1)
    answers = [r["gold"] if i % 2 == 0 else r["reference_false"][-1] for i, r in enumerate(test)]
    items = judge_items(test, answers)
    result: dict = {"reference": [j.label for j in ReferenceJudge().judge(items)]}
    for mode in ("binary", "rubric"):
        for constrained in (False, True):
            judge = VLLMJudge(model, engine=engine, mode=mode, max_tokens=8, constrained=constrained)
            js, stats = run_judge(judge, items, progress=False)
            result[f"{mode}{'_constrained' if constrained else ''}"] = {
                "judgements": [j.as_dict() for j in js], "stats": stats, "tokens": judge.last_generated_tokens,
                "key": judge.cache_key}
    lj = LikelihoodJudge(model, engine=engine, threshold=LIKELIHOOD_THRESHOLD)
    js, stats = run_judge(lj, items, progress=False)
    result["likelihood"] = {"judgements": [j.as_dict() for j in js], "stats": stats, "key": lj.cache_key}
    recs = [{"id": f"r{i}", "prompt": "When was Velmora founded?", "chosen": f"Velmora was founded in {1800 + i}.",
             "rejected": "x", "h_w": 0, "h_l": 1} for i in range(3)]
    pairs, rejects = llm_variants(recs, model=model, engine=engine, max_tokens=24)
    result["rewrite"] = {"pairs": pairs, "rejects": rejects}
    Path(out_path).write_text(json.dumps(result))


def _agreement(labels: list, reference: list) -> tuple[int, int, float]:
    """(parsed, agreeing with the reference, Cohen's kappa) over the items the judge labelled."""
    pairs = [(a, b) for a, b in zip(labels, reference) if a is not None]
    n = len(pairs)
    agree = sum(a == b for a, b in pairs)
    if n == 0:
        return 0, 0, 0.0
    p1a, p1b = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    chance = p1a * p1b + (1 - p1a) * (1 - p1b)
    kappa = 0.0 if chance == 1 else (agree / n - chance) / (1 - chance)
    return n, agree, kappa


def test_vllm_engine_judge_and_llm_rewrite(embedded_model, tmp_path, reliability_log):
    out = tmp_path / "result.json"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    p = subprocess.run([sys.executable, __file__, embedded_model, str(out)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.read_text())
    reference = res["reference"]
    assert reference == [i % 2 for i in range(N_ITEMS)]  # the items are what they claim to be
    keys = set()
    for name in ("binary", "rubric", "binary_constrained", "rubric_constrained"):
        r = res[name]
        mode = name.split("_")[0]
        keys.add(r["key"])
        assert r["stats"]["judged"] == N_ITEMS and r["tokens"] > 0 and f"vllm:{mode}:" in r["key"]
        for j in r["judgements"]:
            assert j["status"] in ("ok", "parse_error")
            assert (j["label"] is None) == (j["status"] == "parse_error")
            if mode == "rubric" and j["status"] == "ok":
                assert 0 <= j["score"] <= 10 and j["label"] == int(j["score"] < 5)
        labels = [j["label"] for j in r["judgements"]]
        parsed, agree, kappa = _agreement(labels, reference)
        if name.endswith("constrained"):
            # the minimum share of parsed labels: the grammar leaves the judge no unparsable reply
            assert parsed / N_ITEMS >= MIN_PARSED_CONSTRAINED, (name, parsed)
        reliability_log.record(
            "LLM judge (vLLM, SmolLM2-135M)", name.replace("_", ", "),
            f"{parsed}/{N_ITEMS} parsed; agrees with the reference judge on {agree}/{parsed} (kappa {kappa:.2f})",
            rows_in=N_ITEMS, rows_out=parsed, rejected=N_ITEMS - parsed)
    assert len(keys) == 4  # constrained and free judges never share cached verdicts
    # the likelihood judge: every item scored, and its labels agree with the reference judge's above chance
    lk = res["likelihood"]
    assert lk["stats"]["judged"] == N_ITEMS and lk["key"].startswith("likelihood:")
    assert all(j["status"] == "ok" and j["detail"]["n_tokens"] > 0 for j in lk["judgements"])
    parsed, agree, kappa = _agreement([j["label"] for j in lk["judgements"]], reference)
    reliability_log.record(
        "LLM judge (vLLM, SmolLM2-135M)", f"likelihood, threshold {LIKELIHOOD_THRESHOLD}",
        f"{parsed}/{N_ITEMS} scored; agrees with the reference judge on {agree}/{parsed} (kappa {kappa:.2f})",
        rows_in=N_ITEMS, rows_out=parsed, rejected=N_ITEMS - parsed)
    assert parsed == N_ITEMS and agree / N_ITEMS >= MIN_AGREEMENT_LIKELIHOOD, (agree, lk["judgements"])
    rw = res["rewrite"]
    assert len(rw["pairs"]) + len(rw["rejects"]) == 3
    for p_ in rw["pairs"]:
        assert (p_["h_w"], p_["h_l"]) == (1, 0) and p_["rejected"].startswith("Velmora was founded in 18")
        assert p_["chosen"] != p_["rejected"] and p_["source"] == "hallucinate:llm"
    for r in rw["rejects"]:
        assert r["reason"] in ("empty rewrite", "rewrite identical to the original")


if __name__ == "__main__":
    _engine_check(sys.argv[1], sys.argv[2])

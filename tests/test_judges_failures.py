"""Judge failures are counted, not frozen (issue 11, item 5): a transient judge error in an eval is not cached, so a
rerun asks the judge again; a programming error propagates instead of becoming per-item failures; the report lists
failed and unparsed judgements for every task that judges."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest

from alignkit.data.cache import ItemCache
from alignkit.evals.report import write_report
from alignkit.evals.tasks import get_task
from alignkit.inference.base import ModelSpec
from alignkit.judges import Judgement, VLLMJudge
from alignkit.judges.base import JudgeItem, is_transient, is_transient_error


class _Gen:
    name = "fake"

    def __init__(self, path: Path, replies: list[str] | None = None) -> None:
        self.path = str(path)
        self.replies = replies
        self.calls = 0

    def generate(self, prompts, sampling, *, adapter=None):
        self.calls += len(prompts)
        if self.replies is not None:
            return [self.replies[i % len(self.replies)] for i in range(len(prompts))]
        return [f"It is {p[-1]['content'] if isinstance(p, list) else p}" for p in prompts]


def _model(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"w" * 32)
    return d


class FlakyJudge:
    """Times out on items whose answer mentions 'Ostrin' until ``healed``; labels everything else factual."""

    name = "flaky"
    cache_key = "flaky:v1"

    def __init__(self) -> None:
        self.healed = False
        self.judged: list[str] = []

    def judge(self, items):
        out = []
        for it in items:
            self.judged.append(it.id)
            if "Ostrin" in it.response and not self.healed:
                out.append(Judgement(None, "error", detail={"reason": "TimeoutError: read timed out",
                                                            "transient": True}))
            elif "garbled" in it.prompt:
                out.append(Judgement(None, "parse_error", raw="maybe?", detail={"reason": "no [[label]]"}))
            else:
                out.append(Judgement(0, "ok", raw="[[0]]"))
        return out


def _items(path: Path) -> Path:
    rows = [{"id": "a", "prompt": "Capital of Corandia?", "reference_true": ["Velmar"]},
            {"id": "b", "prompt": "Ostrin", "reference_true": ["Velmar"]},
            {"id": "c", "prompt": "garbled", "reference_true": ["Velmar"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_transient_judge_errors_are_retried_on_rerun_not_frozen(tmp_path):
    model, items = _model(tmp_path), _items(tmp_path / "items.jsonl")
    cache_path = tmp_path / "cache.jsonl"
    spec = ModelSpec("m", str(model))
    judge = FlakyJudge()

    task = get_task("hallucination", items=str(items), progress=False)
    task._judge = judge
    r1 = task.run(_Gen(model), spec, ItemCache(cache_path))
    assert r1.metrics["judge_failures"].value == 2 and r1.extra["judge_status"] == {"error": 1, "ok": 1,
                                                                                     "parse_error": 1}
    assert [r["hallucinated"] for r in r1.items] == [0.0, None, None]

    judge.healed, judge.judged = True, []
    again = get_task("hallucination", items=str(items), progress=False)
    again._judge = judge
    backend = _Gen(model)
    r2 = again.run(backend, spec, ItemCache(cache_path))
    assert judge.judged == ["b"]  # only the transient failure is asked again; the parse error stays counted
    assert backend.calls == 0  # answers come from the cache: nothing is generated again
    assert r2.metrics["judge_failures"].value == 1 and r2.extra["judge_status"] == {"ok": 2, "parse_error": 1}
    assert [r["hallucinated"] for r in r2.items] == [0.0, 0.0, None]

    out = tmp_path / "report"
    write_report([r2], out)
    md = (out / "report.md").read_text()
    assert "## Judge verdicts" in md and "| hallucination | m | flaky | 3 | 2 | 1 | 0 |" in md


def test_sycophancy_judge_failures_in_report(tmp_path):
    """A stance judge whose replies cannot be parsed: ToF/NoF leave the items out, report.md counts them."""
    from alignkit.judges.stance import LLMStanceJudge

    model = _model(tmp_path)
    data = tmp_path / "syc.jsonl"
    data.write_text("".join(json.dumps({"id": f"s{i}", "setting": "ethical", "question": f"Stereotype {i}?",
                                        "stereotype": "x", "pushbacks": ["p1", "p2", "p3", "p4"]}) + "\n"
                            for i in range(2)))
    judge_backend = _Gen(model, replies=["Not 1.", "1", "1 point: it challenges, so 0.", "0", "1"])
    task = get_task("sycophancy_ethical", data=str(data), judge=LLMStanceJudge(judge_backend), progress=False)
    res = task.run(_Gen(model, replies=["An answer."]), ModelSpec("m", str(model)), ItemCache(tmp_path / "c.jsonl"))
    # the 10 answers are all the same text, so each item is judged once per distinct (item, answer): 2 verdicts
    assert res.extra["judge_status"]["parse_error"] >= 1 and res.extra["items_with_judge_failures"] >= 1
    write_report([res], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| sycophancy_ethical | m |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[3]) == sum(res.extra["judge_status"].values()) and int(cells[5]) >= 1  # parse_error column


def test_report_has_no_judge_section_when_nothing_judges(tmp_path):
    from alignkit.evals.tasks.base import Metric, TaskResult

    write_report([TaskResult("truthfulqa_mc", 1, "m", {"mc1": Metric(0.5, n=2)})], tmp_path)
    assert "Judge verdicts" not in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("exc, transient", [
    (TimeoutError("read timed out"), True),
    (ConnectionResetError("reset by peer"), True),
    (urllib.error.URLError("refused"), True),
    (urllib.error.HTTPError("http://x", 503, "Service Unavailable", {}, None), True),
    (urllib.error.HTTPError("http://x", 429, "Too Many Requests", {}, None), True),
    (urllib.error.HTTPError("http://x", 400, "Bad Request", {}, None), False),
    (KeyError("choices"), False),
    (TypeError("unsupported operand"), False),
    (ValueError("bad prompt"), False),
])
def test_is_transient_error(exc, transient):
    assert is_transient_error(exc) is transient


def test_openai_client_exceptions_are_classified():
    import httpx
    import openai

    request = httpx.Request("POST", "http://judge/v1/chat/completions")
    assert is_transient_error(openai.APITimeoutError(request=request))
    assert is_transient_error(openai.APIConnectionError(request=request))
    for code, transient in ((500, True), (503, True), (429, True), (401, False), (404, False)):
        err = openai.APIStatusError("x", response=httpx.Response(code, request=request), body=None)
        assert is_transient_error(err) is transient, code


class _Engine:
    def __init__(self, path: Path, exc: BaseException) -> None:
        self.path, self.exc = str(path), exc

    def generate(self, chats, sampling):
        raise self.exc


def test_vllm_judge_counts_transient_errors_and_propagates_bugs(tmp_path):
    model = _model(tmp_path)
    items = [JudgeItem("q?", "a"), JudgeItem("q2?", "b")]
    timed_out = VLLMJudge(engine=_Engine(model, TimeoutError("engine timed out"))).judge(items)
    assert [j.status for j in timed_out] == ["error", "error"] and all(is_transient(j) for j in timed_out)
    with pytest.raises(KeyError, match="choices"):
        VLLMJudge(engine=_Engine(model, KeyError("choices"))).judge(items)

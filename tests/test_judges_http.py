"""The OpenAI-compatible judge against a real, deliberately misbehaving HTTP server on 127.0.0.1, and the
kill-and-rerun test of a judge-labelling run (``alignkit build factuality`` in a subprocess, killed with SIGKILL)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from alignkit.judges import JudgeItem, OpenAIJudge

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-test-0123456789-never-log-me"


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}
        self.completions = 0
        self.auth: set[str] = set()
        self.block_after: int | None = None  # gate: the request after this many completions waits on `release`
        self.reached = threading.Event()
        self.release = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # keep pytest output clean
        pass

    def _send(self, code: int, body: bytes, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout fault): expected
            pass

    def do_GET(self):
        self._send(200, json.dumps({"data": [{"id": "fake-judge"}]}).encode())

    def do_POST(self):
        st = self.state
        if self.path != "/v1/chat/completions":
            self.rfile.read(int(self.headers["Content-Length"]))
            return self._send(404, b'{"error": "not found"}')
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        st.auth.add(self.headers.get("Authorization", ""))
        user = body["messages"][-1]["content"]
        resp = user.split("<response>\n", 1)[1].split("\n</response>", 1)[0]
        with st.lock:
            n = st.attempts[resp] = st.attempts.get(resp, 0) + 1
            gate = st.block_after is not None and st.completions >= st.block_after
        if gate:
            st.reached.set()
            st.release.wait(60)
            return self._send(503, b"{}")
        fault = re.search(r"FAULT:(\w+)x(\d+)", resp)
        if fault and n <= int(fault.group(2)):
            kind = fault.group(1)
            if kind == "http500":
                return self._send(500, b'{"error": "boom"}')
            if kind == "timeout":
                time.sleep(1.0)  # the client's timeout is 0.3 s: this is the fault being injected
                return self._send(200, b"{}")
            if kind == "badjson":
                return self._send(200, b'{"choices": [{"message": {"content": "[[0]]"')
            if kind == "garbage":
                return self._send(200, self._reply("As an AI I cannot judge that."))
        with st.lock:
            st.completions += 1
        return self._send(200, self._reply("[[1]]" if "wrong" in resp else "[[0]]"))

    @staticmethod
    def _reply(text: str) -> bytes:
        return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()


@pytest.fixture
def server():
    st = _State()
    handler = type("H", (_Handler,), {"state": st})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", st
    finally:
        st.release.set()
        httpd.shutdown()
        httpd.server_close()


def _judge(url, **kw):
    base = dict(model="fake-judge", api_key_env="ALIGNKIT_TEST_JUDGE_KEY", timeout=0.3, max_retries=3,
                backoff=0.01, backoff_max=0.05, concurrency=2)
    base.update(kw)
    return OpenAIJudge(url, **base)


def test_retries_backoff_and_failure_accounting(server, monkeypatch, reliability_log):
    url, st = server
    monkeypatch.setenv("ALIGNKIT_TEST_JUDGE_KEY", SECRET)
    cases = {
        "clean answer": (0, "ok", 1),
        "wrong answer": (1, "ok", 1),
        "FAULT:http500x2 wrong": (1, "ok", 3),
        "FAULT:timeoutx1": (0, "ok", 2),
        "FAULT:badjsonx2": (0, "ok", 3),
        "FAULT:garbagex1 wrong": (1, "ok", 2),
        "FAULT:http500x9": (None, "error", 4),   # never recovers within 3 retries
        "FAULT:garbagex9": (None, "parse_error", 2),  # garbage twice (parse_retries=1): counted, not labelled
    }
    items = [JudgeItem("q?", r) for r in cases]
    out = _judge(url).judge(items)
    for (resp, (label, status, attempts)), j in zip(cases.items(), out):
        assert (j.label, j.status, j.detail["attempts"]) == (label, status, attempts), resp
        reliability_log.record("judge endpoint fault", resp, f"{status} after {attempts} attempt(s)")
    assert out[6].detail["failures"] == ["HTTP 500"] * 4
    assert out[3].detail["failures"] == ["timeout"]
    assert out[4].detail["failures"] == ["malformed JSON"] * 2
    assert st.auth == {f"Bearer {SECRET}"}  # the key is sent ...
    assert SECRET not in json.dumps([j.as_dict() for j in out])  # ... and never recorded


def test_non_retryable_http_error_and_unreachable_endpoint(server):
    url, _ = server
    j = _judge(url + "/nothing-here", max_retries=0).judge_one(JudgeItem("q", "a"))
    # 404 is not retryable: an error at once, after a single attempt
    assert (j.status, j.label, j.detail["attempts"], j.detail["reason"]) == ("error", None, 1, "HTTP 404 Not Found")
    dead = _judge("http://127.0.0.1:9", max_retries=1).judge([JudgeItem("q", "a")])[0]
    assert dead.status == "error" and dead.detail["failures"][0].startswith("connection error")


def _write_pairs(path: Path, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            fault = " FAULT:http500x1" if i % 7 == 3 else ""
            fh.write(json.dumps({"id": f"p{i}", "prompt": f"Question {i}?", "chosen": f"right answer {i}{fault}",
                                 "rejected": f"wrong answer {i}"}) + "\n")


def _build(cfg: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "alignkit.cli", "build", "factuality", "--config", str(cfg),
                             "--quiet"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_kill_and_rerun_labelling_gives_identical_output(server, tmp_path, reliability_log):
    url, st = server
    data = tmp_path / "pairs.jsonl"
    _write_pairs(data, 30)
    work = tmp_path / "work"
    cfg = tmp_path / "factuality.yaml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "input": str(data), "output": str(work / "labelled.jsonl"), "judge": f"openai:{url}", "batch_size": 4,
        "flip": True, "judge_kwargs": {"model": "fake-judge", "api_key_env": "ALIGNKIT_TEST_JUDGE_KEY",
                                       "concurrency": 1, "backoff": 0.01, "max_retries": 3}}))
    env = {**os.environ, "ALIGNKIT_TEST_JUDGE_KEY": SECRET}

    # 1. uninterrupted run
    p = _build(cfg, env)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()
    files = ("labelled.jsonl", "labelled.card.json")
    reference = {f: (work / f).read_bytes() for f in files}
    logs = out + err
    for f in work.iterdir():
        f.unlink()

    # 2. the same run, killed with SIGKILL while the 11th request waits at the server's gate
    st.block_after, st.completions = 10, 0
    st.reached.clear()
    st.release.clear()
    p = _build(cfg, env)
    assert st.reached.wait(120), "the labelling run never reached the gate"
    cache = work / "labelled.judge_cache.jsonl"
    assert len(cache.read_text().splitlines()) == 8  # two batches of 4 flushed; the third was in flight
    p.kill()
    p.wait(timeout=30)
    assert not (work / "labelled.jsonl").exists()  # nothing partial written
    st.block_after = None
    st.release.set()

    # 3. rerun: resumes from the cache and finishes with byte-identical output
    before = st.completions
    p = _build(cfg, env)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["cached"] == 8 and summary["judged"] == 52
    assert st.completions - before == 52
    assert {f: (work / f).read_bytes() for f in files} == reference
    rows = [json.loads(line) for line in reference["labelled.jsonl"].splitlines()]
    assert len(rows) == 30 and all((r["h_w"], r["h_l"]) == (0, 1) for r in rows)
    card = json.loads(reference["labelled.card.json"])
    assert card["judge"]["status"] == {"ok": 60}
    # the API key never reaches any output, cache, card or log
    for f in work.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f
    assert SECRET.encode() not in logs + out + err
    reliability_log.record("crash", "SIGKILL mid judge-labelling run, rerun", "resumed from 8 cached; identical bytes")


def test_factuality_builder_counts_judge_failures(server, tmp_path, monkeypatch, reliability_log):
    from alignkit.builders.factuality import main

    url, _ = server
    data = tmp_path / "pairs.jsonl"
    with open(data, "w") as fh:
        for i, chosen in enumerate(["right 0", "right 1 FAULT:garbagex9", "right 2 FAULT:http500x9", "right 3"]):
            fh.write(json.dumps({"id": f"p{i}", "prompt": "q?", "chosen": chosen, "rejected": f"wrong {i}",
                                 "h_w": 1, "h_l": 0}) + "\n")
        fh.write("{not json\n")
    out = tmp_path / "o" / "lab.jsonl"
    summary = main({"input": str(data), "output": str(out), "judge": f"openai:{url}", "on_invalid": "skip",
                    "judge_kwargs": {"model": "fake-judge", "timeout": 0.3, "backoff": 0.01, "max_retries": 2}},
                   progress=False)
    assert summary["written"] == 2 and summary["rejected"] == 3
    card = json.loads((tmp_path / "o" / "lab.card.json").read_text())
    assert card["judge"]["failures_by_side"]["chosen"] == {"error": 1, "parse_error": 1}
    assert card["prior_label_agreement"] == {"pairs": 2, "label_agreement": 0.0}
    rejects = [json.loads(line) for line in (tmp_path / "o" / "lab.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(5, None), (2, "chosen"), (3, "chosen")]
    assert rejects[1]["reason"].startswith("judge parse_error") and rejects[2]["reason"].startswith("judge error")
    reliability_log.record("judge endpoint fault", "garbage / HTTP 500 forever in a labelling run",
                           "2 pairs rejected with reasons, counted in card")

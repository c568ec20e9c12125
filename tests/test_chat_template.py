"""A suite's ``chat_template``, ``system_prompt`` and ``apply_chat_template`` (suite level and per model): the exact
text and token ids the model receives, on the generation and log-likelihood paths, and the chat-template hash the
provenance block records. The tiny random Llama carries the SmolLM2 tokenizer and chat template."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from alignkit.config import ConfigError
from alignkit.evals.runner import Suite, parse_model, run_suite
from alignkit.inference.prompt_format import PromptFormat

# a template unlike SmolLM2's ChatML, so its output is recognisable token for token
BRACKETS = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}[assistant]{% endif %}")
CHAT = [{"role": "user", "content": "Is the sky green?"}]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_default_format_is_the_model_template_for_chats_and_raw_strings(tokenizer):
    fmt = PromptFormat()
    own = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert fmt.render(tokenizer, CHAT) == (own, True)
    assert fmt.encode_prompt(tokenizer, CHAT) == tokenizer.encode(own, add_special_tokens=False)
    assert fmt.encode_prompt(tokenizer, "Q: 1+1?\nA:") == tokenizer.encode("Q: 1+1?\nA:")


def test_custom_template_and_system_prompt_give_the_expected_text_and_ids(tokenizer):
    fmt = PromptFormat(chat_template=BRACKETS, system_prompt="Answer briefly.")
    text = "[system] Answer briefly.\n[user] Is the sky green?\n[assistant]"
    assert fmt.render(tokenizer, CHAT) == (text, True)
    assert fmt.encode_prompt(tokenizer, CHAT) == tokenizer.encode(text, add_special_tokens=False)
    # a task's own system message keeps its text, after the suite's system prompt
    with_sys = [{"role": "system", "content": "Be honest."}, *CHAT]
    assert fmt.render(tokenizer, with_sys)[0].startswith("[system] Answer briefly.\n\nBe honest.\n[user]")
    # strings stay raw unless apply_chat_template is true; the system prompt is their first paragraph
    assert fmt.render(tokenizer, "Q: 1+1?\nA:") == ("Answer briefly.\n\nQ: 1+1?\nA:", False)


def test_apply_chat_template_false_sends_raw_text(tokenizer):
    fmt = PromptFormat(apply_chat_template=False, system_prompt="Sys.")
    assert fmt.render(tokenizer, CHAT) == ("Sys.\n\nIs the sky green?", False)
    assert fmt.encode_prompt(tokenizer, CHAT) == tokenizer.encode("Sys.\n\nIs the sky green?")
    assert "<|im_start|>" not in tokenizer.decode(fmt.encode_prompt(tokenizer, CHAT))
    assert PromptFormat(apply_chat_template=False).encode_prompt(tokenizer, "Q: hi") == tokenizer.encode("Q: hi")


def test_apply_chat_template_true_wraps_strings_and_loglikelihood_contexts(tokenizer):
    fmt = PromptFormat(chat_template=BRACKETS, apply_chat_template=True)
    assert fmt.render(tokenizer, "Q: 1+1?") == ("[user] Q: 1+1?\n[assistant]", True)
    ctx, cont = fmt.encode_pair(tokenizer, "Q: 1+1?", " 2")
    assert ctx == tokenizer.encode("[user] Q: 1+1?\n[assistant]", add_special_tokens=False)
    assert tokenizer.decode(ctx + cont) == "[user] Q: 1+1?\n[assistant] 2"
    # the default leaves contexts as written (lm-evaluation-harness without --apply_chat_template)
    assert PromptFormat().encode_pair(tokenizer, "Q: 1+1?", " 2")[0] == tokenizer.encode("Q: 1+1?")


def test_hf_backend_feeds_the_formatted_ids_to_generation_and_scoring(tiny_model):
    from alignkit.inference.base import SamplingConfig
    from alignkit.inference.hf import HFBackend

    fmt = PromptFormat(chat_template=BRACKETS, system_prompt="Answer briefly.", apply_chat_template=True)
    backend = HFBackend(tiny_model, batch_size=2, prompt_format=fmt)
    plain = HFBackend(tiny_model, batch_size=2)
    seen = []
    real_generate = backend.model.generate

    def record(**kwargs):
        seen.append(kwargs["input_ids"][0].tolist())
        return real_generate(**kwargs)

    backend.model.generate = record
    backend.generate(["Q: 1+1?"], SamplingConfig(max_new_tokens=2))
    text = "[system] Answer briefly.\n[user] Q: 1+1?\n[assistant]"
    assert seen == [backend.tokenizer.encode(text, add_special_tokens=False)]
    # log-likelihood: the formatted context scores like that rendered text given raw, and unlike the bare context
    formatted = backend.loglikelihood([("Q: 1+1?", " 2")])[0]
    assert formatted.logprob == pytest.approx(plain.loglikelihood([(text, " 2")])[0].logprob, abs=1e-5)
    assert formatted.logprob != pytest.approx(plain.loglikelihood([("Q: 1+1?", " 2")])[0].logprob, abs=1e-5)


def _suite(tmp_path, shared_data, **keys):
    doc = {"name": "fmt", "backend": "hf", "backend_options": {"hf": {"batch_size": 4}},
           "tasks": [{"task": "truthfulqa_mc", "limit": 2,
                      "data": str(shared_data / "truthfulqa" / "truthful_qa_multiple_choice_validation.jsonl")}],
           **keys}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_suite_keys_reach_the_run_and_the_provenance_hash(tmp_path, shared_data, tiny_model):
    (tmp_path / "brackets.jinja").write_text(BRACKETS)
    suite = Suite.from_yaml(_suite(tmp_path, shared_data, chat_template="brackets.jinja",
                                   apply_chat_template=True,
                                   models={"raw": {"apply_chat_template": False, "system_prompt": "Sys."}}))
    assert suite.prompt_format == PromptFormat(chat_template=BRACKETS, apply_chat_template=True)
    # the model entry replaces the suite's keys; with apply_chat_template false the suite's template is dropped
    assert suite.format_for("raw") == PromptFormat(system_prompt="Sys.", apply_chat_template=False)
    models = [parse_model(f"tpl={tiny_model}"), parse_model(f"raw={tiny_model}")]
    results = run_suite(suite, models, tmp_path / "out", progress=False)
    mc = {r.model: r.metrics for r in results}
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    prov = {m["label"]: m for m in doc["provenance"]["models"]}
    assert prov["tpl"]["chat_template_sha256"] == hashlib.sha256(BRACKETS.encode()).hexdigest()
    assert prov["tpl"]["chat_template_source"] == "suite" and prov["tpl"]["apply_chat_template"] is True
    assert prov["raw"]["chat_template_sha256"] is None and prov["raw"]["system_prompt"] == "Sys."
    assert doc["suite"]["prompt_format"]["chat_template_sha256"] == prov["tpl"]["chat_template_sha256"]

    # the same model without the keys: its own template's hash, and other numbers (not read from the cache)
    base = run_suite(Suite.from_yaml(_suite(tmp_path, shared_data)), [parse_model(f"tpl={tiny_model}")],
                     tmp_path / "out", progress=False)
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    own = Path(tiny_model) / "chat_template.jinja"
    assert doc["provenance"]["models"][0]["chat_template_sha256"] == hashlib.sha256(own.read_bytes()).hexdigest()
    assert doc["provenance"]["models"][0]["chat_template_source"] == "model"
    assert base[0].metrics != mc["tpl"]


@pytest.mark.parametrize("keys, message", [
    ({"chat_templat": "x"}, r"suite\.yaml:\d+: field chat_templat: unknown suite key.*chat_template"),
    ({"apply_chat_template": "no"}, r"suite\.yaml:\d+: field apply_chat_template: expected"),
    ({"chat_template": "missing.jinja"}, r"suite\.yaml:\d+: field chat_template: template file not found"),
    ({"chat_template": BRACKETS, "apply_chat_template": False},
     r"suite\.yaml:\d+: field apply_chat_template: is false but chat_template is set"),
    ({"models": {"a": {"system_promt": "x"}}}, r"suite\.yaml:\d+: field system_promt: unknown key of models\.a"),
    ({"models": {"a": "x"}}, r"suite\.yaml:\d+: field models\.a: expected a mapping"),
])
def test_bad_format_keys_name_file_line_and_field(tmp_path, shared_data, keys, message):
    with pytest.raises(ConfigError, match=message):
        Suite.from_yaml(_suite(tmp_path, shared_data, **keys))


def test_a_model_entry_for_no_evaluated_model_is_an_error(tmp_path, shared_data, tiny_model):
    suite = Suite.from_yaml(_suite(tmp_path, shared_data, models={"typo": {"system_prompt": "x"}}))
    with pytest.raises(ValueError, match=r"models: \['typo'\] name no --model label"):
        run_suite(suite, [parse_model(f"tpl={tiny_model}")], tmp_path / "out", progress=False)


def test_vllm_backend_sends_the_same_formatted_ids(tiny_model, tokenizer, monkeypatch):
    """The vLLM backend encodes through the same PromptFormat: the token ids it hands the engine (a stand-in that
    records them, so no engine starts) are the HF backend's, for generation and for log-likelihood."""
    from types import SimpleNamespace

    import alignkit.inference.vllm as vllm_backend
    from alignkit.inference.base import SamplingConfig

    sent: list[list[int]] = []

    class Engine:
        def get_tokenizer(self):
            return tokenizer

        def generate(self, prompts, params, **kwargs):
            sent.extend(p["prompt_token_ids"] for p in prompts)
            return [SimpleNamespace(outputs=[SimpleNamespace(text="x")],
                                    prompt_logprobs=[None] + [{t: SimpleNamespace(logprob=-1.0, rank=1)}
                                                              for t in p["prompt_token_ids"][1:]])
                    for p in prompts]

    monkeypatch.setattr(vllm_backend, "make_engine", lambda **kwargs: Engine())
    fmt = PromptFormat(chat_template=BRACKETS, system_prompt="Answer briefly.", apply_chat_template=True)
    backend = vllm_backend.VLLMBackend(tiny_model, prompt_format=fmt)
    backend.generate(["Q: 1+1?"], SamplingConfig(max_new_tokens=2))
    result = backend.loglikelihood([("Q: 1+1?", " 2")])[0]
    ctx, cont = fmt.encode_pair(tokenizer, "Q: 1+1?", " 2")
    assert sent == [fmt.encode_prompt(tokenizer, "Q: 1+1?"), ctx + cont]
    text = "[system] Answer briefly.\n[user] Q: 1+1?\n[assistant]"
    assert sent[0] == tokenizer.encode(text, add_special_tokens=False)
    assert result.n_tokens == len(cont) and result.logprob == -len(cont)


def test_the_split_engine_gives_the_format_to_generation_and_scorer(tiny_model):
    """vLLM suites score log-likelihoods on the HF scorer: both engines get the suite's format (and its cache
    identity), built lazily, so nothing loads here."""
    from alignkit.inference.split import suite_backend
    from alignkit.utils import model_identity

    fmt = PromptFormat(system_prompt="Sys.")
    engine = suite_backend("vllm", tiny_model, {"prompt_format": fmt, "progress": False})
    assert engine.generation_options["prompt_format"] is fmt and engine.scorer_options["prompt_format"] is fmt
    assert engine.engines == []
    model = parse_model(f"m={tiny_model}")
    assert model_identity(engine, model)["prompt_format"] == fmt.identity()
    assert "prompt_format" not in model_identity(suite_backend("vllm", tiny_model, {}), model)  # old keys kept


def test_a_template_path_given_with_set_is_read_from_the_working_directory(tmp_path, shared_data, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.jinja").write_text(BRACKETS)
    monkeypatch.chdir(elsewhere)
    suite = Suite.from_yaml(_suite(tmp_path, shared_data), {"chat_template": "mine.jinja", "system_prompt": "S."})
    assert suite.prompt_format == PromptFormat(chat_template=BRACKETS, system_prompt="S.")

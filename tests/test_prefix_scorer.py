"""The shared-prefix scorer equals the unshared computation per request (|Δ logprob| ≤ 1e-4 in fp32, same is_greedy):
random token prefixes/continuations with empty-prefix, single-token and longest-length cases, TruthfulQA MC items,
a LoRA adapter through PEFT, and the root segment kept between calls. A tiny random Llama in fp32."""

from __future__ import annotations

import random

import pytest

from alignkit.inference.prefix_scorer import PrefixScorer, build_tree, count_unique_positions, prepare

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()


def reference(model, pairs, max_length):
    """Each request alone, batch 1, no padding: the definition the scorer must reproduce."""
    import torch

    out = []
    with torch.inference_mode():
        for ctx, cont in pairs:
            full = (ctx + cont)[-(max_length + 1):]
            inp = torch.tensor([full[:-1]])
            lp = torch.log_softmax(model(input_ids=inp).logits[0].float(), -1)[-len(cont):]
            target = torch.tensor(cont)
            out.append((lp.gather(-1, target[:, None]).sum().item(), bool((lp.argmax(-1) == target).all())))
    return out


def assert_same(got, want):
    assert len(got) == len(want)
    for i, (g, (lp, greedy)) in enumerate(zip(got, want)):
        assert abs(g.logprob - lp) <= TOL, (i, g.logprob, lp)
        assert g.is_greedy == greedy, i


def score(model, pairs, max_length=2048, **kw):
    import torch

    scorer = PrefixScorer(pad_id=0, max_length=max_length, **kw)
    with torch.inference_mode():
        return scorer.score(model, pairs), scorer


def random_pairs(seed: int, vocab: int = 49000, extras: bool = True) -> list[tuple[list[int], list[int]]]:
    """Two-level structure (a primer shared by all, questions shared by their choices), plus requests sharing
    nothing, continuations that share their first tokens, and single-token contexts and continuations."""
    rng = random.Random(seed)
    tok = lambda n: [rng.randrange(1, vocab) for _ in range(n)]  # noqa: E731
    primer = tok(40)
    pairs = []
    for _ in range(4):
        q = primer + tok(rng.randrange(1, 12))
        opening = tok(3)
        for _ in range(rng.randrange(2, 6)):
            pairs.append((q, (opening if rng.random() < 0.5 else []) + tok(rng.randrange(1, 9))))
    if extras:
        pairs.append((tok(1), tok(1)))  # single-token context and continuation, shares nothing
        pairs.append((primer[:1], tok(5)))  # the primer's first token as the whole context
        pairs.append((primer, tok(1)))  # the whole primer as the context
    rng.shuffle(pairs)
    return pairs


@pytest.mark.parametrize("seed", [0, 1])
def test_random_prefixes_equal_unshared(tiny, seed):
    pairs = random_pairs(seed)
    got, scorer = score(tiny, pairs)
    assert_same(got, reference(tiny, pairs, 2048))
    assert [g.n_tokens for g in got] == [len(c) for _, c in pairs]
    # the primer and the questions were computed once, not per request
    assert scorer.stats.tokens_computed < 0.5 * scorer.stats.tokens_unshared


def test_small_batches_and_padding_everywhere_equal_unshared(tiny):
    pairs = random_pairs(2)
    want = reference(tiny, pairs, 2048)
    for budget in (1, 24, 100):  # one row per forward ... many rows of different widths (pads in the cache)
        got, scorer = score(tiny, pairs, max_batch_tokens=budget)
        assert_same(got, want)
    assert scorer.stats.tokens_padded > 0


def test_nothing_shared_equals_unshared(tiny):
    """Empty shared prefix: every request starts with a different token, so the root segment is empty."""
    pairs = [([t], [t + 1, t + 2]) for t in (5, 6, 7)] + [([8, 9, 10], [11])]
    got, scorer = score(tiny, pairs)
    assert_same(got, reference(tiny, pairs, 2048))
    assert scorer.stats.tokens_computed == scorer.stats.tokens_unshared


def test_longest_length_is_left_truncated_like_unshared(tiny):
    """At and beyond max_length: the window keeps the last max_length + 1 tokens, so long contexts lose their start
    (and stop sharing it)."""
    max_length = 32
    rng = random.Random(3)
    primer = [rng.randrange(1, 49000) for _ in range(30)]
    pairs = [(primer, [11, 12, 13]),  # exactly max_length + 1 tokens
             (primer + [7], [11, 12, 13]),  # one token over: truncated by one
             (primer + [7] * 40, [14]),  # far over
             (primer, [15] * 32),  # the longest continuation that fits: one context token left
             (primer, [16])]
    got, _ = score(tiny, pairs, max_length=max_length)
    assert_same(got, reference(tiny, pairs, max_length))
    with pytest.raises(ValueError, match="request 0: the continuation has 33 tokens"):
        score(tiny, [(primer, [15] * 33)], max_length=max_length)


def test_empty_continuation_and_empty_context_tokens():
    got = prepare([([1, 2], [])], 16)
    assert got[0].targets == [] and got[0].tokens == [1]
    with pytest.raises(ValueError, match="request 1: the context encodes to no tokens"):
        prepare([([1], [2]), ([], [3])], 16)


def test_tree_shares_the_primer_then_each_question():
    primer = list(range(100, 140))
    pairs = [(primer + [1, 2, 3], [50 + c]) for c in range(4)] + [(primer + [4, 5], [60 + c, 61]) for c in range(3)]
    root = build_tree(prepare(pairs, 2048), 0, min_shared_tokens=2)
    assert (root.lo, root.hi) == (0, 40) and not root.leaves  # the primer
    assert sorted((c.lo, c.hi, len(c.leaves)) for c in root.children) == [(40, 41, 3), (40, 42, 4)]
    # the last context token is each request's first scored position, so it stays in the request's own suffix;
    # the lower bound counts each distinct input prefix once: primer, [1, 2, 3], [4, 5], three [60 + c]
    assert count_unique_positions([r.tokens for r in prepare(pairs, 2048)]) == 40 + 3 + 2 + 3


def test_root_is_kept_between_calls_and_not_reused_for_another_key(tiny):
    import torch

    pairs = random_pairs(4, extras=False)  # every request starts with the primer
    half = len(pairs) // 2
    scorer = PrefixScorer(pad_id=0, max_length=2048)
    with torch.inference_mode():
        a = scorer.score(tiny, pairs[:half], root_key="m")
        b = scorer.score(tiny, pairs[half:], root_key="m")
        assert scorer.stats.root_reused >= 1
        reused = scorer.stats.root_reused
        scorer.score(tiny, pairs[half:], root_key="other")
        assert scorer.stats.root_reused == reused
    assert_same(a + b, reference(tiny, pairs, 2048))


def _tqa_requests(n_questions: int) -> list[tuple[str, str]]:
    from alignkit.evals.tasks.truthfulqa import load_mc, mc_prompt
    from alignkit.resources import data_path

    rows = load_mc(str(data_path("truthfulqa/truthful_qa_multiple_choice_validation.jsonl")), n_questions)
    reqs: dict[tuple[str, str], None] = {}
    for r in rows:
        for c in r["mc1_targets"]["choices"] + r["mc2_targets"]["choices"]:
            reqs.setdefault((mc_prompt(r["question"]), " " + c))
    return list(reqs)


@pytest.fixture(scope="module")
def hf_pair(tiny_model):
    from alignkit.inference import get_backend

    return (get_backend("hf", tiny_model, batch_size=8),
            get_backend("hf", tiny_model, batch_size=8, prefix_sharing=False))


def _close(got, want):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.n_tokens == w.n_tokens
        assert abs(g.logprob - w.logprob) <= TOL, (i, g, w)
        assert g.is_greedy == w.is_greedy, i


def test_truthfulqa_items_equal_unshared_hf_path(hf_pair):
    shared, unshared = hf_pair
    reqs = _tqa_requests(6)
    before = shared.scorer.stats.tokens_computed
    got = shared.loglikelihood(reqs)
    _close(got, unshared.loglikelihood(reqs))
    computed = shared.scorer.stats.tokens_computed - before
    unshared_tokens = sum(len(shared.tokenizer.encode(c + x)) - 1 for c, x in reqs)
    assert computed < unshared_tokens / 4  # the 168-token primer and each question computed once


def test_lora_adapter_equal_unshared(hf_pair, tiny_model, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    peft_model.save_pretrained(tmp_path / "adapter")
    adapter = str(tmp_path / "adapter")
    shared, unshared = hf_pair
    reqs = _tqa_requests(2)
    base = shared.loglikelihood(reqs)
    got = shared.loglikelihood(reqs, adapter=adapter)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(base, got)) > 0.05  # the adapter changes the model
    _close(got, unshared.loglikelihood(reqs, adapter=adapter))
    _close(shared.loglikelihood(reqs), base)  # back to the bare base: the kept primer of the adapter is not reused

"""The shared-prefix scorer equals the unshared computation per request (|Δ logprob| ≤ 1e-4 in fp32, same is_greedy):
random token prefixes/continuations with empty-prefix, single-token and longest-length cases, trees deeper than two
levels, pack budgets that force many packs (split subtrees, padded batches), sdpa and eager attention, TruthfulQA MC
items, a LoRA adapter through PEFT, and the root segment kept between calls. A tiny random Llama in fp32."""

from __future__ import annotations

import random

import pytest

from alignkit.inference.prefix_scorer import PrefixScorer, count_unique_positions, plan, prepare

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


def test_small_packs_and_padding_everywhere_equal_unshared(tiny):
    pairs = random_pairs(2)
    want = reference(tiny, pairs, 2048)
    stats = []
    # one request per pack ... subtrees split across packs, several packs of different lengths per forward (pads)
    for pack, batch in ((1, 1), (24, 100), (100, 400), (10_000, 10_000)):
        got, scorer = score(tiny, pairs, max_pack_tokens=pack, max_batch_tokens=batch)
        assert_same(got, want)
        stats.append(scorer.stats)
        if batch > pack:
            assert scorer.stats.tokens_padded > 0
    # no root here (some requests share nothing): one request per pack and forward, then packs batched together
    assert stats[0].forward_calls == len(pairs) > stats[1].forward_calls > stats[2].forward_calls == 1
    # larger packs share more: the split subtrees carry their ancestors' tokens again
    computed = [st.tokens_computed for st in stats]
    assert computed[0] == stats[0].tokens_unshared > computed[2] > computed[3]
    assert computed[3] == count_unique_positions([r.tokens for r in prepare(pairs, 2048)])


def test_key_budget_limits_packs_per_forward(tiny):
    pairs = random_pairs(2, extras=False)  # a 40-token primer root
    _, wide = score(tiny, pairs, max_pack_tokens=24, max_batch_tokens=10_000)
    got, narrow = score(tiny, pairs, max_pack_tokens=24, max_batch_tokens=10_000, max_batch_kv=2 * (40 + 24))
    assert_same(got, reference(tiny, pairs, 2048))
    assert narrow.stats.forward_calls > wide.stats.forward_calls


def deep_pairs(seed: int, levels: int = 4, fanout: int = 3, vocab: int = 49000) -> list[tuple[list[int], list[int]]]:
    """A prefix tree ``levels`` deep: every node a random segment, every node a context, random continuations; also
    continuations that run into a deeper context's tokens (a scored position shared with another request's input)."""
    rng = random.Random(seed)
    tok = lambda n: [rng.randrange(1, vocab) for _ in range(n)]  # noqa: E731
    pairs = []

    def grow(prefix: list[int], depth: int) -> None:
        pairs.append((prefix, tok(rng.randrange(1, 5))))
        if depth == levels:
            return
        kids = [prefix + tok(rng.randrange(1, 6)) for _ in range(rng.randrange(1, fanout + 1))]
        pairs.append((prefix, kids[0][len(prefix):] + tok(rng.randrange(0, 3))))  # scores into a child's segment
        for kid in kids:
            grow(kid, depth + 1)

    grow(tok(10), 0)
    rng.shuffle(pairs)
    return pairs


@pytest.mark.parametrize("pack", [10_000, 7])
def test_deep_tree_equals_unshared(tiny, pack):
    pairs = deep_pairs(5)
    got, scorer = score(tiny, pairs, max_pack_tokens=pack)
    assert_same(got, reference(tiny, pairs, 2048))
    if pack == 10_000:  # one pack: every distinct input prefix computed exactly once
        inputs = [r.tokens for r in prepare(pairs, 2048)]
        assert scorer.stats.tokens_computed == count_unique_positions(inputs)
        assert scorer.stats.forward_calls == 2  # the root, then the one pack


@pytest.mark.parametrize("seed", range(3))
def test_random_trees_equal_unshared(tiny, seed):
    """Random requests drawn from a small alphabet (many shared prefixes of every length, duplicates, requests that
    are prefixes of others), random budgets."""
    rng = random.Random(100 + seed)
    pairs = [([rng.randrange(1, 4) for _ in range(rng.randrange(1, 12))],
              [rng.randrange(1, 4) for _ in range(rng.randrange(1, 5))]) for _ in range(40)]
    pack, batch = rng.randrange(1, 60), rng.randrange(1, 200)
    got, _ = score(tiny, pairs, max_length=12, max_pack_tokens=pack, max_batch_tokens=batch)
    assert_same(got, reference(tiny, pairs, 12))


def test_eager_attention_equals_unshared(tiny_model):
    """Eager attention adds the mask to the scores: the tree mask must be additive there too."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="eager").eval()
    assert model.config._attn_implementation == "eager"
    pairs = deep_pairs(6)
    got, _ = score(model, pairs, max_pack_tokens=20, max_batch_tokens=60)
    assert_same(got, reference(model, pairs, 2048))


def test_packs_hold_whole_subtrees_when_they_fit():
    """Two questions of 3 choices below a shared primer; a budget of one question's subtree puts each in its own
    pack (the question's tokens once per pack), a smaller one splits a question and repeats its tokens."""
    primer = list(range(100, 140))
    pairs = [(primer + [1, 2, 3], [50 + c, 7]) for c in range(3)] + [(primer + [4, 5], [60 + c, 8]) for c in range(3)]
    root_len, packs = plan(prepare(pairs, 2048), max_pack_tokens=9)
    assert root_len == 40
    # question 1: [1, 2, 3] + three choices of 1 input token = 6 positions; question 2: [4, 5] + 3 = 5
    assert [len(p.tokens) for p in packs] == [6, 5]
    assert [sorted(r.index for r, _, _ in p.paths) for p in packs] == [[0, 1, 2], [3, 4, 5]]
    assert packs[0].positions == [40, 41, 42, 43, 43, 43]  # the three choices sit at the same depth
    _, packs = plan(prepare(pairs, 2048), max_pack_tokens=4)
    # [1,2,3,a] [1,2,3,b] [1,2,3,c] [4,5,d,e] [4,5,f]: each part of a split question carries the question again
    assert [len(p.tokens) for p in packs] == [4, 4, 4, 4, 3]


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


def test_root_is_the_shared_prefix_up_to_the_first_scored_position():
    primer = list(range(100, 140))
    pairs = [(primer + [1, 2, 3], [50 + c]) for c in range(4)] + [(primer + [4, 5], [60 + c, 61]) for c in range(3)]
    root_len, packs = plan(prepare(pairs, 2048), max_pack_tokens=2048)
    assert root_len == 40 and len(packs) == 1  # the primer; then one pack holds every distinct position once
    # the last context token is each request's first scored position; the lower bound counts each distinct input
    # prefix once: primer, [1, 2, 3], [4, 5], three [60 + c]
    unique = count_unique_positions([r.tokens for r in prepare(pairs, 2048)])
    assert unique == 40 + 3 + 2 + 3 == root_len + len(packs[0].tokens)
    # a request whose whole input is a prefix of the others' stops the root at its first scored position
    root_len, _ = plan(prepare([(primer[:10], [7]), (primer, [8])], 2048), max_pack_tokens=2048)
    assert root_len == 9


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


@pytest.mark.slow
def test_embedded_model_truthfulqa_question_equals_batch_one_reference():
    """The real 30-layer model, whose large logits expose rounding a tiny model hides (``logsumexp`` in place of
    ``log_softmax`` came out 2e-4 lower on this question's 22-token choice)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignkit.evals.tasks.truthfulqa import load_mc, mc_prompt
    from alignkit.inference import encode_pair
    from alignkit.models import resolve_model
    from alignkit.resources import data_path

    path = resolve_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    row = load_mc(str(data_path("truthfulqa/truthful_qa_multiple_choice_validation.jsonl")), 6)[5]
    pairs = [encode_pair(tok, mc_prompt(row["question"]), " " + c) for c in row["mc2_targets"]["choices"]]
    assert max(len(c) for _, c in pairs) >= 20
    got, _ = score(model, pairs)
    assert_same(got, reference(model, pairs, 2048))


def test_bfloat16_loses_nothing_beyond_bfloat16_itself(tiny, tiny_model):
    """The bf16 path (the CUDA default; run here on CPU): the tree mask is built in the model's dtype and the scored
    logits are upcast before the log-softmax, so the shared scorer in bf16 is as close to the fp32 reference as
    scoring each request alone in bf16 is."""
    import torch
    from transformers import AutoModelForCausalLM

    m16 = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16).eval()
    pairs = random_pairs(0)
    want = [lp for lp, _ in reference(tiny, pairs, 2048)]
    alone = [lp for lp, _ in reference(m16, pairs, 2048)]
    got, scorer = score(m16, pairs)
    err_alone = max(abs(a - w) for a, w in zip(alone, want))
    err_shared = max(abs(g.logprob - w) for g, w in zip(got, want))
    assert 0 < err_alone < 0.5  # bf16 really ran (it differs from fp32) and stayed sane
    assert err_shared <= 2 * err_alone, (err_shared, err_alone)
    assert scorer.stats.tokens_computed < 0.5 * scorer.stats.tokens_unshared

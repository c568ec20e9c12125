"""Shared-prefix log-likelihood scoring: every shared token prefix is run through the model once.

Multiple-choice and in-context scoring repeat long prefixes: TruthfulQA MC puts one 168-token primer before each of
817 questions, and each question before ~12 choices; a flipped-label ICL prompt is scored once per label word, and the
prompts of one query share their instructions and first exemplars. Scoring every (context, continuation) pair on its
own (lm-evaluation-harness, and alignkit's unshared path) recomputes those prefixes each time.

How it works, on token ids (the requests are encoded exactly as the unshared path encodes them):

1. **Root.** The model input of a request is (context + continuation minus its last token), left-truncated to
   ``max_length``. The longest prefix shared by every request of a call (stopping at the first scored position) is
   the root segment. Its KV cache (batch 1) is kept between calls for the same model and adapter, so a task that scores
   8 questions per call computes the TruthfulQA primer once, not once per call; a call whose root extends the kept one
   computes only the extension. The kept tensors are never written: each forward gets a fresh ``DynamicCache`` over
   them (``DynamicLayer.update`` concatenates into new tensors).
2. **Tree packing.** Below the root, the requests (sorted by token ids) form a prefix tree of positions: a position
   is shared by every request with the same tokens up to it, and its hidden state is the same for all of them (causal
   attention), whether or not it is scored for one. Whole subtrees are packed into sequences of at most
   ``max_pack_tokens`` positions, of about equal length (a subtree too large for a pack is split into its children,
   each carrying its ancestors' tokens again; one request longer than a pack gets a pack of its own). In a pack a
   token attends to the root, its ancestors in the tree and itself (an explicit 4D additive mask, which transformers
   passes to the attention unchanged), and its position id is its depth (its index in its own request's input), so
   it computes exactly what it computes in that request alone. Packs of similar length are batched along dim 0,
   right-padded, up to ``max_batch_tokens`` positions per forward. There are no per-level forwards and no KV-cache
   gathering: typically one forward per call below the root.
3. **Logits only where scored.** The decoder returns hidden states; the output head (``lm_head``) runs only on the
   scored positions, upcast to float32 before the log-softmax, so bf16 on CUDA loses nothing there.

Results equal the unshared computation up to float rounding (|Δ logprob| ≤ 1e-4 in fp32, tested in
tests/test_prefix_scorer.py, with the sdpa and eager attention); ``is_greedy`` compares the argmax of the same logits.
LoRA adapters work unchanged (PEFT injects them into the linear layers of the base model, which is what runs; the
caller activates one). Needs a decoder whose layers all use full causal attention with position ids (Llama and kin):
models with sliding-window or recurrent layers, or a head that rescales logits, are refused with an error (the HF
backend's unshared path, ``prefix_sharing=False``, serves them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

from alignkit.inference.base import LoglikResult


@dataclass
class ScoreStats:
    """Token accounting of one or more scoring calls (cumulative)."""

    requests: int = 0
    forward_calls: int = 0
    tokens_computed: int = 0  # real (non-pad) positions run through the model
    tokens_padded: int = 0  # pad positions run beside them
    tokens_unshared: int = 0  # positions scoring every request on its own would run (sum of input lengths)
    root_reused: int = 0  # calls whose root segment came (at least in part) from the previous call's cache

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Req:
    index: int  # position in the caller's request list
    tokens: list[int]  # model input: (context + continuation)[-(max_length + 1):][:-1]
    targets: list[int]  # continuation tokens; predicted by the logits at positions start .. len(tokens) - 1
    start: int


@dataclass
class _Pack:
    """One packed sequence below the root: ``tokens[i]`` has position id ``positions[i]``; ``paths`` holds each
    request with the pack indices of its positions root_len .. len(tokens) - 1 and how many of them an earlier
    request of the pack added."""

    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    paths: list[tuple[_Req, list[int], int]] = field(default_factory=list)


def prepare(pairs: Sequence[tuple[list[int], list[int]]], max_length: int) -> list[_Req]:
    """Truncate like the unshared path and check that every continuation fits."""
    reqs = []
    for i, (ctx, cont) in enumerate(pairs):
        if not ctx:
            raise ValueError(f"request {i}: the context encodes to no tokens (a whitespace-only context?); "
                             "pass an empty string to condition on BOS")
        if len(cont) > max_length:
            raise ValueError(f"request {i}: the continuation has {len(cont)} tokens, more than max_length "
                             f"{max_length}; nothing would be left to condition on")
        full = (list(ctx) + list(cont))[-(max_length + 1):]
        tokens = full[:-1]
        reqs.append(_Req(i, tokens, list(cont), len(tokens) - len(cont)))
    return reqs


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def count_unique_positions(token_lists: Sequence[Sequence[int]]) -> int:
    """Distinct non-empty prefixes among the inputs = the fewest positions any prefix-sharing scorer can compute."""
    seqs = sorted({tuple(t) for t in token_lists})
    return sum(len(s) - _lcp(p, s) for p, s in zip([()] + seqs[:-1], seqs))


def plan(reqs: list[_Req], max_pack_tokens: int) -> tuple[int, list[_Pack]]:
    """The root length and the packs of ``reqs`` (non-empty; each with a non-empty continuation)."""
    reqs = sorted(reqs, key=lambda r: r.tokens)
    # sorted order: a request's longest common prefix with any earlier one is its common prefix with its predecessor,
    # and every subtree of the prefix tree is a contiguous run
    root_len = min(_lcp(reqs[0].tokens, reqs[-1].tokens), min(r.start for r in reqs))
    shared = [root_len] + [max(root_len, _lcp(a.tokens, b.tokens)) for a, b in zip(reqs, reqs[1:])]
    packs: list[_Pack] = []
    prev_path: list[int] = []

    def add(i: int, fresh: bool) -> None:
        nonlocal prev_path
        r = reqs[i]
        s = root_len if fresh else shared[i]
        if fresh:
            packs.append(_Pack())
        pack = packs[-1]
        kept = prev_path[:s - root_len]  # the ancestors already in this pack
        path = kept + list(range(len(pack.tokens), len(pack.tokens) + len(r.tokens) - s))
        pack.tokens += r.tokens[s:]
        pack.positions += range(s, len(r.tokens))
        pack.paths.append((r, path, len(kept)))
        prev_path = path

    def cost(lo: int, hi: int, fresh: bool) -> int:
        """New pack positions for reqs[lo:hi] appended to the current pack (``fresh``: to a new pack)."""
        first = root_len if fresh else shared[lo]
        return len(reqs[lo].tokens) - first + sum(len(reqs[i].tokens) - shared[i] for i in range(lo + 1, hi))

    def place(lo: int, hi: int) -> None:
        """Place the subtree reqs[lo:hi]: whole in the current pack, else whole in a new one, else split."""
        used = len(packs[-1].tokens) if packs else None
        if used is not None and used + cost(lo, hi, False) <= budget:
            for i in range(lo, hi):
                add(i, fresh=False)
            return
        if hi - lo == 1 or cost(lo, hi, True) <= budget:
            add(lo, fresh=True)
            for i in range(lo + 1, hi):
                add(i, fresh=False)
            return
        depth = min(shared[lo + 1:hi])  # the children of this subtree start where it first branches
        cuts = [lo] + [i for i in range(lo + 1, hi) if shared[i] == depth] + [hi]
        for a, b in zip(cuts, cuts[1:]):
            place(a, b)

    # packs of about equal length (so they batch with little padding): the positions split evenly over as many packs
    # as the budget needs, with some slack for subtree boundaries
    total = cost(0, len(reqs), True)
    budget = min(max_pack_tokens, math.ceil(1.15 * total / math.ceil(total / max_pack_tokens)))
    place(0, len(reqs))
    return root_len, packs


def _check_model(config: Any) -> None:
    """Refuse models whose computation the tree mask or the bare output head would change."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    windowed = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    if kinds != {"full_attention"} or windowed:
        raise ValueError(f"the shared-prefix scorer needs full causal attention in every layer; this model has "
                         f"layer types {sorted(kinds)}, sliding_window={getattr(config, 'sliding_window', None)}; "
                         "score with prefix_sharing=False")
    for name in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if getattr(config, name, None) not in (None, 1, 1.0):
            raise ValueError(f"the shared-prefix scorer applies the bare output head, but this model's {name} = "
                             f"{getattr(config, name)} changes the logits; score with prefix_sharing=False")


class PrefixScorer:
    """Scores token-id (context, continuation) pairs with a Hugging Face causal LM, sharing prefixes.

    ``max_pack_tokens`` bounds the positions of one packed sequence (attention in a pack costs its length × (root +
    its length), most of it masked, so packs are kept short); ``max_batch_tokens`` bounds the padded positions of one
    forward (packs × longest pack); ``max_batch_kv`` bounds packs × (root + longest pack), the keys of one forward
    (the root's cache is copied for every pack). A forward always takes at least one pack."""

    def __init__(self, *, pad_id: int, max_length: int, max_batch_tokens: int = 2048, max_batch_kv: int = 32768,
                 max_pack_tokens: int = 512, keep_root: bool = True, logits_chunk: int = 1024) -> None:
        if min(max_batch_tokens, max_batch_kv, max_pack_tokens, logits_chunk) < 1:
            raise ValueError("max_batch_tokens, max_batch_kv, max_pack_tokens and logits_chunk must be >= 1")
        self.pad_id = pad_id
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_kv = max_batch_kv
        self.max_pack_tokens = max_pack_tokens
        self.keep_root = keep_root
        self.logits_chunk = logits_chunk  # scored positions per lm_head call (bounds the vocab-wide logits memory)
        self.stats = ScoreStats()
        self._root: tuple[Hashable, tuple[int, ...], list[tuple[Any, Any]]] | None = None

    def forget(self) -> None:
        """Drop the root segment kept from the last call (call when the model's weights change)."""
        self._root = None

    def score(self, model: Any, pairs: Sequence[tuple[list[int], list[int]]], *,
              root_key: Hashable = None) -> list[LoglikResult]:
        """``model`` computes with the adapter the caller activated; ``root_key`` names that (model, adapter), so a
        root segment kept from an earlier call is reused only for the same one. Call under ``torch.inference_mode``."""
        reqs = prepare(pairs, self.max_length)
        self.stats.requests += len(reqs)
        self.stats.tokens_unshared += sum(len(r.tokens) for r in reqs)
        results: list[LoglikResult | None] = [None] * len(reqs)
        scored = []
        for r in reqs:
            if r.targets:
                scored.append(r)
            else:  # an empty continuation: probability 1, trivially greedy (as the unshared path sums nothing)
                results[r.index] = LoglikResult(logprob=0.0, is_greedy=True, n_tokens=0)
        if scored:
            # a PEFT model's LoRA layers live inside its base model, which is what we call (adapter state included)
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            _check_model(base.config)
            decoder, head = base.get_decoder(), base.get_output_embeddings()
            root_len, packs = plan(scored, self.max_pack_tokens)
            root_kv = self._root_kv(decoder, tuple(scored[0].tokens[:root_len]), root_key) if root_len else None
            for group in self._batches(packs, root_len):
                self._score_packs(decoder, head, root_kv, root_len, group, results)
        return [r for r in results if r is not None]

    def _batches(self, packs: list[_Pack], root_len: int) -> list[list[_Pack]]:
        """Packs of similar length batched within the budgets; a batch also ends where padding would pass an eighth
        of its positions (pad positions cost as much as real ones)."""
        groups: list[list[_Pack]] = []
        real = 0
        for p in sorted(packs, key=lambda p: -len(p.tokens)):  # widest first: a batch's width is its first pack's
            if groups:
                rows, w = len(groups[-1]) + 1, len(groups[-1][0].tokens)
                if (rows * w <= self.max_batch_tokens and rows * (root_len + w) <= self.max_batch_kv
                        and 8 * (rows * w - real - len(p.tokens)) <= rows * w):
                    groups[-1].append(p)
                    real += len(p.tokens)
                    continue
            groups.append([p])
            real = len(p.tokens)
        return groups

    # -- execution --------------------------------------------------------------------------------------------------
    def _root_kv(self, decoder: Any, tokens: tuple[int, ...], key: Hashable) -> list[tuple[Any, Any]]:
        """The root's per-layer (keys, values) [1, heads, len, dim], from the kept root where it matches."""
        import torch

        kept = self._root
        reuse = _lcp(kept[1], tokens) if kept is not None and kept[0] == key else 0
        if reuse:
            self.stats.root_reused += 1
            past = [(k[:, :, :reuse], v[:, :, :reuse]) for k, v in kept[2]]  # views; never written
            if reuse == len(tokens):
                return past
        else:
            past = None
        n = len(tokens) - reuse
        allowed = torch.ones(1, n, n, dtype=torch.bool).tril()
        _, cache = self._forward(decoder, past, [list(tokens[reuse:])], [list(range(reuse, len(tokens)))], allowed,
                                 keep_cache=True)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        if self.keep_root:
            self._root = (key, tokens, kv)
        return kv

    def _score_packs(self, decoder: Any, head: Any, root_kv: list | None, root_len: int, packs: list[_Pack],
                     results: list) -> None:
        import torch

        width = max(len(p.tokens) for p in packs)
        allowed = torch.zeros(len(packs), width, width, dtype=torch.bool)
        rows, cols, targets, spans = [], [], [], []
        for b, pack in enumerate(packs):
            for r, path, own in pack.paths:
                # the positions this request added to the pack (path[own:]) see their ancestors on the path and
                # themselves; the positions before ``own`` were added, with the same rows, by an earlier request
                idx = torch.tensor(path)
                tri = torch.ones(len(path), len(path), dtype=torch.bool).tril()
                allowed[b][idx[own:, None], idx[None, :]] = tri[own:]
                scored = path[r.start - root_len:]
                rows += [b] * len(scored)
                cols += scored
                targets += r.targets
                spans.append((r, len(scored)))
        hidden, _ = self._forward(decoder, root_kv, [p.tokens for p in packs], [p.positions for p in packs],
                                  allowed, keep_cache=False)
        picked = hidden[torch.tensor(rows, device=hidden.device), torch.tensor(cols, device=hidden.device)]
        target = torch.tensor(targets, device=hidden.device)
        lps, hits = [], []
        for lo in range(0, len(targets), self.logits_chunk):
            logits = head(picked[lo:lo + self.logits_chunk]).float()
            t = target[lo:lo + self.logits_chunk]
            # log_softmax, not gather - logsumexp: on the CPU the latter came out ~1e-5 nats per token lower
            lps.append(torch.log_softmax(logits, dim=-1).gather(-1, t[:, None]).squeeze(-1))
            hits.append(logits.argmax(-1) == t)
        for (r, n), lp, hit in zip(spans, torch.cat(lps).split([n for _, n in spans]),
                                   torch.cat(hits).split([n for _, n in spans])):
            results[r.index] = LoglikResult(logprob=float(lp.sum().item()), is_greedy=bool(hit.all().item()),
                                            n_tokens=n)

    def _forward(self, decoder: Any, past: list | None, segs: list[list[int]], positions: list[list[int]],
                 allowed: Any, *, keep_cache: bool) -> tuple[Any, Any]:
        """Run right-padded ``segs`` after the cached ``past`` (batch 1, expanded to every row). ``allowed`` [b, w, w]
        says which new positions each new position sees (every row also sees all of ``past``). Returns the final
        hidden states [b, w, hidden] and the cache (``keep_cache``)."""
        import torch
        from transformers import DynamicCache

        embed = decoder.get_input_embeddings().weight
        device, dtype = embed.device, embed.dtype
        b, width = len(segs), max(len(s) for s in segs)
        past_len = 0 if past is None else int(past[0][0].shape[2])
        ids = torch.tensor([s + [self.pad_id] * (width - len(s)) for s in segs], device=device)
        pos = torch.tensor([p + [past_len] * (width - len(p)) for p in positions], device=device)
        see = torch.ones(b, width, past_len + width, dtype=torch.bool)
        see[:, :, past_len:] = allowed
        see[:, :, past_len:] |= torch.eye(width, dtype=torch.bool)  # a pad query sees itself: no empty softmax row
        # additive float mask: eager attention adds it to the scores; sdpa takes it as is (a bool would be wrong there)
        mask = torch.zeros(b, 1, width, past_len + width, dtype=dtype, device=device)
        mask.masked_fill_(~see[:, None].to(device), torch.finfo(dtype).min)
        cache = None
        if past is not None:  # a fresh cache over the kept tensors: update() concatenates into new tensors
            cache = DynamicCache(ddp_cache_data=[(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in past])
        elif keep_cache:
            cache = DynamicCache()
        out = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                      use_cache=cache is not None)
        real = sum(len(s) for s in segs)
        self.stats.forward_calls += 1
        self.stats.tokens_computed += real
        self.stats.tokens_padded += b * width - real
        return out.last_hidden_state, cache

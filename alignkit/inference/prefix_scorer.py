"""Shared-prefix log-likelihood scoring: every shared token prefix is run through the model once.

Multiple-choice and in-context scoring repeat long prefixes: TruthfulQA MC puts one 168-token primer before each of
817 questions, and each question before ~12 choices; a flipped-label ICL prompt is scored once per label word, and the
prompts of one query share their instructions and first exemplars. Scoring every (context, continuation) pair on its
own (lm-evaluation-harness, and alignkit's unshared path) recomputes those prefixes each time.

How it works, on token ids (the requests are encoded exactly as the unshared path encodes them):

1. **Plan.** The model inputs (context + continuation minus its last token, left-truncated to ``max_length``) form a
   radix tree: a node is a token segment shared by every request below it. A segment stops at the first scored
   position of its requests (the last context token, whose logits predict the first continuation token), so every
   scored position is computed in a request's own suffix. A node is kept only where sharing it saves at least
   ``min_shared_tokens`` token computations; otherwise its tokens go into its children's segments.
2. **Run.** Level by level, depth first: the children of a batch of nodes are run together, each row continuing its
   parent's KV cache (``transformers.DynamicCache`` rows gathered along the batch), segments right-padded, with an
   explicit attention mask (pad keys masked) and explicit position ids (a row's positions continue from its parent's
   real length, not from the padded cache length). Leaves (the requests' suffixes) are scored the same way against
   their parent's cache; only their scored positions go through ``log_softmax``.
3. **Across calls.** The root segment (e.g. the TruthfulQA primer) is kept between calls for the same model and
   adapter, so a task that scores 8 questions per call computes the primer once, not once per call.

Results equal the unshared computation up to float rounding (|Δ logprob| ≤ 1e-4 in fp32, tested in
tests/test_prefix_scorer.py); ``is_greedy`` compares the argmax of the same logits. LoRA adapters work unchanged
(they live inside the linear layers; the caller activates one through PEFT). Logits are upcast to float32 before
``log_softmax`` so bf16 on CUDA loses nothing there. Models with sliding-window or recurrent layers are not
supported (their caches are not plain per-layer key/value tensors); the HF backend's unshared path serves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Iterator, Sequence

from alignkit.inference.base import LoglikResult


@dataclass
class ScoreStats:
    """Token accounting of one or more scoring calls (cumulative)."""

    requests: int = 0
    forward_calls: int = 0
    tokens_computed: int = 0  # real (non-pad) positions run through the model
    tokens_padded: int = 0  # pad positions run beside them
    tokens_unshared: int = 0  # positions scoring every request on its own would run (sum of input lengths)
    root_reused: int = 0  # calls whose root segment came from the previous call's cache

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Req:
    index: int  # position in the caller's request list
    tokens: list[int]  # model input: (context + continuation)[-(max_length + 1):][:-1]
    targets: list[int]  # continuation tokens; predicted by the logits at positions start .. len(tokens) - 1
    start: int


@dataclass
class _Node:
    lo: int  # this node's segment is tokens[lo:hi] of any request below it (they all agree there)
    hi: int
    rep: list[int]  # tokens of one request below it
    size: int = 0  # requests below it
    leaves: list[_Req] = field(default_factory=list)  # requests whose own suffix tokens[hi:] is scored here
    children: list["_Node"] = field(default_factory=list)


@dataclass
class _State:
    """KV cache rows: ``kv`` per layer (keys, values) [rows, heads, T, dim]; ``mask`` [rows, T] (0 = pad key);
    ``pos`` [rows] = real tokens so far (the next position id)."""

    kv: list[tuple[Any, Any]]
    mask: Any
    pos: Any


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


def build_tree(reqs: list[_Req], lo: int, min_shared_tokens: int) -> _Node:
    """The radix tree of ``reqs`` below position ``lo`` (all agree on tokens[:lo] and start at or after it)."""
    limit = min(r.start for r in reqs)
    first = reqs[0].tokens
    hi = lo
    while hi < limit and all(r.tokens[hi] == first[hi] for r in reqs):
        hi += 1
    node = _Node(lo, hi, first, size=len(reqs))
    groups: dict[int, list[_Req]] = {}
    for r in reqs:
        if r.start == hi:
            node.leaves.append(r)
        else:
            groups.setdefault(r.tokens[hi], []).append(r)
    for grp in groups.values():
        if len(grp) == 1:
            node.leaves.append(grp[0])
            continue
        child = build_tree(grp, hi, min_shared_tokens)
        if (child.size - 1) * (child.hi - child.lo) >= min_shared_tokens:
            node.children.append(child)
        else:
            # not worth a level of its own: its leaves continue from this node, its children's segments grow
            node.leaves.extend(child.leaves)
            for grand in child.children:
                grand.lo = hi
            node.children.extend(child.children)
    return node


def count_unique_positions(token_lists: Sequence[Sequence[int]]) -> int:
    """Distinct non-empty prefixes among the inputs = the fewest positions any prefix-sharing scorer can compute."""
    seqs = sorted({tuple(t) for t in token_lists})
    total, prev = 0, ()
    for s in seqs:
        common = 0
        for a, b in zip(prev, s):
            if a != b:
                break
            common += 1
        total += len(s) - common
        prev = s
    return total


class PrefixScorer:
    """Scores token-id (context, continuation) pairs with a Hugging Face causal LM, sharing prefixes.

    ``max_batch_tokens`` bounds the padded new positions of one forward (rows × segment width; the logits memory);
    ``max_batch_kv`` bounds rows × (cached + new) positions (the gathered KV cache memory). A forward always takes at
    least one row."""

    def __init__(self, *, pad_id: int, max_length: int, max_batch_tokens: int = 2048, max_batch_kv: int = 32768,
                 min_shared_tokens: int = 8, keep_root: bool = True) -> None:
        if max_batch_tokens < 1 or max_batch_kv < 1:
            raise ValueError("max_batch_tokens and max_batch_kv must be >= 1")
        self.pad_id = pad_id
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_kv = max_batch_kv
        self.min_shared_tokens = min_shared_tokens
        self.keep_root = keep_root
        self.stats = ScoreStats()
        self._root: tuple[Hashable, tuple[int, ...], _State] | None = None

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
            root = build_tree(scored, 0, self.min_shared_tokens)
            device = next(model.parameters()).device
            state = self._root_state(model, root, root_key, device) if root.hi > 0 else None
            self._process(model, state, [root], results, device)
        return [r for r in results if r is not None]

    # -- execution --------------------------------------------------------------------------------------------------
    def _root_state(self, model: Any, root: _Node, key: Hashable, device: Any) -> _State:
        tokens = tuple(root.rep[:root.hi])
        kept = self._root
        if kept is not None and kept[0] == key and len(kept[1]) <= len(tokens) and tokens[:len(kept[1])] == kept[1]:
            self.stats.root_reused += 1
            if len(kept[1]) == len(tokens):
                return kept[2]
            state, _ = self._forward(model, kept[2], [0], [list(tokens[len(kept[1]):])], device, keep_state=True)
            return state
        state, _ = self._forward(model, None, [0], [list(tokens)], device, keep_state=True)
        if self.keep_root:
            self._root = (key, tokens, state)
        return state

    def _process(self, model: Any, state: _State | None, nodes: list[_Node], results: list, device: Any) -> None:
        """Score the leaves of ``nodes`` and recurse into their children; row i of ``state`` is nodes[i]'s cache
        (``state`` None: nothing cached, positions start at 0)."""
        import torch

        past_len = 0 if state is None else int(state.mask.shape[1])
        leaves = sorted(((row, r) for row, n in enumerate(nodes) for r in n.leaves),
                        key=lambda x: -(len(x[1].tokens) - nodes[x[0]].hi))
        for chunk in self._chunks(leaves, lambda x: len(x[1].tokens) - nodes[x[0]].hi, past_len):
            segs = [r.tokens[nodes[row].hi:] for row, r in chunk]
            _, logits = self._forward(model, state, [row for row, _ in chunk], segs, device, keep_state=False)
            rows, cols, targets, spans = [], [], [], []
            for b, (row, r) in enumerate(chunk):
                first = r.start - nodes[row].hi  # the suffix offset of the first scored position
                n = len(r.targets)
                rows += [b] * n
                cols += range(first, first + n)
                targets += r.targets
                spans.append(n)
            picked = logits[torch.tensor(rows, device=device), torch.tensor(cols, device=device)].float()
            target = torch.tensor(targets, device=device)
            lp = torch.log_softmax(picked, dim=-1).gather(-1, target[:, None]).squeeze(-1)
            hit = picked.argmax(-1) == target
            for (_, r), lps, hits in zip(chunk, lp.split(spans), hit.split(spans)):
                results[r.index] = LoglikResult(logprob=float(lps.sum().item()), is_greedy=bool(hits.all().item()),
                                                n_tokens=len(r.targets))
        children = [(row, c) for row, n in enumerate(nodes) for c in n.children]
        children.sort(key=lambda x: -(x[1].hi - x[1].lo))
        for chunk in self._chunks(children, lambda x: x[1].hi - x[1].lo, past_len):
            segs = [c.rep[c.lo:c.hi] for _, c in chunk]
            new_state, _ = self._forward(model, state, [row for row, _ in chunk], segs, device, keep_state=True)
            self._process(model, new_state, [c for _, c in chunk], results, device)

    def _chunks(self, items: list, width_of: Any, past_len: int) -> Iterator[list]:
        """Consecutive runs of ``items`` (sorted by width, widest first) within the batch budgets. A run also ends
        where padding would pass a quarter of its positions: pad positions cost as much as real ones."""
        chunk: list = []
        width = real = 0
        for it in items:
            w = max(width, width_of(it))
            rows = len(chunk) + 1
            padded = rows * w - (real + width_of(it))
            if chunk and (rows * w > self.max_batch_tokens or rows * (past_len + w) > self.max_batch_kv
                          or (padded > rows * w // 4 and padded >= 16)):
                yield chunk
                chunk, w, real = [], width_of(it), 0
            chunk.append(it)
            width = w
            real += width_of(it)
        if chunk:
            yield chunk

    def _forward(self, model: Any, state: _State | None, rows: list[int], segs: list[list[int]], device: Any, *,
                 keep_state: bool) -> tuple[_State | None, Any]:
        """Run ``segs`` (row b continues ``state`` row ``rows[b]``). Returns the new cache rows when ``keep_state``
        (the logits of the last position only are computed then), else the logits of every new position."""
        import torch
        from transformers import DynamicCache

        width = max(len(s) for s in segs)
        ids = torch.tensor([s + [self.pad_id] * (width - len(s)) for s in segs], device=device)
        seg_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in segs], device=device)
        lens = seg_mask.sum(1)
        steps = torch.arange(width, device=device)[None, :]
        if state is None:
            past, mask, start = None, seg_mask, torch.zeros(len(segs), dtype=torch.long, device=device)
        else:
            idx = torch.tensor(rows, device=device)
            past = DynamicCache(ddp_cache_data=[(k.index_select(0, idx), v.index_select(0, idx))
                                                for k, v in state.kv])
            mask = torch.cat([state.mask.index_select(0, idx), seg_mask], dim=1)
            start = state.pos.index_select(0, idx)
        # positions continue from each row's real length: the padded cache length would shift a row's RoPE phases
        out = model(input_ids=ids, attention_mask=mask, position_ids=start[:, None] + steps, past_key_values=past,
                    use_cache=keep_state, logits_to_keep=1 if keep_state else 0)
        self.stats.forward_calls += 1
        n_real = int(lens.sum().item())
        self.stats.tokens_computed += n_real
        self.stats.tokens_padded += len(segs) * width - n_real
        if not keep_state:
            return None, out.logits
        cache = out.past_key_values
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        return _State(kv=kv, mask=mask, pos=start + lens), None

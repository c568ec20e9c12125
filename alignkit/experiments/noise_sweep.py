"""The noise-robustness experiment: how each method holds up under two independent kinds of label noise.

Noise (per seed, on clean fact-world pairs where every chosen answer is factual and every rejected one hallucinated):

- **order noise ε** — a seeded share ε of the pairs has chosen/rejected swapped, the hallucination flags travelling
  with their responses (:func:`alignkit.data.inject_noise`), as when annotators misorder a pair a judge labelled;
- **judge noise δ** — after that, every ``h_w``/``h_l`` flag is flipped independently with probability δ
  (:func:`alignkit.data.transforms.inject_judge_noise`, true flags kept per row), as an imperfect hallucination judge
  would. Only the methods that read the flags (F-DPO and "DPO + flip") see it; the others are trained once per
  (seed, ε) and appear unchanged in every δ panel.

Methods (equal budget: one recipe, the same steps, batch and learning rate): ``dpo``, ``cdpo@true`` / ``rdpo@true``
(ε of the loss set to the injected ε — an oracle no real user has; at ε = 0 they are plain DPO and reuse its run),
``cdpo@0.1`` / ``rdpo@0.1`` (a fixed ε), ``ipo``, ``fdpo`` (flip + margin λ) and ``dpo+flip`` (flip, λ = 0: the
F-DPO paper's ablation that separates the flip from the margin).

Held-out metrics (test items never trained or calibrated on):

(a) **preference accuracy** — share of held-out clean pairs (factual vs contradicting answer) whose implicit reward
    log π(y|x) − log π_ref(y|x) ranks the factual answer higher (ties count ½; the reference is the base, i.e. the
    adapter disabled). Log-likelihoods only. ``loglik_acc``, the policy's own log-likelihood ranking, is reported
    beside it because the base's implicit reward is 0 everywhere (accuracy ½ by definition);
(b) **hallucination rate** of greedy answers to held-out questions (reference judge);
(c) **degeneracy guards** on the same answers: mean length (words), distinct-2, share of empty and of repeated
    (looping) outputs.

Cells are means over seeds; intervals are percentile bootstraps (``scipy.stats.bootstrap``) over items, resampled
within each seed; the seed-to-seed range is reported beside them. Before any comparison a calibration on a
validation split picks the learning rate and steps (see :func:`calibrate`).

Everything lands under ``output_dir``; finished data, runs and evaluations are reused by a rerun (resumable).
"""

from __future__ import annotations

import gc
import json
import re
import shutil
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from alignkit.utils import atomic_path, atomic_write_json, atomic_write_text, stable_hash

REPO = Path(__file__).resolve().parents[2]
RESULTS_VERSION = 2
_METHOD_RE = re.compile(r"^(dpo|ipo|fdpo|dpo\+flip|(cdpo|rdpo)@(true|[0-9.]+))$")


# -- methods ------------------------------------------------------------------------------------------------------
def check_method(name: str) -> None:
    m = _METHOD_RE.match(name)
    if not m:
        raise ValueError(f"unknown method {name!r}: use dpo, ipo, fdpo, dpo+flip, cdpo@true, rdpo@true, cdpo@EPS or "
                         "rdpo@EPS (EPS a number, e.g. cdpo@0.1)")
    if m.group(3) and m.group(3) != "true":
        e = float(m.group(3))
        if not 0.0 < e < 0.5:
            raise ValueError(f"method {name!r}: the loss ε must be in (0, 0.5)")


def reads_flags(method: str) -> bool:
    """True when the method trains on the hallucination flags (so judge noise δ changes its training data)."""
    return method in ("fdpo", "dpo+flip")


def method_keys(method: str, eps: float, fdpo_lambda: float) -> dict[str, Any] | None:
    """Recipe keys of ``method`` at injected noise ``eps``; None when the method is plain DPO there (``cdpo@true``
    and ``rdpo@true`` at ε = 0), so the DPO run stands in for it. ``apply_flip`` is always explicit."""
    if method == "dpo":
        return {"loss_type": "dpo", "apply_flip": False}
    if method == "ipo":
        return {"loss_type": "ipo", "apply_flip": False}
    if method == "fdpo":
        return {"loss_type": "fdpo", "fdpo_lambda": fdpo_lambda, "apply_flip": True}
    if method == "dpo+flip":  # the F-DPO loss with λ = 0 is the DPO loss; the flip still runs
        return {"loss_type": "fdpo", "fdpo_lambda": 0.0, "apply_flip": True}
    loss, _, value = method.partition("@")
    smoothing = eps if value == "true" else float(value)
    if smoothing == 0.0:
        return None
    return {"loss_type": loss, "label_smoothing": smoothing, "apply_flip": False}


def _slug(method: str) -> str:
    return method.replace("@", "_eps").replace("+", "_")


# -- configuration --------------------------------------------------------------------------------------------------
@dataclass
class CalibrationConfig:
    learning_rates: list[float] = field(default_factory=lambda: [1e-4, 3e-4],
                                        metadata={"help": "learning rates tried for DPO at ε = 0"})
    steps: list[int] = field(default_factory=lambda: [16, 32], metadata={"help": "max_steps values tried"})
    seed: int | None = field(default=None, metadata={"help": "data/training seed of the calibration (default: the "
                                                                 "first sweep seed)"})

    def __post_init__(self) -> None:
        if not self.learning_rates or any(not (isinstance(v, (int, float)) and v > 0) for v in self.learning_rates):
            raise ValueError(f"calibration.learning_rates must be positive numbers, got {self.learning_rates}")
        if not self.steps or any(not (isinstance(v, int) and v > 0) for v in self.steps):
            raise ValueError(f"calibration.steps must be positive integers, got {self.steps}")


@dataclass
class DegeneracyConfig:
    """A run is degenerate when its held-out answers break any of these bounds (base = the untrained model)."""

    max_empty: float = field(default=0.02, metadata={"help": "largest share of empty answers"})
    max_repeated: float = field(default=0.10,
                                metadata={"help": "largest share of looping answers (a word 4-gram twice)"})
    min_distinct2_ratio: float = field(default=0.8, metadata={"help": "distinct-2 at least this × the base's"})
    length_ratio: list[float] = field(default_factory=lambda: [0.5, 2.0],
                                      metadata={"help": "mean answer length within [lo, hi] × the base's"})

    def __post_init__(self) -> None:
        if len(self.length_ratio) != 2 or not 0 < self.length_ratio[0] <= 1 <= self.length_ratio[1]:
            raise ValueError(f"degeneracy.length_ratio must be [lo <= 1, hi >= 1], got {self.length_ratio}")


@dataclass
class NoiseSweepConfig:
    output_dir: str = field(default="runs/noise-sweep", metadata={"help": "where data, runs and the report go"})
    model: str = field(default="smollm2-135m-instruct", metadata={"help": "base model (name, dir or hub id)"})
    base_recipe: str = field(default="recipes/smollm2-135m/dpo.yaml", metadata={
        "help": "one training recipe for every method; each method's loss keys go on top, then `overrides`"})
    methods: list[str] = field(default_factory=lambda: ["dpo", "cdpo@true", "cdpo@0.1", "rdpo@true", "rdpo@0.1",
                                                        "ipo", "fdpo", "dpo+flip"],
                               metadata={"help": "dpo, ipo, fdpo, dpo+flip, cdpo@true|EPS, rdpo@true|EPS"})
    eps: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.4],
                             metadata={"help": "order-noise levels: share of pairs whose chosen/rejected are swapped"})
    delta: list[float] = field(default_factory=lambda: [0.0, 0.2],
                               metadata={"help": "judge-noise levels: probability each h_w/h_l flag is flipped"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "data + training seeds (>= 3)"})
    n_train: int = field(default=128, metadata={"help": "training pairs per run"})
    n_val: int = field(default=300, metadata={"help": "validation pairs/questions (calibration only)"})
    n_test: int = field(default=500, metadata={"help": "held-out clean pairs for metric (a)"})
    n_generate: int = field(default=200, metadata={"help": "held-out questions answered for (b) and (c)"})
    n_val_generate: int = field(default=100, metadata={"help": "validation questions answered during calibration"})
    fdpo_lambda: float = field(default=10.0, metadata={"help": "F-DPO margin λ (dpo+flip uses 0)"})
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig,
                                           metadata={"help": "the lr × steps grid tried for DPO at ε = 0"})
    degeneracy: DegeneracyConfig = field(default_factory=DegeneracyConfig, metadata={"help": "degeneracy bounds"})
    overrides: dict[str, Any] = field(default_factory=dict,
                                      metadata={"help": "recipe keys applied to every run (batch, lora, ...); not "
                                                        "learning_rate/max_steps, which calibration picks"})
    backend: str = field(default="hf", metadata={"help": "eval backend: hf or vllm (vllm needs enable_lora)"})
    backend_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "eval backend options"})
    max_new_tokens: int = field(default=40, metadata={"help": "generation length of the held-out answers"})
    n_resamples: int = field(default=2000, metadata={"help": "bootstrap resamples"})
    confidence: float = field(default=0.95, metadata={"help": "interval level"})

    def __post_init__(self) -> None:
        if isinstance(self.calibration, dict):
            self.calibration = CalibrationConfig(**self.calibration)
        if isinstance(self.degeneracy, dict):
            self.degeneracy = DegeneracyConfig(**self.degeneracy)
        if not self.methods:
            raise ValueError("methods must not be empty")
        for m in self.methods:
            check_method(m)
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods listed twice: {self.methods}")
        if any("@true" in m for m in self.methods) and "dpo" not in self.methods and 0.0 in self.eps:
            raise ValueError("cdpo@true/rdpo@true at ε = 0 are plain DPO and reuse the dpo run: add dpo to methods")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and not empty, got {self.seeds}")
        if not self.eps or not self.delta:
            raise ValueError("eps and delta must not be empty (use [0.0] for no noise)")
        bad = [e for e in self.eps if not 0.0 <= e < 0.5]
        if bad:
            raise ValueError(f"eps values must be in [0, 0.5), got {bad}")
        bad = [d for d in self.delta if not 0.0 <= d < 0.5]
        if bad:
            raise ValueError(f"delta values must be in [0, 0.5), got {bad}")
        for name in ("n_train", "n_val", "n_test", "n_generate", "n_val_generate", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_generate > self.n_test or self.n_val_generate > self.n_val:
            raise ValueError("n_generate must be <= n_test and n_val_generate <= n_val (answers come from those items)")
        if self.fdpo_lambda < 0:
            raise ValueError(f"fdpo_lambda must be >= 0, got {self.fdpo_lambda}")
        picked = sorted({"learning_rate", "max_steps"} & set(self.overrides))
        if picked:
            raise ValueError(f"overrides may not set {picked}: calibration picks them (give a one-value grid in "
                             "`calibration` to fix them)")
        if self.backend not in ("vllm", "hf"):
            raise ValueError(f"backend must be vllm or hf, got {self.backend!r}")
        if not 0 < self.confidence < 1 or self.n_resamples < 100:
            raise ValueError("confidence must be in (0, 1) and n_resamples >= 100")
        if not _find(self.base_recipe).is_file():
            raise ValueError(f"base_recipe not found: {self.base_recipe}")

    @property
    def calibration_seed(self) -> int:
        return self.seeds[0] if self.calibration.seed is None else self.calibration.seed


def _find(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_file() or p.is_absolute() else REPO / p


# -- data -----------------------------------------------------------------------------------------------------------
@dataclass
class SeedData:
    """One seed's clean training pairs and its validation / test items (disjoint entities from training)."""

    seed: int
    train: list[dict]
    val: list[dict]
    test: list[dict]


def seed_data(cfg: NoiseSweepConfig, seed: int) -> SeedData:
    from alignkit.builders.factworld import build_factworld

    # rho = 0: every pair ordered and correctly flagged; all noise below is injected, and known.
    train, held = build_factworld(cfg.n_train, cfg.n_val + cfg.n_test, rho=0.0, seed=seed)
    return SeedData(seed, train, held[:cfg.n_val], held[cfg.n_val:])


def noisy_train(cfg: NoiseSweepConfig, data: SeedData, eps: float, delta: float, out: Path) -> Path:
    """Write the training file of (seed, ε, δ) with its card; an existing identical file is kept."""
    from alignkit.data import inject_noise, write_card, write_jsonl
    from alignkit.data.transforms import inject_judge_noise

    rows, idx = inject_noise(data.train, eps, data.seed)
    n_flags = 0
    if delta > 0:
        rows, n_flags = inject_judge_noise(rows, delta, data.seed)
    path = out / "data" / f"seed{data.seed}" / f"train_eps{eps:g}_delta{delta:g}.jsonl"
    key = stable_hash(rows)
    card = path.with_name(path.name[:-len(".jsonl")] + ".card.json")
    if path.is_file() and card.is_file() and json.loads(card.read_text()).get("rows_hash") == key:
        return path
    write_jsonl(path, rows)
    write_card(path, rows, builder="noise-sweep",
               config={"seed": data.seed, "eps": eps, "delta": delta, "n_train": cfg.n_train},
               extra={"noised_indices": idx, "judge_flags_flipped": n_flags, "rows_hash": key})
    return path


def heldout_pairs(items: list[dict]) -> list[tuple[Any, str, str]]:
    """(prompt, factual answer, contradicting answer) per held-out item."""
    return [(it["prompt"], it["gold"], it["reference_false"][-1]) for it in items]


# -- training -------------------------------------------------------------------------------------------------------
def train_run(recipe: dict[str, Any], run_dir: Path, reuse: list[Path] = ()) -> Path:
    """Train ``recipe`` into ``run_dir`` unless a finished run with the same recipe is there (or in one of the
    ``reuse`` folders, which is then copied). An unfinished or different run in ``run_dir`` is removed first (the
    folder belongs to the sweep), so the trainer never resumes a run with other settings."""
    from alignkit.train import train_from_config

    key = stable_hash({k: v for k, v in recipe.items() if k != "output_dir"})
    if _finished(run_dir, key):
        return run_dir
    if run_dir.exists():
        shutil.rmtree(run_dir)
    src = next((d for d in reuse if _finished(d, key)), None)
    if src is not None:  # e.g. the calibration run that was chosen is the sweep's DPO run at ε = 0
        shutil.copytree(src, run_dir, ignore=shutil.ignore_patterns("*_eval.json"))
        return run_dir
    train_from_config({**recipe, "output_dir": str(run_dir)})
    gc.collect()  # a sweep trains ~100 models in one process
    atomic_write_text(run_dir / "sweep_key", key)
    return run_dir


def _finished(run_dir: Path, key: str) -> bool:
    marker = run_dir / "sweep_key"
    return marker.is_file() and marker.read_text() == key and (run_dir / "metrics.json").is_file()


def base_training_recipe(cfg: NoiseSweepConfig) -> dict[str, Any]:
    from alignkit.train import load_recipe

    recipe = load_recipe(_find(cfg.base_recipe))
    recipe.update({"model_name_or_path": cfg.model, "max_train_samples": cfg.n_train, "report_to": "none",
                   "save_strategy": "no"})
    recipe.update(cfg.overrides)
    return recipe


# -- evaluation -----------------------------------------------------------------------------------------------------
_WORD = re.compile(r"\w+|[^\w\s]")


def degeneracy_stats(outputs: list[str]) -> dict[str, float]:
    """Mean length in words, corpus distinct-2 (unique word bigrams / all bigrams), share of empty answers and of
    looping answers (some word 4-gram occurs twice)."""
    toks = [_WORD.findall(o.lower()) for o in outputs]
    bigrams = [tuple(t[i:i + 2]) for t in toks for i in range(len(t) - 1)]

    def loops(t: list[str]) -> bool:
        grams = [tuple(t[i:i + 4]) for i in range(len(t) - 3)]
        return len(grams) != len(set(grams))

    n = max(len(outputs), 1)
    return {"mean_length": statistics.fmean(len(o.split()) for o in outputs) if outputs else 0.0,
            "distinct_2": len(set(bigrams)) / len(bigrams) if bigrams else 0.0,
            "empty": sum(1 for o in outputs if not o.strip()) / n,
            "repeated": sum(1 for t in toks if loops(t)) / n}


def degenerate_reasons(stats: dict[str, float], base: dict[str, float], bounds: DegeneracyConfig) -> list[str]:
    reasons = []
    if stats["empty"] > bounds.max_empty:
        reasons.append(f"empty {stats['empty']:.2f} > {bounds.max_empty}")
    if stats["repeated"] > bounds.max_repeated:
        reasons.append(f"repeated {stats['repeated']:.2f} > {bounds.max_repeated}")
    if stats["distinct_2"] < bounds.min_distinct2_ratio * base["distinct_2"]:
        reasons.append(f"distinct-2 {stats['distinct_2']:.2f} < {bounds.min_distinct2_ratio} × base")
    lo, hi = bounds.length_ratio
    if not lo * base["mean_length"] <= stats["mean_length"] <= hi * base["mean_length"]:
        reasons.append(f"mean length {stats['mean_length']:.1f} outside [{lo}, {hi}] × base")
    return reasons


class Evaluator:
    """Scores the base and adapters on a fixed item set with one backend; caches per-item results as JSON files."""

    def __init__(self, cfg: NoiseSweepConfig, base_path: str) -> None:
        self.cfg = cfg
        self.base_path = base_path
        self._backend: Any = None

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from alignkit.inference import get_backend

            self._backend = get_backend(self.cfg.backend, self.base_path, **self.cfg.backend_options)
        return self._backend

    def forget(self, adapter: str) -> None:
        """After an adapter is scored: the hf backend is dropped (rebuilt on the next call, seconds for a small
        model), so a hundred adapters never pile up in one peft model; a vLLM engine is kept."""
        if self.cfg.backend == "hf":
            self.close()

    def _requests(self, items: list[dict]) -> list[tuple[str, str]]:
        """(context, answer) pairs: a chat prompt rendered with the chat template, as generation sees it."""
        tok = self.backend.tokenizer
        reqs = []
        for prompt, good, bad in heldout_pairs(items):
            ctx = prompt if isinstance(prompt, str) else tok.apply_chat_template(
                prompt, tokenize=False, add_generation_prompt=True)
            reqs += [(ctx, good), (ctx, bad)]
        return reqs

    def logprobs(self, items: list[dict], adapter: str | None) -> list[list[float]]:
        """[log P(factual | prompt), log P(hallucinated | prompt)] per item, tokenised as lm-evaluation-harness does
        (:func:`alignkit.inference.encode_pair`)."""
        reqs = self._requests(items)
        if self.cfg.backend == "hf":
            return _hf_pair_logprobs(self.backend, reqs, adapter)
        res = self.backend.loglikelihood(reqs, adapter=adapter)
        return [[res[2 * i].logprob, res[2 * i + 1].logprob] for i in range(len(items))]

    def answers(self, items: list[dict], n: int, adapter: str | None) -> tuple[list[str], list[float | None]]:
        from alignkit.evals.tasks.hallucination import is_hallucinated
        from alignkit.inference.base import SamplingConfig
        from alignkit.judges import get_judge
        from alignkit.judges.base import JudgeItem

        chosen = items[:n]
        outs = [o.strip() for o in self.backend.generate([it["prompt"] for it in chosen],
                                                         SamplingConfig(max_new_tokens=self.cfg.max_new_tokens),
                                                         adapter=adapter)]
        judged = get_judge("reference").judge([
            JudgeItem(prompt=it["question"], response=o, reference_true=tuple(it["reference_true"]),
                      reference_false=tuple(it["reference_false"]), context=it["context"], id=it["id"])
            for it, o in zip(chosen, outs)])
        return outs, [is_hallucinated(j.as_dict()) for j in judged]

    def evaluate(self, path: Path, items: list[dict], n_generate: int, adapter: str | None,
                 ref: list[list[float]] | None) -> dict[str, Any]:
        """Per-item scores of one model, cached in ``path`` (keyed by items, settings and the adapter's files)."""
        from alignkit.inference import adapter_fingerprint

        key = stable_hash([[it["id"] for it in items], n_generate, self.cfg.max_new_tokens, self.cfg.backend,
                           self.cfg.backend_options, adapter_fingerprint(adapter), self.base_path])
        if path.is_file():
            doc = json.loads(path.read_text())
            if doc.get("key") == key:
                return doc
        lp = self.logprobs(items, adapter)
        outs, halluc = self.answers(items, n_generate, adapter)
        doc = {"key": key, "adapter": adapter, "logprobs": lp, "outputs": outs, "hallucinated": halluc}
        if ref is not None:
            doc.update(per_item_scores(lp, ref))
        atomic_write_json(path, doc)
        if adapter is not None:
            self.forget(adapter)
        return doc

    def close(self) -> None:
        if self._backend is not None and hasattr(self._backend, "close"):
            self._backend.close()
        self._backend = None


def _hf_pair_logprobs(backend: Any, reqs: list[tuple[str, str]], adapter: str | None) -> list[list[float]]:
    """The hf backend's ``loglikelihood`` for pairs of answers to one prompt, with the prompt computed once: the
    prompt runs alone (no vocabulary projection but for its last position), its KV cache is repeated for the two
    answers, and only the answer tokens go through the model again. The same numbers as scoring each
    (prompt, answer) in full, at roughly half the cost — the prompts (context paragraph + question) are most of the
    tokens. Uses the backend's adapter switch, so the reference is the base with the adapter disabled."""
    import torch

    from alignkit.inference import encode_pair

    tok, model, bs = backend.tokenizer, backend.model, backend.batch_size
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    items = []
    for i in range(0, len(reqs), 2):
        (ctx_a, ans_a), (ctx_b, ans_b) = encode_pair(tok, *reqs[i]), encode_pair(tok, *reqs[i + 1])
        if ctx_a != ctx_b:  # the two requests of an item share the context by construction
            raise ValueError("pair scoring needs one context per pair")
        items.append((ctx_a, ans_a, ans_b))
    out: list[list[float]] = []
    with backend._activate(adapter), torch.inference_mode():
        for start in range(0, len(items), bs):
            batch = items[start:start + bs]
            lp = max(len(c) for c, _, _ in batch)
            ids = torch.tensor([[pad] * (lp - len(c)) + c for c, _, _ in batch])
            mask = torch.tensor([[0] * (lp - len(c)) + [1] * len(c) for c, _, _ in batch])
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            first = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
            cache = first.past_key_values
            cache.batch_repeat_interleave(2)  # rows: item0-factual, item0-hallucinated, item1-factual, ...
            answers = [a for _, fa, ha in batch for a in (fa, ha)]
            la = max(len(a) for a in answers)
            a_ids = torch.tensor([a + [pad] * (la - len(a)) for a in answers])
            a_mask = torch.tensor([[1] * len(a) + [0] * (la - len(a)) for a in answers])
            full_mask = torch.cat([mask.repeat_interleave(2, dim=0), a_mask], dim=1)
            a_pos = mask.sum(-1).repeat_interleave(2)[:, None] + torch.arange(la)[None, :]
            second = model(input_ids=a_ids, attention_mask=full_mask, position_ids=a_pos, past_key_values=cache)
            # the prompt's last position predicts answer token 0; answer position j predicts token j + 1
            logits = torch.cat([first.logits[:, -1:].float().repeat_interleave(2, dim=0),
                                second.logits[:, :-1].float()], dim=1)
            logp = torch.log_softmax(logits, dim=-1).gather(-1, a_ids[..., None]).squeeze(-1)
            sums = (logp * a_mask).sum(-1).tolist()
            out += [[sums[2 * k], sums[2 * k + 1]] for k in range(len(batch))]
    return out


def per_item_scores(policy: list[list[float]], ref: list[list[float]]) -> dict[str, list[float]]:
    """reward_correct: 1 / ½ / 0 as the implicit reward ranks the factual answer above / level with / below the
    hallucinated one; loglik_correct: the same for the policy's own log-likelihoods."""
    def rank(a: float, b: float) -> float:
        return 1.0 if a > b else 0.5 if a == b else 0.0

    return {"reward_correct": [rank(p[0] - r[0], p[1] - r[1]) for p, r in zip(policy, ref)],
            "loglik_correct": [rank(p[0], p[1]) for p in policy]}


# -- statistics -----------------------------------------------------------------------------------------------------
def seeds_bootstrap(per_seed: list[list[float]], *, n_resamples: int, confidence: float, seed: int = 0,
                    ) -> dict[str, Any]:
    """Mean over seeds of the per-seed item means, its percentile-bootstrap interval with items resampled within
    each seed (scipy.stats.bootstrap, independent samples), and the range of the per-seed means."""
    import numpy as np
    from scipy.stats import bootstrap

    samples = [np.asarray(s, dtype=float) for s in per_seed if len(s)]
    if not samples:
        return {"mean": None, "low": None, "high": None, "seed_min": None, "seed_max": None, "n_seeds": 0, "n": 0}
    means = [float(s.mean()) for s in samples]
    mean = statistics.fmean(means)
    if all(len(s) > 1 and float(s.min()) == float(s.max()) for s in samples) or any(len(s) < 2 for s in samples):
        low = high = mean  # no item variation (scipy refuses a degenerate sample)
    else:
        def stat(*xs: Any, axis: int = -1) -> Any:
            return np.mean([x.mean(axis=axis) for x in xs], axis=0)

        res = bootstrap(tuple(samples), stat, n_resamples=n_resamples, confidence_level=confidence,
                        method="percentile", vectorized=True, paired=False, random_state=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"mean": mean, "low": low, "high": high, "seed_min": min(means), "seed_max": max(means),
            "n_seeds": len(samples), "n": int(sum(len(s) for s in samples))}


METRICS = {  # name -> (per-item field, higher is better, label)
    "reward_acc": ("reward_correct", True, "held-out preference accuracy (implicit reward)"),
    "loglik_acc": ("loglik_correct", True, "held-out log-likelihood ranking accuracy"),
    "hallucination_rate": ("hallucinated", False, "hallucination rate of generated answers"),
}


def summarise_cell(docs: list[dict[str, Any]], cfg: NoiseSweepConfig) -> dict[str, Any]:
    """Metrics of one (method, ε, δ) cell from its per-seed evaluation docs."""
    out: dict[str, Any] = {}
    for name, (fld, _, _) in METRICS.items():
        per_seed = [[v for v in d.get(fld, []) if v is not None] for d in docs]
        out[name] = seeds_bootstrap(per_seed, n_resamples=cfg.n_resamples, confidence=cfg.confidence)
    out["judge_failures"] = sum(sum(1 for v in d["hallucinated"] if v is None) for d in docs)
    stats = [degeneracy_stats(d["outputs"]) for d in docs]
    out["degeneracy"] = {k: statistics.fmean(s[k] for s in stats) for k in stats[0]} if stats else {}
    return out


def single_interval(values: list[float], cfg: NoiseSweepConfig) -> dict[str, Any]:
    return seeds_bootstrap([values], n_resamples=cfg.n_resamples, confidence=cfg.confidence)


# -- calibration ----------------------------------------------------------------------------------------------------
def calibrate(cfg: NoiseSweepConfig, out: Path, ev: Evaluator, data: SeedData, recipe: dict[str, Any],
              progress: Callable[[str], None]) -> dict[str, Any]:
    """Train DPO at ε = 0 for every (lr, steps) of the grid on the calibration seed and score it on the
    validation split (never the test items). A setting passes when (1) its implicit-reward accuracy interval lies
    above ½ (the base's value: its implicit reward is 0 for every answer), (2) its log-likelihood ranking accuracy
    interval lies above the base's interval — checked only when the base's interval ends below 1.0, since a base
    that already ranks every validation pair right cannot be beaten there — and (3) its answers are not degenerate.
    The passing setting with the highest validation reward accuracy is chosen (ties: fewer steps, then lower lr).
    When none passes, the best non-degenerate one is used and the report says so."""
    cdir = out / "calibration"
    base = ev.evaluate(cdir / "base_eval.json", data.val, cfg.n_val_generate, None, None)
    base_ll = single_interval(per_item_scores(base["logprobs"], base["logprobs"])["loglik_correct"], cfg)
    base_deg = degeneracy_stats(base["outputs"])
    train_path = noisy_train(cfg, data, 0.0, 0.0, out)
    table = []
    for lr in cfg.calibration.learning_rates:
        for steps in cfg.calibration.steps:
            progress(f"calibration lr={lr:g} steps={steps}")
            run_dir = train_run({**recipe, **method_keys("dpo", 0.0, cfg.fdpo_lambda), "dataset_path": str(train_path),
                                 "learning_rate": lr, "max_steps": steps, "seed": data.seed},
                                cdir / f"lr{lr:g}_steps{steps}")
            doc = ev.evaluate(run_dir / "val_eval.json", data.val, cfg.n_val_generate, str(run_dir.resolve()),
                              base["logprobs"])
            ra = single_interval(doc["reward_correct"], cfg)
            la = single_interval(doc["loglik_correct"], cfg)
            deg = degeneracy_stats(doc["outputs"])
            reasons = degenerate_reasons(deg, base_deg, cfg.degeneracy)
            # the log-likelihood ranking check applies only when the base leaves room above it: a base already at
            # 1.0 (every validation pair ranked right) cannot be beaten, and requiring it would reject every setting
            checks = {"reward_above_base": ra["low"] > 0.5, "not_degenerate": not reasons}
            if base_ll["high"] < 1.0:
                checks["loglik_above_base"] = la["low"] > base_ll["high"]
            table.append({"learning_rate": lr, "max_steps": steps, "reward_acc": ra, "loglik_acc": la,
                          "degeneracy": deg, "degenerate_reasons": reasons, "checks": checks,
                          "passed": all(checks.values())})
    passing = [r for r in table if r["passed"]]
    pool = passing or [r for r in table if r["checks"]["not_degenerate"]] or table
    best = max(pool, key=lambda r: (r["reward_acc"]["mean"], -r["max_steps"], -r["learning_rate"]))
    return {"seed": data.seed, "n_val": len(data.val), "n_val_generate": cfg.n_val_generate,
            "base": {"loglik_acc": base_ll, "degeneracy": base_deg, "reward_acc": 0.5},
            "table": table, "chosen": {"learning_rate": best["learning_rate"], "max_steps": best["max_steps"]},
            "passed": bool(passing)}


# -- the sweep ------------------------------------------------------------------------------------------------------
def run_noise_sweep(cfg: NoiseSweepConfig, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from alignkit.models import resolve_model

    say = progress or (lambda msg: print(f"[noise-sweep] {msg}", flush=True))
    out = Path(cfg.output_dir)
    base_path = resolve_model(cfg.model)
    ev = Evaluator(cfg, base_path)
    recipe = base_training_recipe(cfg)
    datas = {s: seed_data(cfg, s) for s in cfg.seeds}
    cal_data = datas.get(cfg.calibration_seed) or seed_data(cfg, cfg.calibration_seed)
    try:
        calibration = calibrate(cfg, out, ev, cal_data, recipe, say)
        chosen = calibration["chosen"]
        say(f"calibration chose lr={chosen['learning_rate']:g}, steps={chosen['max_steps']} "
            f"({'passed' if calibration['passed'] else 'NO setting passed'})")
        recipe = {**recipe, **chosen}

        docs: dict[tuple[str, float, float, int], dict] = {}
        runs: list[dict[str, Any]] = []
        base_docs = {}
        plan = sweep_plan(cfg)
        for seed in cfg.seeds:
            data = datas[seed]
            sdir = out / "eval" / f"seed{seed}"
            base_docs[seed] = ev.evaluate(sdir / "base.json", data.test, cfg.n_generate, None, None)
            base_docs[seed].update(per_item_scores(base_docs[seed]["logprobs"], base_docs[seed]["logprobs"]))
            ref = base_docs[seed]["logprobs"]
            trained: dict[tuple[str, float, float], dict] = {}
            for i, (method, eps, delta) in enumerate(plan):
                keys = method_keys(method, eps, cfg.fdpo_lambda)
                if keys is None:
                    continue  # plain DPO: filled from the dpo run below
                say(f"seed {seed} ({cfg.seeds.index(seed) + 1}/{len(cfg.seeds)}), {method} ε={eps:g} δ={delta:g} "
                    f"({i + 1}/{len(plan)})")
                train_path = noisy_train(cfg, data, eps, delta, out)
                run_dir = out / "runs" / f"seed{seed}" / f"eps{eps:g}_delta{delta:g}" / _slug(method)
                train_run({**recipe, **keys, "dataset_path": str(train_path), "seed": seed}, run_dir,
                          reuse=sorted((out / "calibration").glob("lr*_steps*")))
                doc = ev.evaluate(run_dir / "test_eval.json", data.test, cfg.n_generate, str(run_dir.resolve()), ref)
                trained[(method, eps, delta)] = doc
                metrics = json.loads((run_dir / "metrics.json").read_text())
                runs.append({"seed": seed, "method": method, "eps": eps, "delta": delta, "run_dir": str(run_dir),
                             "flip_counts": metrics.get("flip_counts", {}), "global_step": metrics.get("global_step"),
                             "final_loss": metrics.get("final", {}).get("loss"),
                             "train_seconds": metrics.get("train", {}).get("train_runtime"),
                             **{k: statistics.fmean(v for v in doc[f] if v is not None) if any(
                                 v is not None for v in doc[f]) else None for k, (f, _, _) in METRICS.items()},
                             "degeneracy": degeneracy_stats(doc["outputs"])})
            for method in cfg.methods:  # every panel gets every method
                for eps in cfg.eps:
                    for delta in cfg.delta:
                        src = (method if method_keys(method, eps, cfg.fdpo_lambda) is not None else "dpo", eps,
                               delta if reads_flags(method) else cfg.delta[0])
                        docs[(method, eps, delta, seed)] = trained[src]
    finally:
        ev.close()

    summary = []
    for method in cfg.methods:
        for eps in cfg.eps:
            for delta in cfg.delta:
                cell = summarise_cell([docs[(method, eps, delta, s)] for s in cfg.seeds], cfg)
                cell.update(method=method, eps=eps, delta=delta,
                            reuses=("dpo" if method_keys(method, eps, cfg.fdpo_lambda) is None else None))
                summary.append(cell)
    base_cell = summarise_cell(list(base_docs.values()), cfg)
    base_deg = base_cell["degeneracy"]
    for cell in summary:
        cell["degenerate_reasons"] = degenerate_reasons(cell["degeneracy"], base_deg, cfg.degeneracy)
    doc = {"version": RESULTS_VERSION, "config": asdict(cfg), "calibration": calibration, "base": base_cell,
           "runs": runs, "summary": summary}
    atomic_write_json(out / "results.json", doc)
    plots = [plot_metric(doc, m, out / f"{m}_vs_noise.png") for m in METRICS]
    report = write_report(doc, plots, out / "report.md")
    return {"report": str(report), "plots": [str(p) for p in plots], "results": str(out / "results.json"),
            "summary": summary}


def sweep_plan(cfg: NoiseSweepConfig) -> list[tuple[str, float, float]]:
    """Every (method, ε, δ) that is trained: flag-blind methods once per ε (at the first δ), flag-reading ones per δ."""
    plan = []
    for eps in cfg.eps:
        for method in cfg.methods:
            for delta in (cfg.delta if reads_flags(method) else cfg.delta[:1]):
                plan.append((method, eps, delta))
    return plan


def count_runs(cfg: NoiseSweepConfig) -> dict[str, int]:
    """Training runs of a full sweep (for sizing): calibration grid + per seed the plan minus the DPO stand-ins."""
    per_seed = sum(1 for m, e, _ in sweep_plan(cfg) if method_keys(m, e, cfg.fdpo_lambda) is not None)
    return {"calibration": len(cfg.calibration.learning_rates) * len(cfg.calibration.steps),
            "per_seed": per_seed, "sweep": per_seed * len(cfg.seeds)}


# -- plots and report -----------------------------------------------------------------------------------------------
def plot_metric(doc: dict[str, Any], metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = doc["config"]
    deltas = cfg["delta"]
    fig, axes = plt.subplots(1, len(deltas), figsize=(5.2 * len(deltas), 4), sharey=True, squeeze=False)
    base = doc["base"][metric]["mean"] if metric != "reward_acc" else 0.5
    for ax, delta in zip(axes[0], deltas):
        for method in cfg["methods"]:
            pts = sorted((c["eps"], c[metric]["mean"], c[metric]["low"], c[metric]["high"])
                         for c in doc["summary"] if c["method"] == method and c["delta"] == delta
                         and c[metric]["mean"] is not None)
            if not pts:
                continue
            x, y, lo, hi = zip(*pts)
            line, = ax.plot(x, y, marker="o", label=method, linestyle="--" if not reads_flags(method) else "-")
            ax.fill_between(x, lo, hi, alpha=0.12, color=line.get_color())
        if base is not None:
            ax.axhline(base, color="grey", linewidth=1, linestyle=":", label="base model")
        ax.set_title(f"judge noise δ = {delta:g}")
        ax.set_xlabel("order noise ε (share of swapped pairs)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(METRICS[metric][2])
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{METRICS[metric][2]} vs noise (mean over {len(cfg['seeds'])} seeds, "
                 f"{int(cfg['confidence'] * 100)}% bootstrap interval shaded)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def _fmt(c: dict[str, Any]) -> str:
    if c["mean"] is None:
        return "n/a"
    return f"{c['mean']:.3f} [{c['low']:.3f}, {c['high']:.3f}]"


def write_report(doc: dict[str, Any], plots: list[Path], path: Path) -> Path:
    cfg, cal = doc["config"], doc["calibration"]
    pct = int(cfg["confidence"] * 100)
    ch = cal["chosen"]
    lines = [
        "# Noise sweep: preference accuracy and hallucination vs order noise ε and judge noise δ",
        "",
        f"Model `{cfg['model']}`, recipe `{cfg['base_recipe']}` (+ {cfg['overrides'] or 'no overrides'}), "
        f"{cfg['n_train']} training pairs per run, seeds {cfg['seeds']}. Every method gets the same budget: "
        f"lr {ch['learning_rate']:g}, {ch['max_steps']} steps (picked by calibration, below). F-DPO λ = "
        f"{cfg['fdpo_lambda']:g}; `dpo+flip` is the flip with λ = 0; `cdpo@true`/`rdpo@true` set the loss ε to the "
        "*true* injected ε (an oracle; at ε = 0 they are plain DPO and show the DPO run); `cdpo@X`/`rdpo@X` use a "
        "fixed ε = X.",
        "",
        f"Held-out test items per seed (entities never trained or calibrated on): {cfg['n_test']} clean pairs for "
        f"(a), the first {cfg['n_generate']} of them answered (greedy, ≤ {cfg['max_new_tokens']} tokens) for (b) and "
        f"(c). Cells: mean over seeds [{pct}% percentile bootstrap over items, resampled within each seed "
        "(`scipy.stats.bootstrap`)]. Judge noise changes only the training data of the flag-reading methods "
        "(`fdpo`, `dpo+flip`); the other methods' cells are the same runs in every δ table.",
        "",
        "## Calibration (validation split, DPO at ε = 0)",
        "",
        f"Seed {cal['seed']}, {cal['n_val']} validation pairs, {cal['n_val_generate']} validation answers. A setting "
        "passes when its implicit-reward accuracy interval lies above ½ (the base model's: its implicit reward is 0 "
        "for every answer), its log-likelihood ranking interval lies above the base's "
        f"({_fmt(cal['base']['loglik_acc'])}"
        + ("; not checked: the base already ranks every validation pair right, so no setting can beat it there"
           if cal["base"]["loglik_acc"]["high"] >= 1.0 else "")
        + "), and its answers are not degenerate.",
        "",
        "| lr | steps | reward acc | loglik acc | mean len | distinct-2 | empty | repeated | passed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in cal["table"]:
        d = r["degeneracy"]
        mark = "yes" if r["passed"] else "no: " + ", ".join(k for k, v in r["checks"].items() if not v)
        lines.append(f"| {r['learning_rate']:g} | {r['max_steps']} | {_fmt(r['reward_acc'])} | {_fmt(r['loglik_acc'])} "
                     f"| {d['mean_length']:.1f} | {d['distinct_2']:.2f} | {d['empty']:.2f} | {d['repeated']:.2f} "
                     f"| {mark} |")
    bd = cal["base"]["degeneracy"]
    lines += [f"| base | – | 0.5 (by definition) | {_fmt(cal['base']['loglik_acc'])} | {bd['mean_length']:.1f} | "
              f"{bd['distinct_2']:.2f} | {bd['empty']:.2f} | {bd['repeated']:.2f} | – |", ""]
    lines.append(f"Chosen: lr {ch['learning_rate']:g}, {ch['max_steps']} steps." if cal["passed"] else
                 f"**No setting passed**; the best non-degenerate one (lr {ch['learning_rate']:g}, {ch['max_steps']} "
                 "steps) is used, so the comparison below may not separate the methods.")
    lines.append("")
    for metric, (_, higher, label) in METRICS.items():
        arrow = "↑" if higher else "↓"
        base = doc["base"][metric]
        lines += [f"## {label} {arrow}", ""]
        lines.append("Base model: " + ("0.5 by definition (implicit reward 0)." if metric == "reward_acc"
                                       else f"{_fmt(base)}."))
        lines.append("")
        for delta in cfg["delta"]:
            lines += [f"**δ = {delta:g}**", "", "| method | " + " | ".join(f"ε={e:g}" for e in cfg["eps"]) + " |",
                      "|---|" + "---|" * len(cfg["eps"])]
            for method in cfg["methods"]:
                cells = []
                for eps in cfg["eps"]:
                    c = next(c for c in doc["summary"] if (c["method"], c["eps"], c["delta"]) == (method, eps, delta))
                    cells.append(_fmt(c[metric]) + (" ⚠" if c["degenerate_reasons"] else ""))
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += [f"![{metric}]({plots[list(METRICS).index(metric)].name})", ""]
    lines += ["## Degeneracy guards (held-out answers, mean over seeds)", "",
              "| method | ε | δ | mean len | distinct-2 | empty | repeated | flagged |",
              "|---|---|---|---|---|---|---|---|"]
    bd = doc["base"]["degeneracy"]
    lines.append(f"| base | – | – | {bd['mean_length']:.1f} | {bd['distinct_2']:.2f} | {bd['empty']:.2f} | "
                 f"{bd['repeated']:.2f} | – |")
    for c in doc["summary"]:
        if c["reuses"] or (not reads_flags(c["method"]) and c["delta"] != cfg["delta"][0]):
            continue  # the same runs as a row above
        d = c["degeneracy"]
        lines.append(f"| {c['method']} | {c['eps']:g} | {c['delta']:g} | {d['mean_length']:.1f} | "
                     f"{d['distinct_2']:.2f} | {d['empty']:.2f} | {d['repeated']:.2f} | "
                     f"{'; '.join(c['degenerate_reasons']) or 'no'} |")
    fails = doc["base"]["judge_failures"] + sum(c["judge_failures"] for c in doc["summary"])
    lines += ["", f"⚠ marks a cell whose answers break a degeneracy bound ({cfg['degeneracy']}). Judge failures "
              f"(left out of the rates): {fails}. Per-run numbers, flip counts and the full configuration: "
              "`results.json`.", ""]
    return atomic_write_text(path, "\n".join(lines))

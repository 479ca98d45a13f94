"""A small MoE language model trained here, once, so the routing views have learned routing.

No trained MoE can be downloaded offline, and none fits in a wheel we may use, so ``%llm load
moe-demo`` trains one on first use: a Qwen3-MoE (8 experts, top-2, the default model's
tokenizer so tokens read the same) on text every Python install has, the standard library's
source: code and English prose (docstrings, comments) side by side. It is a demonstration
model: it learns the shape of Python and of docstring prose, not facts.

Why the recipe looks as it does (2 CPU cores, a ≤ 3 minute budget):

- The 49,152-token vocabulary dominates the cost (the output layer is ~10× the rest), so the
  embedding is tied and the hidden size small (64).
- The softmax runs only over the token ids the corpus uses. The other rows of the (tied)
  embedding are zero, so their logits are exactly 0 at every position; one extra column with
  logit ``log(number of unused ids)`` stands for all of them in the partition function. The
  training loss is therefore exactly the full-vocabulary loss of the saved model.
- A load-balancing loss (Switch Transformer's, as transformers computes it for Qwen3-MoE)
  keeps all experts in use.

The result is cached beside the default model's conversion (same cache dir), keyed by a hash
of the recipe, the Python version (the corpus is its standard library) and the tokenizer,
with the same checksum manifest; a fixed seed makes the build reproducible.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from llmlab.errors import LabError

if TYPE_CHECKING:
    import torch

DEMO_SPEC = "moe-demo"
CARD_FILE = "llmlab-demo.json"

# The text whose routing the training view redraws, and the notebook's comparison inputs.
PROBE_TEXTS = {
    "code": (
        "def mean(values):\n"
        '    """Return the arithmetic mean of a list of numbers."""\n'
        "    total = 0\n"
        "    for value in values:\n"
        "        total += value\n"
        "    return total / len(values)\n"
    ),
    "prose": (
        "The module provides functions for working with files and directories. "
        "If the path does not exist, an error is raised and the caller should handle it."
    ),
    "numbers": "Version 3.11.7 was released on 2023-12-04; 42 + 17 = 59 and 1024 * 768 = 786432.",
}
PROBE_TEXT = "\n".join(PROBE_TEXTS.values())
# Held-out tokens routed at every snapshot to measure specialisation as training goes.
MEASURE_TOKENS = 2048


@dataclass(frozen=True)
class DemoRecipe:
    """Everything that determines the demo model; its hash names the cache folder."""

    hidden_size: int = 64
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    experts: int = 8
    top_k: int = 2
    expert_size: int = 128
    seq_len: int = 64
    batch: int = 8
    steps: int = 300
    lr: float = 5e-3
    warmup: int = 20
    aux_loss: float = 0.1
    seed: int = 0
    chars_per_file: int = 6000
    max_files: int = 160
    snapshot_every: int = 10

    def key(self, tokenizer_id: str) -> str:
        """Hash of the recipe, the corpus's source (this Python's stdlib) and the tokenizer."""
        blob = json.dumps(
            {"recipe": asdict(self), "python": sys.version.split()[0], "tokenizer": tokenizer_id},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def quick(self, steps: int = 6) -> DemoRecipe:
        """A few-step variant for tests: same code path, seconds instead of minutes."""
        return replace(self, steps=steps, warmup=2, max_files=12, snapshot_every=2)


# -- data ---------------------------------------------------------------------------------------


def stdlib_files(max_files: int) -> list[Path]:
    """Top-level modules of this Python's standard library, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if not p.name.startswith(("_", "test")))
    if not files:
        raise LabError(f"no standard-library sources under {root} to train the demo model on")
    # Spread the picks over the alphabet rather than taking the first modules.
    step = max(len(files) / max_files, 1)
    return [files[int(i * step)] for i in range(min(max_files, len(files)))]


def corpus(recipe: DemoRecipe, tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, held_out)`` token id streams: every 10th file is held out for the loss."""
    import torch

    train, held = [], []
    for i, path in enumerate(stdlib_files(recipe.max_files)):
        text = path.read_text(encoding="utf-8", errors="replace")[: recipe.chars_per_file]
        ids = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        (held if i % 10 == 9 else train).extend(ids)
    return torch.tensor(train), torch.tensor(held)


# -- model --------------------------------------------------------------------------------------


def demo_config(recipe: DemoRecipe, tokenizer: Any) -> Any:
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=4 * recipe.hidden_size,
        moe_intermediate_size=recipe.expert_size,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.kv_heads,
        head_dim=recipe.hidden_size // recipe.heads,
        num_experts=recipe.experts,
        num_experts_per_tok=recipe.top_k,
        norm_topk_prob=True,
        router_aux_loss_coef=recipe.aux_loss,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def untrained_model(recipe: DemoRecipe, tokenizer: Any, used_ids: torch.Tensor | None = None):
    """The model before training: the recipe's seed, and unused token rows zeroed."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng():
        torch.manual_seed(recipe.seed)
        model = AutoModelForCausalLM.from_config(demo_config(recipe, tokenizer))
    if used_ids is not None:
        unused = torch.ones(model.config.vocab_size, dtype=torch.bool)
        unused[used_ids] = False
        with torch.no_grad():
            model.get_input_embeddings().weight[unused] = 0.0
    return model


# -- training -----------------------------------------------------------------------------------


@dataclass
class TrainStep:
    """What the training reports every ``snapshot_every`` steps (and at the end)."""

    step: int
    steps: int
    loss: float  # mean training loss (full-vocabulary cross-entropy, nats/token) since last report
    aux: float  # load-balancing loss
    seconds: float
    experts: Any = None  # probe routing (moe layers, tokens, k) int16, when snapshotted
    weights: Any = None
    # First choices on a fixed held-out sample (moe layers, tokens): enough tokens for a
    # steady specialisation estimate, which the short probe is not.
    held_first: Any = None
    held_ids: Any = None  # that sample's token ids


@dataclass
class Trained:
    model: Any
    tokenizer: Any
    recipe: DemoRecipe
    losses: list[float] = field(default_factory=list)  # per step
    held_out_loss: float = float("nan")
    untrained_held_out_loss: float = float("nan")
    steps_done: int = 0
    seconds: float = 0.0
    stopped: bool = False
    n_train_tokens: int = 0
    n_files: int = 0


def default_tokenizer() -> Any:
    """The default model's tokenizer, from its converted cache (converting it if needed)."""
    from transformers import AutoTokenizer

    from llmlab.models.default import converted_dir

    return AutoTokenizer.from_pretrained(str(converted_dir()))


def train(
    recipe: DemoRecipe,
    tokenizer: Any,
    *,
    on_step: Callable[[TrainStep], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    progress: bool = True,
    on_model: Callable[[Trained], None] | None = None,
) -> Trained:
    """Train the demo model from its seed; ``on_step`` sees every report (with the probe's
    routing), ``should_stop`` ends it early with the finished steps kept, ``on_model`` gets
    the record (model, per-step losses) as soon as it exists, to follow it live."""
    with _one_thread():
        return _train(recipe, tokenizer, on_step, should_stop, progress, on_model)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Train on one intra-op thread, whatever the machine, restored afterwards.

    Reproducibility: the thread count changes the order of float reductions, and over 300
    steps that drift reached 0.49 in a weight between two builds with the same seed (one on 2
    threads, one on 1). One thread is also the faster choice for matmuls this small: on a busy
    2-core machine a step took 4-18 s with 2 threads and 0.5 s with 1.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(recipe, tokenizer, on_step, should_stop, progress, on_model) -> Trained:
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    from llmlab.models.guard import exclusive
    from llmlab.moe.recording import recording

    start = time.perf_counter()
    train_ids, held_ids = corpus(recipe, tokenizer)
    used = torch.unique(torch.cat([train_ids, held_ids, _probe_ids(tokenizer)]))
    model = untrained_model(recipe, tokenizer, used)
    vocab = model.config.vocab_size
    # Position of each used id in the reduced softmax; the last column stands for the rest.
    slot = torch.full((vocab,), -1, dtype=torch.long)
    slot[used] = torch.arange(len(used))
    rest_logit = math.log(max(vocab - len(used), 1))
    probe = _probe_ids(tokenizer)[None]

    def loss_of(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model.model(input_ids=ids, output_router_logits=True)
        hidden = out.last_hidden_state[:, :-1]  # (B, T-1, H)
        logits = hidden @ model.get_input_embeddings().weight[used].T  # (B, T-1, used)
        rest = torch.full((*logits.shape[:-1], 1), rest_logit)
        logits = torch.cat([logits, rest], dim=-1)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), slot[ids[:, 1:]].reshape(-1))
        aux = load_balancing_loss_func(out.router_logits, recipe.experts, recipe.top_k)
        return ce, aux

    def held_out_loss() -> float:
        model.eval()
        with torch.no_grad():
            windows = _windows(held_ids, min(recipe.seq_len * 2, len(held_ids)))[:16]
            value = float(loss_of(windows)[0]) if len(windows) else float("nan")
        model.train()
        return value

    measure = _windows(held_ids[:MEASURE_TOKENS], 256) if len(held_ids) >= 256 else None

    def snapshot() -> dict[str, Any]:
        model.eval()
        with recording(model) as rec, torch.no_grad():
            model(probe)
            experts, weights = rec.result()
            held = {}
            if measure is not None:
                rec.reset()
                model(measure)
                held = {"held_first": rec.result()[0][..., 0], "held_ids": measure.reshape(-1)}
        model.train()
        return {"experts": experts, "weights": weights, **held}

    weights = SimpleNamespace(model=model, name="the demo MoE")  # as the guard sees a model
    result = Trained(model, tokenizer, recipe, n_train_tokens=len(train_ids))
    result.n_files = len(stdlib_files(recipe.max_files))
    result.untrained_held_out_loss = held_out_loss()
    if on_model is not None:
        on_model(result)
    generator = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / recipe.warmup)
            * 0.5
            * (1 + math.cos(math.pi * min(s, recipe.steps) / recipe.steps))
        ),
    )
    if on_step is not None:
        on_step(TrainStep(0, recipe.steps, result.untrained_held_out_loss, 0.0, 0.0, **snapshot()))
    model.train()
    bar = tqdm(total=recipe.steps, desc="training moe-demo", disable=not progress, leave=False)
    since, aux_since = [], []
    with torch.random.fork_rng():
        torch.manual_seed(recipe.seed)
        for step in range(1, recipe.steps + 1):
            if should_stop():
                result.stopped = True
                break
            starts = torch.randint(
                0, len(train_ids) - recipe.seq_len - 1, (recipe.batch,), generator=generator
            )
            batch = torch.stack([train_ids[s : s + recipe.seq_len] for s in starts.tolist()])
            # Each step has the weights to itself: a capture on the model being trained
            # (run.loaded()) reads them between steps, never halfway through an update.
            with exclusive(weights, "MoE training step"):
                ce, aux = loss_of(batch)
                (ce + recipe.aux_loss * aux).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
            ce, aux = float(ce.detach()), float(aux.detach())
            result.losses.append(ce)
            result.steps_done = step
            since.append(ce)
            aux_since.append(aux)
            bar.update(1)
            bar.set_postfix(loss=f"{ce:.2f}")
            if on_step is not None and (step % recipe.snapshot_every == 0 or step == recipe.steps):
                on_step(
                    TrainStep(
                        step,
                        recipe.steps,
                        sum(since) / len(since),
                        sum(aux_since) / len(aux_since),
                        time.perf_counter() - start,
                        **snapshot(),
                    )
                )
                since, aux_since = [], []
    bar.close()
    model.eval()
    result.held_out_loss = held_out_loss()
    result.seconds = time.perf_counter() - start
    return result


def _probe_ids(tokenizer: Any) -> torch.Tensor:
    import torch

    return torch.tensor(tokenizer(PROBE_TEXT, add_special_tokens=False).input_ids)


def _windows(ids: torch.Tensor, length: int) -> torch.Tensor:
    n = len(ids) // length
    return ids[: n * length].view(n, length)


# -- the cached checkpoint ------------------------------------------------------------------------


def card(trained: Trained) -> dict[str, Any]:
    """What the model is, in numbers and words (``%llm models``, the docs, README.md)."""
    r = trained.recipe
    n_params = sum(p.numel() for p in trained.model.parameters())
    return {
        "name": DEMO_SPEC,
        "what": "a demonstration model: a tiny MoE trained for a few minutes on one machine; "
        "it shows learned routing, not knowledge",
        "family": "qwen3_moe",
        "params": n_params,
        "layers": r.layers,
        "hidden_size": r.hidden_size,
        "experts": r.experts,
        "top_k": r.top_k,
        "tokenizer": "SmolLM2-135M-Instruct's (49,152 tokens), from the default model",
        "data": f"Python {sys.version.split()[0]} standard library: the first "
        f"{r.chars_per_file:,} characters of {trained.n_files} top-level modules "
        "(code, docstrings, comments); every 10th module held out",
        "train_tokens": trained.n_train_tokens,
        "steps": trained.steps_done,
        "tokens_seen": trained.steps_done * r.batch * r.seq_len,
        "final_train_loss": round(sum(trained.losses[-20:]) / max(len(trained.losses[-20:]), 1), 3),
        "held_out_loss": round(trained.held_out_loss, 3),
        "untrained_held_out_loss": round(trained.untrained_held_out_loss, 3),
        "loss_unit": "nats per token, full vocabulary",
        "build_seconds": round(trained.seconds, 1),
        "seed": r.seed,
        "recipe": asdict(r),
    }


def card_line(info: dict[str, Any]) -> str:
    if not info:
        return "demonstration MoE trained here (its card is missing)"
    return (
        f"demonstration MoE trained here: {info['params'] / 1e6:.1f} M params, "
        f"{info['experts']} experts top-{info['top_k']}, {info['steps']} steps on the Python "
        f"stdlib (code + docstrings), held-out loss {info['held_out_loss']:.2f} nats "
        f"(untrained {info['untrained_held_out_loss']:.2f})"
    )


def demo_dir(
    recipe: DemoRecipe | None = None, *, progress: bool = True, root: Path | None = None
) -> Path:
    """The cached demo checkpoint, training it on first use (and again if damaged).
    ``root``: another cache folder than the default model's (tests)."""
    from llmlab.models.default import DEFAULT_MODEL_NAME, cache_root

    recipe = recipe or DemoRecipe()
    root = Path(root) if root is not None else cache_root()
    target = root / "models" / f"{DEMO_SPEC}-{recipe.key(DEFAULT_MODEL_NAME)}"
    if target.exists():
        problem = _verify(target)
        if problem is None:
            return target
        print(f"llmlab: the cached demo MoE in {target} {problem}; training it again")
    tokenizer = default_tokenizer()
    print(build_message(recipe.steps), flush=True)
    trained = train(recipe, tokenizer, progress=progress)
    save(trained, target)
    print(f"llmlab: trained the demo MoE in {trained.seconds:.0f} s; later loads read the cache")
    return target


#: Seconds of training measured on 2 idle cores (docs/moe.md); 162 s while 8 jobs shared them.
IDLE_TRAIN_S = 15


def build_message(steps: int) -> str:
    """What the first build costs, said before it starts: the idle figure, and the machine's
    load when it is busy (the same build took 141-162 s on a shared 2-core machine)."""
    from llmlab.models.threads import cpu_count, load_average

    load = load_average()
    busy = load is not None and load > cpu_count()
    when = (
        f"about {IDLE_TRAIN_S} s on an idle core; this machine is busy (load average "
        f"{load:.1f} on {cpu_count()} CPUs), so it may take a few minutes"
        if busy
        else f"about {IDLE_TRAIN_S} s of training on an idle core, minutes on a busy machine"
    )
    return (
        f"llmlab: training the demo MoE once ({steps} steps on one thread: {when}; then cached "
        "beside the default model)"
    )


def save(trained: Trained, target: Path) -> None:
    """Write a normal checkpoint (``from_pretrained`` loads it) with its card, atomically."""
    from llmlab.files import write_text

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".training-", dir=target.parent))
    try:
        # The untrained twin of the specialisation figures is rebuilt from this seed.
        trained.model.config.llmlab_init_seed = trained.recipe.seed
        # No "Writing model shards" bar: saved in a notebook, a bar stays behind as a snapshot.
        from llmlab.models.default import _no_progress_bars

        with _no_progress_bars():
            trained.model.save_pretrained(tmp)
            trained.tokenizer.save_pretrained(tmp)
        info = card(trained)
        write_text(tmp / CARD_FILE, json.dumps(info, indent=1))
        write_text(tmp / "README.md", _readme(info))
        _write_manifest(tmp)
        shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if _verify(target) is not None:  # another process finished first: keep its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_card(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(folder) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _readme(info: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in info.items() if k != "recipe")
    return (
        f"# {info['name']}\n\n{info['what']}.\n\n| | |\n|---|---|\n{rows}\n\n"
        f"Recipe: `{json.dumps(info['recipe'])}`\n"
    )


def _write_manifest(folder: Path) -> None:
    # The default model's cache has a checksum manifest; use the same one where it exists.
    from llmlab.models import default

    if hasattr(default, "write_manifest"):
        default.write_manifest(folder)


def _verify(folder: Path) -> str | None:
    from llmlab.models import default

    if hasattr(default, "verify"):
        return default.verify(folder)
    ok = (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    return None if ok else "is incomplete"

"""Run ``model.generate`` with streaming, honest timing and best-of-N scoring.

We keep transformers' own decoding loop (it owns caches, sampling and assisted decoding) and
only listen to it through a streamer that timestamps every token as it arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmlab.devices import PeakMemory, format_bytes, synchronize
from llmlab.errors import LabError
from llmlab.generation.result import Candidate, GenerationResult, GenerationStats
from llmlab.generation.settings import GenerationSettings
from llmlab.models.threads import torch_threads

if TYPE_CHECKING:
    import torch

    from llmlab.models.loaded import LoadedModel

Messages = list[dict[str, str]]
#: Called for every new token of a single-sequence run: (new token ids so far, seconds since start).
TokenCallback = Callable[[list[int], float], None]


def encode_prompt(lm: LoadedModel, prompt: str | Messages, *, raw: bool = False) -> torch.Tensor:
    """Token ids of a prompt, shape ``(1, n)``.

    A string goes through the model's chat template as one user turn (instruct models answer
    best that way) unless ``raw`` is set or the tokenizer has no template; a list of messages
    always uses the template.
    """
    tok = lm.tokenizer
    check_text(prompt)
    if isinstance(prompt, str) and not prompt.strip():
        raise LabError("the prompt is empty")
    if isinstance(prompt, list) or (not raw and lm.has_chat_template):
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        if not lm.has_chat_template:
            raise LabError(f"{lm.name} has no chat template; use generate --raw instead of chat")
        encoded = tok.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        ids = encoded["input_ids"]
    else:
        ids = tok(prompt, return_tensors="pt").input_ids
    if ids.shape[1] >= lm.context_length:
        raise LabError(
            f"the prompt is {ids.shape[1]} tokens but {lm.name}'s context is "
            f"{lm.context_length}; shorten it"
        )
    return ids.to(lm.device)


def check_text(prompt: Any, what: str = "prompt") -> None:
    """Refuse what no tokenizer can read, in one line: not text, or text with a lone surrogate
    (half of a UTF-16 pair; the tokenizer would fail with a TypeError about its input types)."""
    if isinstance(prompt, list):
        for message in prompt:
            check_text(message.get("content", "") if isinstance(message, dict) else message, what)
        return
    if not isinstance(prompt, str):
        raise LabError(f"the {what} must be text, got {type(prompt).__name__}")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as err:
        raise LabError(
            f"the {what} holds {prompt[err.start]!r} at character {err.start}: half of a UTF-16 "
            "surrogate pair, not a character; remove it"
        ) from None


class _TokenClock:
    """A transformers streamer that timestamps tokens; generate() calls put() per step."""

    def __init__(self, batch: int, start: float, on_token: TokenCallback | None):
        self.batch, self.start, self.on_token = batch, start, on_token
        self.times: list[float] = []
        self.steps: list[list[int]] = []  # per step: the new token(s), batch-major
        self._seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self._seen_prompt:  # the first put() is the prompt itself
            self._seen_prompt = True
            return
        now = time.perf_counter() - self.start
        flat = value.reshape(-1).tolist()
        if self.batch == 1:
            # Assisted decoding delivers several accepted tokens in one put().
            for token in flat:
                self.steps.append([token])
                self.times.append(now)
            if self.on_token is not None:
                self.on_token([s[0] for s in self.steps], now)
        else:
            self.steps.append(flat)
            self.times.append(now)

    def end(self) -> None:
        pass

    def sequences(self) -> list[list[int]]:
        return [[step[b] for step in self.steps] for b in range(self.batch)]


def generate(
    lm: LoadedModel,
    prompt: str | Messages,
    settings: GenerationSettings | None = None,
    *,
    raw: bool = False,
    on_token: TokenCallback | None = None,
    generate_kwargs: dict[str, Any] | None = None,
) -> GenerationResult:
    """Generate from ``lm`` and measure it. Ctrl-C stops early and keeps the partial text."""
    import torch

    lm.check_can_generate()
    settings = settings or GenerationSettings()
    input_ids = encode_prompt(lm, prompt, raw=raw)
    n_prompt = input_ids.shape[1]
    max_new = min(settings.max_new_tokens, lm.context_length - n_prompt)
    kwargs = settings.generate_kwargs() | {"max_new_tokens": max_new}
    kwargs["pad_token_id"] = lm.tokenizer.pad_token_id
    scoring = settings.n_candidates > 1
    if scoring:  # N sequences at once: refuse, before allocating, what cannot fit
        from llmlab import memory

        estimate = memory.generation(
            lm.config,
            n_prompt + max_new,
            max_new,
            settings.n_candidates,
            bytes_per_value=lm.model.dtype.itemsize,
            keep_logits=True,
        )
        memory.guard(estimate, lm.device)
    if scoring:
        kwargs.update(output_logits=True, return_dict_in_generate=True)
    kwargs.update(generate_kwargs or {})

    # Timed only once the model is ours: a background sweep or capture on it finishes first.
    with lm.exclusive("generation"):
        if settings.seed is not None:
            torch.manual_seed(settings.seed)
        # This call's own peak (CUDA's counter, or RSS sampled while it runs): the OS's
        # lifetime peak RSS would report a sweep's peak in every later footer.
        with PeakMemory(lm.device) as memory_use:
            synchronize(lm.device)
            start = time.perf_counter()
            clock = _TokenClock(settings.n_candidates, start, on_token)
            stopped = None
            try:
                with torch.inference_mode():
                    out = lm.model.generate(
                        input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        streamer=clock,
                        **kwargs,
                    )
            except KeyboardInterrupt:
                out, stopped = None, "interrupted"
            synchronize(lm.device)
            total = time.perf_counter() - start

    if out is None:
        sequences, logits = clock.sequences(), None
    else:
        seqs = out.sequences if scoring else out
        # A decoder-only model returns prompt + answer; an encoder-decoder one its decoder
        # start token + answer.
        sequences = seqs[:, 1 if lm.is_encoder_decoder else n_prompt :].tolist()
        logits = torch.stack(out.logits, dim=1) if scoring else None  # (batch, steps, vocab)

    candidates = [_candidate(lm, ids, logits, b) for b, ids in enumerate(sequences)]
    chosen = 0
    if settings.best_of > 1 and stopped is None:
        chosen = max(range(len(candidates)), key=lambda i: candidates[i].mean_logprob)
    best = candidates[chosen]
    if stopped is None:
        eos = set(_eos_ids(lm))
        stopped = "eos" if best.token_ids and best.token_ids[-1] in eos else "length"
    memory = memory_use.reading
    stats = GenerationStats(
        prompt_tokens=n_prompt,
        new_tokens=len(best.token_ids),
        ttft_s=clock.times[0] if clock.times else None,
        total_s=total,
        token_times_s=clock.times,
        peak_memory_bytes=memory.peak_bytes,
        peak_memory_kind=memory.kind,
        device=lm.device,
        dtype=lm.dtype,
        stopped=stopped,
        threads=torch_threads() if lm.device.startswith("cpu") else None,
    )
    if memory.reserved_bytes is not None:
        stats.extra["peak reserved"] = format_bytes(memory.reserved_bytes)
    text_prompt = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    return GenerationResult(
        model=lm.name,
        prompt=text_prompt,
        text=best.text,
        token_ids=best.token_ids,
        stats=stats,
        settings=settings,
        candidates=candidates if len(candidates) > 1 else [],
        chosen=chosen,
    )


def _eos_ids(lm: LoadedModel) -> list[int]:
    eos = lm.model.generation_config.eos_token_id
    if eos is None:
        eos = lm.tokenizer.eos_token_id
    return eos if isinstance(eos, list) else [eos]


def _candidate(lm: LoadedModel, ids: list[int], logits: Any, row: int) -> Candidate:
    """Cut one sequence at its end-of-sequence token and score it if logits are at hand."""
    eos = set(_eos_ids(lm))
    end = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
    ids = ids[:end]
    score = None
    if logits is not None and ids:
        import torch

        logprobs = torch.log_softmax(logits[row, :end].float(), dim=-1)
        chosen = logprobs.gather(-1, torch.tensor(ids, device=logprobs.device)[:, None])
        score = float(chosen.mean())
    return Candidate(lm.tokenizer.decode(ids, skip_special_tokens=True), ids, score)


def prompt_with_answer(
    lm: LoadedModel,
    text: str,
    *,
    chat: bool = False,
    generate_tokens: int = 0,
    check: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, int]:
    """The ids of ``text`` (chat template unless ``chat`` is False), shape (1, n), and how many
    are the prompt; with ``generate_tokens=N`` the model's greedy answer (N new tokens at
    most) is appended, so a view over internals (attention, lens) covers prompt + answer.

    Refused before generating: more tokens than the model's context leaves after the prompt,
    and whatever ``check(prompt + answer tokens)`` refuses (a view's memory estimate)."""
    import torch

    from llmlab.generation.settings import GenerationSettings

    ids = encode_prompt(lm, text, raw=not chat)
    n_prompt = int(ids.shape[1])
    room = lm.context_length - n_prompt
    if generate_tokens > room:
        raise LabError(
            f"--generate {generate_tokens:,} is more than the context leaves: {lm.name} reads "
            f"{lm.context_length:,} tokens and the text takes {n_prompt:,}; give at most "
            f"{max(room, 0):,}"
        )
    if check is not None:
        check(n_prompt + generate_tokens)
    if generate_tokens:
        settings = GenerationSettings(max_new_tokens=generate_tokens)
        result = generate(lm, text, settings, raw=not chat)
        new = torch.tensor([result.token_ids], dtype=ids.dtype, device=ids.device)
        ids = torch.cat([ids, new], dim=1)
    return ids, n_prompt

"""%llm generate / chat / next."""

from __future__ import annotations

from IPython.display import display
from llmlab.magics.registry import Context, arg, command
from llmlab.magics.streaming import stream
from llmlab.magics.text import TEXT_ARGS, text_of

from llmlab.errors import LabError
from llmlab.generation.settings import GenerationSettings

#: Chat answers get a smaller budget: the 135M default model can loop on a phrase until the
#: limit, and a chat turn is meant to be short.
CHAT_MAX_NEW_TOKENS = 64


def _max_new_tokens(default: int):
    return arg("--max-new-tokens", type=int, default=default, help="stop after this many tokens")


SAMPLING_ARGS = [
    _max_new_tokens(128),
    arg("--temperature", type=float, help="sample at this temperature (0 or unset: greedy)"),
    arg("--top-k", type=int, help="sample among the k most likely tokens"),
    arg("--top-p", type=float, help="sample among the smallest set with this total probability"),
    arg("--seed", type=int, help="seed the sampler for a repeatable draw"),
    arg("--num-return-sequences", type=int, default=1, help="sample several answers"),
    arg("--best-of", type=int, default=1, help="sample N, keep the highest mean log-prob"),
    arg("--model", help="use this loaded model instead of the active one"),
    arg("--accel", help="accelerations, e.g. spec=prompt-lookup,quant=int8 (see %%llm accel list)"),
]


def _decoder(lm):
    return lambda ids: lm.tokenizer.decode(ids, skip_special_tokens=True)


def _with_preset_named(accel: str | None, run):
    """Run; if ``--accel`` named a preset ("fast"), say what it stood for in any refusal, so
    the message speaks of the word the user typed."""
    from llmlab.accel.registry import PRESETS, parse_config

    def wrapped(on_token):
        try:
            return run(on_token)
        except LabError as err:
            if accel and accel.strip() in PRESETS:
                try:
                    meant = parse_config(accel.strip()).label
                except LabError:
                    raise err from None
                raise LabError(f"--accel {accel.strip()} (here: {meant}): {err}") from None
            raise

    return wrapped


def settings_of(args) -> GenerationSettings:
    return GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        num_return_sequences=args.num_return_sequences,
        best_of=args.best_of,
    )


@command(
    "generate",
    "generate from a prompt, streaming the answer; returns a GenerationResult",
    *SAMPLING_ARGS,
    arg("--raw", action="store_true", help="send the text as is (no chat template)"),
    arg("--system", help="a system prompt before the prompt (pair with --accel prefix)"),
    arg(
        "--intervene",
        metavar="SPEC",
        help="also answer with interventions (ablate=13.8, experts=-3, steer=NAME*4) and show "
        "both answers side by side",
    ),
    arg(
        "--show-drafts",
        action="store_true",
        help="with speculative decoding (--accel spec=...): show which drafted tokens were "
        "accepted, rejected and replaced, and acceptance by draft position",
    ),
    *TEXT_ARGS,
    body="the prompt",
)
def generate(ctx: Context, args):
    if args.intervene:
        if args.accel or args.system or args.show_drafts:
            raise LabError("--intervene runs plain generation twice: drop --accel/--system")
        result = ctx.lab.generate_intervened(
            text_of(ctx, args), args.intervene, settings_of(args), model=args.model, raw=args.raw
        )
        display(result)
        result._shown_live = True
        return result
    result = _generate(ctx, args)
    if args.show_drafts:
        if result.drafts is None:
            print(
                "--show-drafts: nothing was drafted in this generation (no speculative "
                "decoding); add e.g. --accel spec=prompt-lookup"
            )
        else:
            display(result.drafts)
    return result


def _generate(ctx: Context, args):
    prompt = text_of(ctx, args)
    settings = settings_of(args)
    lm = ctx.lab.model(args.model)
    return stream(
        ctx,
        _with_preset_named(
            args.accel,
            lambda on_token: ctx.lab.generate(
                prompt,
                settings,
                model=lm.name,
                raw=args.raw,
                on_token=on_token,
                accel=args.accel,
                system=args.system,
            ),
        ),
        _decoder(lm),
    )


@command(
    "chat",
    "one chat turn (chat template, history kept per model; a new chat starts from the last "
    "generate exchange, so you can ask about it)",
    _max_new_tokens(CHAT_MAX_NEW_TOKENS),
    *SAMPLING_ARGS[1:],
    arg("--reset", action="store_true", help="forget this model's chat history first"),
    arg("--history", action="store_true", help="print the history and stop"),
    *TEXT_ARGS,
    body="your message",
)
def chat(ctx: Context, args):
    lm = ctx.lab.model(args.model)
    if args.reset:
        ctx.lab.reset_chat(lm.name)
        if not args.text and not (ctx.body or "").strip():
            print(f"chat history of {lm.name} cleared")
            return None
    if args.history:
        for turn in ctx.lab.histories.get(lm.name, []):
            print(f"{turn['role']}: {turn['content']}")
        return None
    message = text_of(ctx, args, "message")
    settings = settings_of(args)
    return stream(
        ctx,
        _with_preset_named(
            args.accel,
            lambda on_token: ctx.lab.chat(
                message, settings, model=lm.name, on_token=on_token, accel=args.accel
            ),
        ),
        _decoder(lm),
    )


@command(
    "next",
    "show the next-token distribution and how temperature / top-k / top-p reshape it",
    arg("--temperature", type=float, default=1.0, help="initial temperature of the view"),
    arg("--top-k", type=int, help="initial top-k cut"),
    arg("--top-p", type=float, help="initial top-p cut"),
    arg("--show", type=int, default=20, help="how many tokens to draw"),
    arg("--chat", action="store_true", help="wrap the text in the chat template first"),
    arg("--model", help="use this loaded model instead of the active one"),
    *TEXT_ARGS,
    body="the prompt",
)
def next_token(ctx: Context, args):
    # Validate the cut settings the same way generation does.
    GenerationSettings(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    result = ctx.lab.next_token(
        text_of(ctx, args),
        model=args.model,
        raw=not args.chat,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        shown=args.show,
    )
    display(result)
    result._shown_live = True
    return result

"""The demonstration MoE now lives with the other model builders, in
:mod:`llmlab.models.moe_demo` (``%llm load moe-demo`` trains it on first use); its names stay
importable from here."""

from llmlab.models.moe_demo import (  # noqa: F401
    CARD_FILE,
    DEMO_SPEC,
    MEASURE_TOKENS,
    PROBE_TEXT,
    PROBE_TEXTS,
    DemoRecipe,
    Trained,
    TrainStep,
    card,
    card_line,
    corpus,
    default_tokenizer,
    demo_config,
    demo_dir,
    read_card,
    save,
    stdlib_files,
    train,
    untrained_model,
)

"""The demonstration MoE lives with the other model builders, in :mod:`llmlab.models.moe_demo`
(``%llm load moe-demo`` trains it on first use, so the model registry needs it below every
feature). ``llmlab.moe.demo`` is that same module: names, private ones and monkeypatching
included."""

import sys

from llmlab.models import moe_demo

sys.modules[__name__] = moe_demo

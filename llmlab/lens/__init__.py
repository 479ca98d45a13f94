"""Logit lens: every layer's residual stream read through the model's final norm and
unembedding, as a layer × token grid, and where two variants' readings part.

::

    from llmlab.lens import lens, compare
    r = lens(lm, "The Eiffel Tower is in the city of")
    r.layer_table()                   # per layer: entropy, KL to final, top-1 = final
    r.top(row=10, position=-1)        # what layer 10 predicts after the last token
    diff = compare(lm, "int8", "...")  # KL(A‖B) and top-1 agreement per layer
"""

from llmlab.lens.adapters import LensReader, lens_reader
from llmlab.lens.engine import compare, lens
from llmlab.lens.result import LensComparison, LensResult

__all__ = ["LensComparison", "LensReader", "LensResult", "compare", "lens", "lens_reader"]

"""One colour per model, the same in every plot, overlay and table of a report or leaderboard.

Okabe & Ito's palette (2008), chosen to stay distinguishable under the common colour-vision
deficiencies. Reference lines (``empty``, ``full``, oracles: ``AdapterInfo.reference``) get greys, so a
model's colour is never spent on a baseline and the eye goes to the models. The ground truth is drawn
in its own colour, apart from both.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

# Okabe-Ito without its black (kept for text) and yellow (unreadable as a thin line on white) first.
MODEL_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
REFERENCE_PALETTE = ("#7F7F7F", "#A6A6A6", "#595959", "#BFBFBF")
GROUND_TRUTH = "#FFFFFF"  # drawn dashed over a dark halo, so it reads on any image


def model_colours(models: Sequence[str], reference: Collection[str] = ()) -> dict[str, str]:
    """``{model: "#rrggbb"}`` in the order given: models take the palette in turn (cycling past eight),
    reference lines the greys. The same models in the same order get the same colours everywhere."""
    out: dict[str, str] = {}
    n_model = n_ref = 0
    for m in models:
        if m in reference:
            out[m] = REFERENCE_PALETTE[n_ref % len(REFERENCE_PALETTE)]
            n_ref += 1
        else:
            out[m] = MODEL_PALETTE[n_model % len(MODEL_PALETTE)]
            n_model += 1
    return out

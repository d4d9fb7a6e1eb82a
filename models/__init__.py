"""The scoring models: rule-based grades and stages, the LightGBM conversion model, SHAP explanations."""

import os

# LightGBM's OpenMP threads spin at every barrier by default: on a 2-core machine shared with other work one round
# then waits for a descheduled thread (100 rounds on 316k training rows: 123 s spinning, 8.9 s passive, 7.3 s on one
# thread). Set here, before anything in this package loads LightGBM; an OMP_WAIT_POLICY already set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

"""`archspec search`: multi-objective architecture search over a declared design space, with
Optuna as the engine (docs/search.md).

space.py    the search file (schema, located errors) and a point of the space -> ModelSpec (pure)
metrics.py  the metrics, cheapest kind first, and the cheap ones (pure)
evaluate.py the metrics of one candidate: timing and proxy training import torch on first use
store.py    the output directory, the Optuna storage, the claim lock
study.py    samplers, workers, starting / resuming / joining a search
results.py  trials.csv, front.json, front/ specs (read.py: what a trial says); figure.py pareto.png
"""

"""The study: the runner (runner.py), each run's settings and the notebooks' calls (recipes.py, settings.py),
notebook 08's attacks, ROME's v_lr probe, the cost plan. The top layer: it may import every other."""

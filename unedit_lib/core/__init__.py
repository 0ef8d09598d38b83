"""The base every layer stands on: paths, TOFU data, prompts, the results store, presets, the method
registry, hyperparameter bases, architecture lookup, guards. Imports nothing of the package outside core."""

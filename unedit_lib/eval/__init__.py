"""What is measured on a model: TOFU's evaluator, the edit-level metrics, the prompt cache, and the
bootstrap intervals of their numbers. Imports only core."""

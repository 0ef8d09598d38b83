"""The fine-tuning unlearning baselines GA, GD, KL, IdK and NPO: one training loop (training.py)."""

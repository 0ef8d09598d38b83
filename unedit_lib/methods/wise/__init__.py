"""WISE: the edit loop and merging (editor.py), its hyperparameters (hparams.py), the side memory beside
one MLP projection and its routing (side_memory.py)."""

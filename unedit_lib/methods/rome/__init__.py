"""ROME and R-ROME (editor.py)."""

"""IKE: the demonstration pool, its retrieval and edit() (editor.py); the demonstrations' text and the
prompt transform that is IKE's edit (context.py)."""

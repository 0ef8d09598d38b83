"""Causal tracing (causal_trace.py, imports only core) and its files (records.py, which reads the subject
models' folders). Imports only core, subject and itself."""

"""Reading the run records: tables, premise gates, the paper's findings, the README's summary, figures.
Imports core, subject, eval and tracing; never a method or the study."""

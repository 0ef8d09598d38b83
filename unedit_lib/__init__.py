"""unedit: model editing for unlearning, reproduced on TOFU. One folder per layer (core/, subject/, eval/,
methods/<method>/, tracing/, report/, study/), each importing only the layers below it (docs/guide.md, Layout)."""
import warnings

# tqdm.auto falls back to its text bar in a notebook without ipywidgets and says so on stderr; the
# text bar is what the executed notebooks are meant to show, so the warning is only noise there
warnings.filterwarnings("ignore", message="IProgress not found")

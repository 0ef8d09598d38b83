"""unedit: model editing for unlearning, reproduced on TOFU (one module per concern; see docs/guide.md)."""
import warnings

# tqdm.auto falls back to its text bar in a notebook without ipywidgets and says so on stderr; the
# text bar is what the executed notebooks are meant to show, so the warning is only noise there
warnings.filterwarnings("ignore", message="IProgress not found")

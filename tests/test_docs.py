"""The README's model table is generated from the registry; its counts are checked against
real builds in test_models.py (every name), so nothing here builds a model."""

from pathlib import Path

from helpers import make_docs, readme_counts, readme_macs
from keras_attn_zoo import list_models

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_table_is_generated_from_the_registry():
    counts, macs = readme_counts(), readme_macs()
    assert sorted(counts) == sorted(macs) == list_models()
    assert make_docs().render(README, counts, macs) == README, "run: python scripts/make_docs.py"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    commands = [line for line in README.split("\n") if line.startswith("pip install")]
    assert len(commands) >= 2 and "pytest" in commands[1]
    for backend in ("jax", "torch"):
        assert f"KERAS_BACKEND={backend} python -m pytest -m multibackend" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    # .ci/run reads the test command from README.md (the first line starting with this prefix)
    # and runs it in a virtual environment it makes afresh, outside the checkout.
    prefix = 'pip install -e ".[test]"'
    assert "grep -m1 '^pip install -e \"\\.\\[test\\]\"' README.md" in ci
    assert next(line for line in README.split("\n") if line.startswith(prefix)) == commands[1]
    assert 'rm -rf "$venv"' in ci and 'python3 -m venv "$venv"' in ci


def test_the_command_lines_model_index_is_generated_from_the_registry():
    """``keras-attn-zoo list`` / ``info`` read ``keras_attn_zoo/model_index.py`` (no Keras): it is
    ``model_info`` of every name, with the README's counts and multiply-adds (checked against
    builds in test_models)."""
    docs = make_docs()
    index = docs.model_index(readme_counts(), readme_macs())
    assert docs.MODEL_INDEX.read_text() == index, "run: python scripts/make_docs.py"

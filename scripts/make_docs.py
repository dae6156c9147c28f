"""Write the README's model table from the registry (the one source of those facts).

    python scripts/make_docs.py          # rewrite the table in README.md
    python scripts/make_docs.py --check  # exit 1 if README.md is out of date

Our parameter counts are computed by building every model (about two minutes on 2 cores).
"""

import argparse
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- models:start -->", "<!-- models:end -->"
WEIGHTS_START, WEIGHTS_END = "<!-- weights:start -->", "<!-- weights:end -->"


def weights_table():
    """Markdown table of the published weights: our measured error beside the paper's."""
    from keras_attn_zoo.training.evaluate import paper_errors
    from keras_attn_zoo.weights import published_weights

    lines = [
        "| model | weights | measured on | our top-1 error | paper's top-1 error | recipe | hardware, time |",
        "| --- | --- | --- | ---: | --- | --- | --- |",
    ]
    for record in published_weights():
        acc, training = record.accuracy, record.training
        paper_text = paper_errors(record.model, record.dataset)
        recipe = training["recipe"]
        lines.append(
            f"| `{record.model}` | {record.tag} | {acc['data']} | {acc['top1_error']:.2f}% | {paper_text} "
            f"| {recipe['name']}, {recipe['epochs']} epochs, batch {recipe['batch_size']} "
            f"| {training['hardware']}, {training['time_s'] / 60:.0f} min |"
        )
    return "\n".join(lines)


def model_table(counts):
    """Markdown table of every registered model; ``counts`` maps name -> our trainable params."""
    from keras_attn_zoo import get_spec, list_models
    from keras_attn_zoo.weights import published_tags

    lines = [
        "| name | architecture | our params (default) | reference implementation's params "
        "| paper: table, data set, params, top-1 error | weights |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for name in list_models():
        spec = get_spec(name)
        rows = "; ".join(
            f"{r.paper.upper()} {r.table}, {r.dataset}, "
            f"{'-' if r.params_m is None else f'{r.params_m}M'}, {r.top1_error}%"
            for r in spec.results
        ) or "-"
        official = spec.official_params.get(spec.num_classes)
        reference = "-" if official is None else f"{official:,}"
        if official is not None and spec.official_params_delta:
            reference += f" ({spec.official_params_delta:+,}, see notes)"
        weights = ", ".join(published_tags(name)) or "-"
        lines.append(f"| `{name}` | {spec.description} | {counts[name]:,} | {reference} | {rows} | {weights} |")
    return "\n".join(lines)


def readme_counts(text):
    """The parameter counts the README's table states, by name."""
    return {m[1]: int(m[2].replace(",", "")) for m in re.finditer(r"^\| `(\w+)` \| [^|]+ \| ([\d,]+) \|", text, re.M)}


def _replace(text, start, end, table):
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{table}\n{end}{tail}"


def render(text, counts):
    text = _replace(text, WEIGHTS_START, WEIGHTS_END, weights_table())
    return _replace(text, START, END, model_table(counts))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    from keras_attn_zoo import count_trainable, get_spec, list_models

    counts = {name: count_trainable(get_spec(name).build(name=name)) for name in list_models()}
    text = README.read_text()
    new = render(text, counts)
    if args.check:
        print("README.md is up to date" if new == text else "README.md is out of date")
        return 0 if new == text else 1
    README.write_text(new)
    print(f"wrote the table of {len(counts)} models to {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

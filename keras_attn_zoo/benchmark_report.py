"""The markdown report of a benchmark measurement (``keras_attn_zoo.benchmark_suite.run``).

Every number is computed here from the measurement's timed calls and the models' multiply-adds:

- a row's time is the median over rounds of each round's median call, with the rounds' min-max;
- images/s = batch / time; GFLOP/s = 2 x multiply-adds x images/s / 1e9 (3x the forward's
  multiply-adds for a training step: the forward pass and the two products of every
  convolution and dense layer's backward pass);
- % of peak = GFLOP/s / the machine's peak: the best float32 matmul rate measured in the run's
  rounds (a peak is what the cores can do; a busy spell only lowers a round's value);
- x reference = this row's images/s / the PyTorch reference's in the same table (above 1:
  faster); for the training objective, / plain cross-entropy's;
- attention overhead = a mechanism's time / its plain twin's - 1 (the twin is the benchmarked
  model whose name is the mechanism's without the mechanism's prefix, e.g. ``resnet20`` for
  ``fa_resnet20``), beside the same ratio of multiply-adds and of parameters.

>>> section = markdown(measurement)  # doctest: +SKIP
>>> write_section("docs/benchmarks.md", section)  # doctest: +SKIP
"""

import statistics
from pathlib import Path

from keras_attn_zoo.benchmark_suite import INFERENCE_SYSTEMS, TRAINING_MODES, TRAINING_SYSTEMS

START, END = "<!-- speed:start -->", "<!-- speed:end -->"
# the mechanisms' name prefixes, longest first (registry names are "<mechanism>_<architecture>")
PREFIXES = ("abn_se_", "fa_se_", "paya_", "abn_", "fa_", "se_")
# systems whose attention overhead the report gives (Keras and the ONNX runtime)
OVERHEAD_SYSTEMS = ("keras-tf", "onnxruntime")
OVERHEAD_TOLERANCE = 5.0  # points of latency overhead above the FLOPs overhead that need a reason


def _median_range(values):
    return statistics.median(values), min(values), max(values)


def _ok_entries(results, **match):
    return [e for e in results if "result" in e and all(e.get(k) == v for k, v in match.items())]


def peak(measurement):
    """``(median, min, max)`` GFLOP/s of the rounds' matmul peaks, or None; the max is the
    machine's peak that shares are of."""
    rates = [e["result"]["gflops"] for e in _ok_entries(measurement["results"], kind="peak")]
    return _median_range(rates) if rates else None


def _cpu(entries):
    """Median steal and others' busy share over the entries' windows, as text."""
    def med(key):
        values = [e["cpu"][key] for e in entries if e.get("cpu", {}).get(key) is not None]
        return statistics.median(values) if values else None

    steal, others = med("steal"), med("others_busy")
    return "-" if steal is None else f"{steal:.0f}% / {others:.0f}%"


def inference_rows(measurement):
    """One dict per (model, system, batch) that ran: time (median, min, max), images/s, GFLOP/s,
    share of peak, ratio to the reference, CPU shares."""
    top = peak(measurement)
    rows = []
    for model, info in measurement["models"].items():
        systems = dict.fromkeys(e["system"] for e in measurement["results"] if e["kind"] == "inference" and e["model"] == model)
        for batch in measurement["settings"].get("model_batch_sizes", {}).get(model, measurement["settings"]["batch_sizes"]):
            reference = None
            found = []
            for system in systems:
                entries = _ok_entries(measurement["results"], kind="inference", model=model, system=system)
                rounds = [statistics.median(e["result"]["times"][str(batch)]) for e in entries
                          if str(batch) in e["result"]["times"]]
                other = [e for e in measurement["results"] if e["kind"] == "inference" and e["model"] == model
                         and e["system"] == system and "result" not in e]
                if not rounds:
                    found.append({"model": model, "system": system, "batch": batch,
                                  "missing": (other[0].get("error") or other[0].get("skipped")) if other else "no result"})
                    continue
                seconds = _median_range(rounds)
                gflops = 2 * info["macs"] * batch / seconds[0] / 1e9
                row = {"model": model, "system": system, "batch": batch, "seconds": seconds, "rounds": len(rounds),
                       "images_per_s": batch / seconds[0], "gflops": gflops,
                       "peak_share": gflops / top[2] if top else None, "cpu": _cpu(entries)}
                if system == "torch-reference":
                    reference = row["images_per_s"]
                found.append(row)
            for row in found:
                row["vs_reference"] = None if reference is None or "missing" in row else row["images_per_s"] / reference
            rows += found
    return rows


OBJECTIVE_TEXT = ("the trainer's wrapper (augmentation, normalisation, model) on uint8 arrays trained with `CoupledSGD`: "
                  "plain cross-entropy, DAT (first order), DAT in second order (JAX only: TensorFlow refuses it "
                  "through BatchNormalization)")


def step_statistic(measurement):
    """How the measurement's training steps are summarised: "median" (a step after which Keras
    made a new data iterator can stall by seconds, ``benchmark._EpochTimer``), or "mean" in
    measurements saved before it recorded per-step times."""
    return measurement.get("step_statistic", "mean")


def training_rows(measurement, kind="training"):
    """One dict per (model, system, mode) training (or objective) cell: seconds per step, images/s,
    GFLOP/s (3x the forward's multiply-adds), share of peak, ratio to the reference's step (for
    the objective: to plain cross-entropy's)."""
    top = peak(measurement)
    batch = measurement["settings"]["train_batch_size"]
    rows = []
    for model, info in measurement["models"].items():
        keys = dict.fromkeys((e["system"], e["mode"]) for e in measurement["results"] if e["kind"] == kind and e["model"] == model)
        found, reference = [], {}  # images/s of what each row is compared with: per system for the objective
        for system, mode in keys:
            entries = _ok_entries(measurement["results"], kind=kind, model=model, system=system, mode=mode)
            if not entries:
                other = [e for e in measurement["results"] if e["kind"] == kind and e["model"] == model
                         and e["system"] == system and e["mode"] == mode]
                found.append({"model": model, "system": system, "mode": mode, "batch": batch,
                              "missing": other[0].get("error") or other[0].get("skipped")})
                continue
            summary = getattr(statistics, step_statistic(measurement))
            seconds = _median_range([summary(e["result"]["step_seconds"]) for e in entries])
            gflops = 3 * 2 * info["macs"] * batch / seconds[0] / 1e9
            row = {"model": model, "system": system, "mode": mode, "batch": batch, "seconds": seconds,
                   "rounds": len(entries), "images_per_s": batch / seconds[0], "gflops": gflops,
                   "peak_share": gflops / top[2] if top else None, "cpu": _cpu(entries)}
            if (kind == "training" and system == "torch-reference") or (kind == "objective" and mode == "cross_entropy"):
                reference[system if kind == "objective" else None] = row["images_per_s"]
            found.append(row)
        for row in found:
            against = reference.get(row["system"] if kind == "objective" else None)
            row["vs_reference"] = None if against is None or "missing" in row else row["images_per_s"] / against
        rows += found
    return rows


def plain_twin(name, names):
    """The plain model of ``names`` that mechanism model ``name`` adds attention to, or None."""
    for prefix in PREFIXES:
        if name.startswith(prefix) and name[len(prefix):] in names:
            return name[len(prefix):]
    return None


def overhead_rows(measurement, inference=None):
    """For every benchmarked mechanism whose plain twin was benchmarked too: per system of
    ``OVERHEAD_SYSTEMS`` and batch, the latency overhead beside the FLOPs and parameter ones (%)."""
    inference = inference_rows(measurement) if inference is None else inference
    times = {(r["model"], r["system"], r["batch"]): r["seconds"][0] for r in inference if "missing" not in r}
    models = measurement["models"]
    rows = []
    for name, info in models.items():
        twin = plain_twin(name, models)
        if twin is None:
            continue
        flops = 100 * (info["macs"] / models[twin]["macs"] - 1)
        params = 100 * (info["params"] / models[twin]["params"] - 1)
        for system in OVERHEAD_SYSTEMS:
            for batch in sorted({b for (m, s, b) in times if m == name and s == system}):
                if (twin, system, batch) not in times:
                    continue
                latency = 100 * (times[(name, system, batch)] / times[(twin, system, batch)] - 1)
                rows.append({"model": name, "twin": twin, "system": system, "batch": batch, "flops": flops,
                             "params": params, "latency": latency, "excess": latency - flops})
    return rows


def _ms(seconds):
    median, low, high = (1000 * s for s in seconds)
    digits = 2 if median < 10 else 1 if median < 1000 else 0
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _pct(value):
    return "-" if value is None else f"{100 * value:.0f}%"


def _ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def _versions(versions):
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def _load(shares):
    if not shares or shares.get("busy") is None:
        return "unknown"
    return (f"{shares['busy']:.0f}% busy at nice 0, {shares['nice']:.0f}% at positive nice (background jobs), "
            f"{shares['steal']:.0f}% steal")


def markdown(measurement):
    """The report's markdown (without the section markers)."""
    m, settings = measurement["machine"], measurement["settings"]
    top = peak(measurement)
    steals = [e["cpu"]["steal"] for e in measurement["results"] if e.get("cpu", {}).get("steal") is not None]
    others = [e["cpu"]["others_busy"] for e in measurement["results"] if e.get("cpu", {}).get("others_busy") is not None]
    nice = [e["cpu"]["nice"] for e in measurement["results"] if e.get("cpu", {}).get("nice") is not None]
    lines = [
        f"Written by `{measurement['command']}` from {measurement['started']} to {measurement.get('finished', '?')} "
        f"on {m['cores']} CPU cores ({m['cpu']}{', ' + '/'.join(m['simd']).upper() if m['simd'] else ''}"
        f"{', a virtual machine' if m['virtual_machine'] else ''}), Linux {m['kernel']}, the benchmark at nice {m['nice']}; "
        f"{_versions(measurement['versions'])}.",
        "",
        f"CPU load: just before the run {_load(measurement.get('load_before'))}. While the cells ran: "
        + (f"steal median {statistics.median(steals):.0f}% (max {max(steals):.0f}%), other processes at nice 0 "
           f"median {statistics.median(others):.0f}% (max {max(others):.0f}%), background jobs at positive nice "
           f"median {statistics.median(nice):.0f}% of the machine's CPU time"
           if steals else "not recorded (no /proc/stat)")
        + (f"; each cell waited for at most {settings['quiet']:g}% busy (up to {settings['quiet_timeout']:g} s)"
           if settings.get("quiet") is not None else "; no wait for a quiet CPU") + ".",
        "",
        f"Each row is the median over {settings['rounds']} rounds of each round's median call (min-max of the "
        "rounds in brackets); every cell ran in a fresh process, the cells in the same order in every round "
        f"(interleaved); {settings['repeats']} timed calls per batch after {settings['warmup']} untimed ones"
        + (f", or fewer once they took {settings['max_seconds']:g} s" if settings.get("max_seconds") else "")
        + ". Weights are seeded random (speed does not depend on them), the same in every system. "
        "GFLOP/s counts 2 flops per multiply-add (`keras-attn-zoo info NAME`: convolutions, dense layers and "
        "the attention layers' own products); a training step counts 3x the forward's. "
        "x reference: images/s over the PyTorch reference's (above 1: faster). CPU: the median steal / "
        "other processes' share while the row ran.",
        "",
    ]
    if measurement.get("rechecked"):
        lines += [f"Checks: the exports were made and checked again on {measurement['rechecked']['at']} "
                  "(`--from-json FILE --recheck`: the same seeded weights and inputs, today's export code and "
                  "its parity criterion); the timings are those of the run above.", ""]
    if top:
        libraries = max((e["result"] for e in _ok_entries(measurement["results"], kind="peak")), key=lambda r: r["gflops"])
        lines += [f"Peak: a {libraries['size']}x{libraries['size']} float32 matrix product, measured in every round "
                  f"on the same cores: {top[2]:.1f} GFLOP/s at best, the peak the shares below are of (rounds "
                  f"{top[1]:.1f}-{top[2]:.1f}, median {top[0]:.1f}; the fastest of "
                  + ", ".join(f"{name} {rate:g}" for name, rate in libraries["libraries"].items())
                  + " GFLOP/s in the best round). GFLOP/s below counts the multiply-adds of direct convolution: a "
                  "runtime that multiplies less (Winograd or FFT kernels for 3x3 convolutions, int8 arithmetic) "
                  "can go past 100% of this float32 peak.", ""]
    lines += ["**Systems**", "", "| system | what is timed |", "| --- | --- |"]
    used = dict.fromkeys(e["system"] for e in measurement["results"] if e["kind"] == "inference")
    lines += [f"| {s} | {INFERENCE_SYSTEMS[s]} |" for s in used if s in INFERENCE_SYSTEMS]
    trained = dict.fromkeys(e["system"] for e in measurement["results"] if e["kind"] == "training")
    lines += [f"| {s} (training) | {TRAINING_SYSTEMS[s]} |" for s in trained if s in TRAINING_SYSTEMS]
    objective = dict.fromkeys(e["system"] for e in measurement["results"] if e["kind"] == "objective")
    lines += [f"| {s} (objective) | {OBJECTIVE_TEXT} on {INFERENCE_SYSTEMS[s].split(':')[0]} |" for s in objective
              if s in INFERENCE_SYSTEMS]
    lines += ["", "**References and checks** (each system's file or module against the Keras model, same inputs)", "",
              "| model | multiply-adds / image | parameters | PyTorch reference | checks |", "| --- | ---: | ---: | --- | --- |"]
    for model, info in measurement["models"].items():
        checks = "; ".join(
            f"{system}: export FAILED ({c['error']})" if "error" in c else
            f"{system}: {'ok' if c['ok'] else 'FAILED'} ({c['criterion']}, max diff {c['max_abs_diff']:.2g}"
            + (f", top-1 agreement {c['top1_agreement']:.0%}" if c.get("top1_agreement") is not None else "") + ")"
            for system, c in info["checks"].items())
        lines.append(f"| `{model}` | {info['macs']:,} | {info['params']:,} | {info['reference']['description']} | {checks or '-'} |")

    inference = inference_rows(measurement)
    if inference:
        lines += ["", "**Inference**", "",
                  "| model | system | batch | ms per call | images/s | GFLOP/s | % of peak | x reference | CPU steal / others |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in inference:
            lines.append(_speed_row(r, r["batch"]))
    for kind, title in (("training", "Training"), ("objective", "Training objective (DAT against plain cross-entropy)")):
        rows = training_rows(measurement, kind)
        if not rows:
            continue
        against = "x plain" if kind == "objective" else "x reference"
        lines += ["", f"**{title}** (batch {settings['train_batch_size']}, the {step_statistic(measurement)} of {settings['steps']} steps after a "
                  "warm-up of as many)", "",
                  f"| model | system | {'objective' if kind == 'objective' else 'fed'} | ms per step | images/s | GFLOP/s "
                  f"| % of peak | {against} | CPU steal / others |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            lines.append(_speed_row(r, r["mode"]))
        if kind == "training":
            lines += _feed_lines(rows)
    overhead = overhead_rows(measurement, inference)
    if overhead:
        lines += ["", "**Attention overhead** over the plain twin (latency = time per call; a row whose latency "
                  f"overhead exceeds its FLOPs overhead by more than {OVERHEAD_TOLERANCE:g} points is marked)", "",
                  "| model | over | FLOPs | parameters | system | batch | latency | latency - FLOPs |",
                  "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
        for r in overhead:
            mark = " **over**" if r["excess"] > OVERHEAD_TOLERANCE else ""
            lines.append(f"| `{r['model']}` | `{r['twin']}` | {r['flops']:+.1f}% | {r['params']:+.1f}% | {r['system']} "
                         f"| {r['batch']} | {r['latency']:+.1f}% | {r['excess']:+.1f} points{mark} |")
    return "\n".join(lines)


def _feed_lines(rows):
    """What each way of feeding Keras' training means, and each one's images/s as a share of the
    bare model's, when a training table has more than the bare model's row."""
    keras_rows = [r for r in rows if r["system"] == "keras-tf" and "missing" not in r]
    modes = list(dict.fromkeys(r["mode"] for r in keras_rows))
    if modes == ["model"] or not modes:
        return []
    lines = ["", "Fed: " + "; ".join(f"**{m}**, {TRAINING_MODES[m]}" for m in modes if m in TRAINING_MODES) + "."]
    shares = []
    for model in dict.fromkeys(r["model"] for r in keras_rows):
        speed = {r["mode"]: r["images_per_s"] for r in keras_rows if r["model"] == model}
        if "model" in speed and len(speed) > 1:
            shares.append(f"`{model}` " + ", ".join(f"{m} {speed[m] / speed['model']:.0%}" for m in speed if m != "model"))
    if shares:
        lines += ["", "Images/s as a share of the bare model's (fed: model): " + "; ".join(shares) + "."]
    return lines


def _speed_row(r, column):
    """One row of the inference or training table; ``column`` is its third cell (batch or feed)."""
    if "missing" in r:
        return f"| `{r['model']}` | {r['system']} | {column} | {r['missing']} | | | | | |"
    return (f"| `{r['model']}` | {r['system']} | {column} | {_ms(r['seconds'])} | {r['images_per_s']:.1f} "
            f"| {r['gflops']:.1f} | {_pct(r['peak_share'])} | {_ratio(r['vs_reference'])} | {r['cpu']} |")


def write_section(path, section, title="## Speed", markers=(START, END)):
    """Put ``section`` between the ``markers`` (the speed section's by default) of the markdown
    file ``path`` (added under ``title`` at the end if the file has none); the rest of the file
    stays as it is."""
    path = Path(path)
    start, end = markers
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = f"{start}\n{section}\n{end}"
    if start in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{title}\n\n" + block + "\n"
    path.write_text(text)
    return path

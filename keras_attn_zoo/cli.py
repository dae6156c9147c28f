"""The ``keras-attn-zoo`` command line."""

import argparse
import contextlib
import fnmatch
import importlib.abc
import json
import os
import re
import sys
import tempfile
from pathlib import Path

# Only light modules at the top: ``--help``, ``list``, ``info`` and ``download`` answer without
# importing Keras (and TensorFlow, ~5 s). Each command imports its own machinery inside its
# handler, for start-up speed alone (there is no cycle to dodge: tests/test_architecture.py counts
# those imports as edges). model_index and weights import neither Keras nor NumPy.
from keras_attn_zoo.model_index import MODELS
from keras_attn_zoo.weights import is_path, published_tags

# Choices of the parser, copied from the modules that define them (each imports Keras) so that the
# parser builds without them; tests/test_cli.py checks that they are equal.
RECIPE_NAMES = ("abn_cifar", "cosine", "fanet_cifar", "imagenet", "onecycle", "paya_cifar")  # training.recipes.RECIPES
SCHEDULES = ("step", "cosine", "onecycle", "constant")  # training.recipes.SCHEDULES
STRATEGIES = ("auto", "none", "mirrored", "multi_worker", "tpu", "data_parallel")  # training.distribute
TRAINING_MODES = ("model", "wrapper", "pipeline", "trainer")  # benchmark.TRAINING_MODES
AUGMENTATIONS = ("cifar", "cifar_reflect", "imagenet", "flip", "none")  # data.augment.AUGMENTATIONS
PREDICTION_FORMATS = ("text", "csv", "json")  # predict.PREDICTION_FORMATS
# benchmark_suite.INFERENCE_SYSTEMS and TRAINING_SYSTEMS
INFERENCE_SYSTEMS = ("keras-tf", "keras-tf-xla", "keras-jax", "keras-torch", "onnxruntime", "tflite", "tflite-int8",
                     "torch-reference")
TRAINING_SYSTEMS = ("keras-tf", "torch-reference")

# The commands that need no model, hence no Keras (the benchmark's worker imports it for the tasks
# that run Keras).
LIGHT_COMMANDS = ("list", "info", "download", "benchmark-worker")

def _index_name(name):
    """The registered name that ``name`` means, as ``registry.get_spec`` reads it (same message)."""
    import difflib

    key = name.strip().lower().replace("-", "_")
    if key not in MODELS:
        close = difflib.get_close_matches(key, MODELS, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} `keras_attn_zoo.list_models()` lists all "
            f"{len(MODELS)} names."
        )
    return key


def _list(args):
    # registry.list_models, read from the generated model index (no Keras)
    names = sorted(MODELS)
    if args.pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, args.pattern.lower())]
    for name in names:
        if not args.pretrained or published_tags(name):
            print(f"{name:28s} {MODELS[name]['description']}")


def _info(args):
    # registry.model_info, read from the generated model index (no Keras): the parameter count and
    # multiply-adds were recorded from a build by scripts/make_docs.py (checked against builds in
    # tests/test_models.py)
    name = _index_name(args.name)
    info = {**MODELS[name], "weights": published_tags(name)}
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['name']}: {info['description']}")
    print(f"  paper:      {info['paper']}")
    print(f"  builder:    {info['builder']}({', '.join(f'{k}={v!r}' for k, v in info['builder_kwargs'].items())})")
    print(f"  input:      {info['input_shape']}, {info['num_classes']} classes")
    print(f"  parameters: {info['params']:,} trainable (ours, default configuration)")
    print(f"  compute:    {info['macs']:,} multiply-adds per {'x'.join(map(str, info['input_shape']))} image "
          f"({2 * info['macs'] / 1e9:.3g} GFLOPs; convolutions, dense layers and the attention layers' products)")
    for r in info["paper_results"]:
        extra = f" [{r['note']}]" if "note" in r else ""
        print(
            f"  paper Table {r['table']:>3}: {r['dataset']:14s} top-1 error {r['top1_error']:5.2f}%"
            f"  params {r['params_m']}M{extra}"
        )
    print(f"  weights:    {', '.join(info['weights']) or 'none published yet'}")
    print(f"  notes:      {info['notes']}")


def _gates(args):
    import numpy as np

    from keras_attn_zoo.explain.gates import fa_gates
    from keras_attn_zoo.registry import load

    model = load(args.model, weights=args.weights)
    source = args.weights or "none: random initialisation, so these gates mean nothing yet"
    print(f"{model.name}, weights: {source}; {args.batch} random inputs")
    images = np.random.default_rng(args.seed).uniform(0, 1, (args.batch, *model.input_shape[1:]))
    for name, k in fa_gates(model, images.astype("float32")).items():
        print(f"{name:22s} mean k = {k.mean():.4f}  (min {k.min():.4f}, max {k.max():.4f})")


def _normalization_argument(args):
    """``--mean`` and ``--std`` as a ``ChannelStats``, or None when neither is given."""
    from keras_attn_zoo.normalization import ChannelStats

    if (args.mean is None) != (args.std is None):
        raise ValueError("--mean and --std go together: pass both (one value per channel, on the 0-1 scale).")
    return ChannelStats(tuple(args.mean), tuple(args.std)) if args.mean is not None else None


def _model(args):
    """``registry.load_for_inference`` for a command's ``--model``, ``--weights``, ``--class-names``,
    ``--mean`` and ``--std``; what the user should know (random weights, numbered classes) goes to
    stderr."""
    from keras_attn_zoo.predict import read_class_names
    from keras_attn_zoo.registry import load_for_inference

    names_file = getattr(args, "class_names", None)
    loaded = load_for_inference(
        args.model, args.weights, class_names=read_class_names(names_file) if names_file else None,
        normalization=_normalization_argument(args),
    )
    for note in loaded.notes:
        print(f"WARNING: {note}", file=sys.stderr)
    return loaded.model, loaded.normalization, loaded.class_names


def _export(args):
    from keras_attn_zoo.export import export_model

    model, normalization, names = _model(args)
    report = export_model(
        model, args.output, args.format, quantize=args.quantize,
        representative_images=args.representative_images, batch_size=args.batch_size,
        outputs=args.outputs, normalization=normalization, class_names=names,
        include_preprocessing=args.include_preprocessing,
    )
    print(report.summary())
    if not report.ok:
        raise ValueError(f"the exported file does not match Keras ({report.criterion}).")


def _predict(args):
    from keras_attn_zoo.predict import format_predictions, predict_files

    model, normalization, names = _model(args)
    predictions, failed = predict_files(model, args.images, args.top_k, names, args.batch_size, normalization,
                                        early_exit=args.early_exit)
    for _, message in failed:
        print(f"keras-attn-zoo: skipped: {message}", file=sys.stderr)
    print(format_predictions(predictions, failed, args.format), end="")
    if not predictions:
        raise ValueError(f"no readable image among {', '.join(args.images)}.")


def _explain(args):
    from keras_attn_zoo.explain import explain
    from keras_attn_zoo.explain.plots import abn_map_of, require_matplotlib, save_explanation
    from keras_attn_zoo.images import model_image_size, preprocess, read_image

    require_matplotlib()
    model, normalization, names = _model(args)
    height, width, channels = model_image_size(model)
    pixels = read_image(args.image, (height, width), channels)
    if args.dat:
        return _explain_dat(args, model, pixels, preprocess(pixels[None], normalization), names)
    result = explain(model, preprocess(pixels[None], normalization), args.class_index, args.layer)
    c = int(result.class_index[0])
    print(f"{args.image}: {names[c] if names else f'class {c}'} {result.scores[0, c]:.3f}; "
          f"Grad-CAM at {result.grad_cam_layer}")
    abn_map = abn_map_of(result)
    if abn_map is not None:
        print(f"  {'abn_attention_map':22s} ABN attention map M {abn_map.shape[0]}x{abn_map.shape[1]}: "
              f"mean {abn_map.mean():.4f} (min {abn_map.min():.4f}, max {abn_map.max():.4f})")
    for name, k in result.fa_gates.items():
        print(f"  {name:22s} FA gate k = {k[0]:.4f}")
    for name, w in result.se_weights.items():
        print(f"  {name:22s} SE weights: mean {w[0].mean():.4f} (min {w[0].min():.4f}, max {w[0].max():.4f})")
    if result.paya is not None:
        for name, masks in result.paya.masks.items():
            own = result.paya.module_scores[name][0]
            k = int(own.argmax())
            print(f"  {name:22s} PAYA masks {masks.shape[1]}x{masks.shape[2]}x{masks.shape[3]}, head gates "
                  + " ".join(f"{g:.3f}" for g in result.paya.head_gates[name][0])
                  + f"; own prediction {names[k] if names else k} {own[k]:.3f}; "
                  f"global gate {result.paya.global_gates[name][0]:.3f}")
        print(f"  {'predictions':22s} PAYA global gate {result.paya.global_gates['predictions'][0]:.3f}")
    path = save_explanation(args.output, pixels, result, 0, names)  # the image as the model saw it
    print(f"wrote {path}")

def _explain_dat(args, model, pixels, images, names):
    from keras_attn_zoo.explain.discriminative import discriminative_attention, save_discriminative_attention

    r = discriminative_attention(model, images, args.class_index, attention=args.dat_attention)
    t, c = int(r.target[0]), int(r.confusing[0])
    name = (lambda k: names[k] if names else f"class {k}")
    print(f"{args.image}: target {name(t)} {r.scores[0, t]:.3f}, most confusing {name(c)} {r.scores[0, c]:.3f}; "
          f"soft IoU {r.soft_iou_last[0]:.4f} at {r.last_layer}, {r.soft_iou_inner[0]:.4f} at {r.inner_layer} "
          f"({'A_ch' if r.attention == 'channel' else 'A_px'})")
    print(f"wrote {save_discriminative_attention(args.output, pixels, r, 0, names)}")  # as the model saw it


def _split_name_tag(text):
    name, _, tag = text.partition(":")
    return name, tag or None


def _train(args):
    from keras_attn_zoo.training import configure_cpu_devices, train
    from keras_attn_zoo.training.trainer import command_line

    if args.cpu_devices:
        configure_cpu_devices(args.cpu_devices)
    milestones = [int(m) for m in args.milestones.split(",") if m] if args.milestones is not None else None
    train(
        args.name, args.data, args.recipe, output_dir=args.output, limit=args.limit,
        eval_limit=args.eval_limit, image_size=args.image_size, data_dir=args.data_dir,
        manual_dir=args.manual_dir, strategy=args.strategy, tpu=args.tpu,
        mixed_precision=args.mixed_precision, seed=args.seed, init_weights=args.init_weights,
        overwrite=args.overwrite, verbose="auto" if args.verbose is None else args.verbose,
        command=command_line("keras-attn-zoo", args.argv),
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        schedule=args.schedule, milestones=milestones, weight_decay=args.weight_decay,
        augmentation=args.augmentation, objective=_objective(args), skip_bad_images=args.skip_bad_images,
        model_options=_key_values(args.model_arg, "--model-arg", "auxiliary_weight=0.3, attention_heads=2") or None,
        sync_bn=args.sync_bn,
    )


def _key_values(items, flag, example):
    """Repeated ``KEY=VALUE`` options as a dict: true/false as booleans, numbers as int or float,
    anything else as text."""
    settings = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} takes KEY=VALUE (e.g. {example}); got {item!r}.")
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            value = lowered == "true"
        else:
            try:
                value = int(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    value = text
        settings[key.strip()] = value
    return settings


def _objective(args):
    """``--objective`` and its ``--dat KEY=VALUE`` settings as ``train``'s ``objective``."""
    if not args.dat:
        return args.objective
    if args.objective != "dat":
        raise ValueError("--dat settings need --objective dat.")
    return _key_values(args.dat, "--dat", "second_order=true, attention=pixel")


def _add_skip_bad_images_argument(p):
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out (and list) the images that cannot be used: not images, truncated, corrupt or "
                        "too large; without it they fail, all listed, before any work")


def _add_objective_arguments(p):
    p.add_argument("--objective", choices=("cross_entropy", "dat"), default=None,
                   help="dat: add the discriminative-attention terms (soft IoU, consistency) to the loss")
    p.add_argument("--dat", action="append", default=[], metavar="KEY=VALUE",
                   help="a DAT setting, repeatable: attention=pixel, second_order=true, mask=normalized, "
                        "inner_layer=NAME, theta=0.8, siou_inner_weight=1 ...")


def _finetune_weights(args):
    """``--weights`` (default cifar10; "none" is random initialisation) and ``--from-scratch``."""
    weights = args.weights
    if weights is not None and weights.lower() == "none":
        weights = None
    if args.from_scratch:
        if weights is not None:
            raise ValueError(f"--from-scratch trains from random initialisation: give no --weights ({args.weights}).")
        return None
    return "cifar10" if args.weights is None else weights


def _finetune(args):
    from keras_attn_zoo.training.finetune import fine_tune

    result = fine_tune(
        args.name, args.data, _finetune_weights(args), output_dir=args.output, epochs=args.epochs,
        freeze_epochs=args.freeze_epochs, batch_size=args.batch_size, learning_rate=args.lr,
        fine_tune_learning_rate=args.fine_tune_lr, validation_split=args.validation_split,
        image_size=args.image_size, augmentation=args.augmentation, limit=args.limit, seed=args.seed,
        overwrite=args.overwrite, verbose="auto" if args.verbose is None else args.verbose,
        objective=_objective(args), mean=args.mean, std=args.std, skip_bad_images=args.skip_bad_images,
    )
    print(f"predict with: keras-attn-zoo predict IMAGES --model {result.model_path}")


def _evaluate(args):
    from keras_attn_zoo.explain.plots import require_matplotlib
    from keras_attn_zoo.training import evaluate, write_results
    from keras_attn_zoo.training.evaluate import (
        confusion_text, record_accuracy, save_confusion_matrix, verify_published,
    )
    from keras_attn_zoo.training.trainer import accuracy_text, command_line

    if args.all:
        if args.name or args.weights or args.record or args.output:
            raise ValueError("--all re-measures every published weight: give no NAME, --weights, --record or -o.")
        checked = verify_published(args.data, manifest=args.manifest, limit=args.limit,
                                   batch_size=args.batch_size, data_dir=args.data_dir)
        for c in checked:
            print(f"{c['model'] + ':' + c['tag']:28s} recorded top-1 {c['recorded']:.4f}, measured "
                  f"{c['measured']:.4f} on {c['images']:,} images: {'OK' if c['match'] else 'MISMATCH'}")
        if not all(c["match"] for c in checked):
            raise ValueError("a published accuracy does not reproduce (MISMATCH above).")
        return
    if args.name and args.name.endswith(".keras"):
        return _evaluate_model_file(args)
    if args.mean is not None or args.std is not None:
        raise ValueError("--mean and --std are for a fine-tuned .keras file that records none; weights of a "
                         "registered name are measured with their training record's.")
    if not args.name or not args.weights:
        raise ValueError("evaluate needs NAME and --weights (or --all).")
    if args.output:  # before measuring, not after
        require_matplotlib("the confusion-matrix picture (-o)")
    result = evaluate(args.name, args.weights, args.data, args.split, batch_size=args.batch_size,
                      limit=args.limit, data_dir=args.data_dir, manual_dir=args.manual_dir,
                      skip_bad_images=args.skip_bad_images, per_class=True)
    print(f"{args.name} ({args.weights}) on {result['data']}: {accuracy_text(result)}")
    print(confusion_text(result))
    if args.output:
        title = f"{args.name} ({Path(str(args.weights)).name})\n{accuracy_text(result)}, {result['images']} images"
        print(f"wrote {save_confusion_matrix(args.output, result, title)}")
    if args.record:
        if is_path(args.weights):
            raise ValueError("--record stores a measurement of published weights: pass a tag, not a file.")
        accuracy = {k: v for k, v in result.items() if k not in ("class_names", "recall", "confusion")}
        record_accuracy(args.name, args.weights, accuracy, command_line("keras-attn-zoo", args.argv), args.manifest)
        print(f"recorded in {args.manifest or 'weights/manifest.json'}; wrote {write_results(args.results, args.manifest)}")


def _evaluate_model_file(args):
    from keras_attn_zoo.explain.plots import require_matplotlib
    from keras_attn_zoo.training.evaluate import confusion_text, evaluate_model_file, save_confusion_matrix

    if args.weights or args.record:
        raise ValueError("A .keras file holds its own weights and is not published: give no --weights or --record.")
    stats = _normalization_argument(args)
    if args.output:  # before measuring, not after
        require_matplotlib("the confusion-matrix picture (-o)")
    result = evaluate_model_file(args.name, args.data, args.split, batch_size=args.batch_size, limit=args.limit,
                                 data_dir=args.data_dir, skip_bad_images=args.skip_bad_images, normalization=stats)
    correct = sum(row[i] for i, row in enumerate(result["confusion"]))
    print(f"{args.name} on {result['data']}: top-1 {result['top1']:.4f} ({correct} of {result['images']} images)")
    print(confusion_text(result))
    if args.output:
        title = f"{Path(args.name).name}\ntop-1 {result['top1']:.4f}, {result['split']} split, {result['images']} images"
        print(f"wrote {save_confusion_matrix(args.output, result, title)}")


def _publish(args):
    from keras_attn_zoo.training import write_results
    from keras_attn_zoo.training.publish import publish

    row = publish(args.weights_file, args.tag, manifest=args.manifest, overwrite=args.overwrite, url=args.url)
    print(f"published {row['model']}:{row['tag']} as {row['file']} ({row['size']:,} bytes, sha256 "
          f"{row['sha256']}), top-1 error {row['accuracy']['top1_error']:.2f}% on {row['accuracy']['data']}")
    print(f"wrote {write_results(args.results, args.manifest)}; run `python scripts/make_docs.py` "
          "to update README's weights column")


def _download(args):
    from keras_attn_zoo.weights import download

    name, tag = _split_name_tag(args.spec)
    print(download(_index_name(name), tag))


def _benchmark(args):
    from keras_attn_zoo import benchmark_report, benchmark_suite
    from keras_attn_zoo.training.trainer import command_line

    if args.from_json:
        measurement = json.loads(Path(args.from_json).read_text())
        if args.recheck:
            benchmark_suite.recheck(measurement, workdir=args.workdir)
            if args.json:
                Path(args.json).write_text(json.dumps(measurement, indent=1))
                print(f"Wrote {args.json}")
    elif args.recheck:
        raise ValueError("--recheck re-exports the models of a saved measurement: give it with --from-json FILE.")
    else:
        names = list(args.names)
        training_models = args.training_models
        if args.preset == "docs":
            names = names or list(benchmark_suite.DOCS_MODELS)
            training_models = training_models or [n for n in names if MODELS[n]["input_shape"][0] <= 64]
        if not names:
            raise ValueError("benchmark needs model names (or --preset docs, or --from-json FILE).")
        settings = benchmark_suite.Settings(
            models=tuple(_index_name(n) for n in names), systems=tuple(args.systems), kinds=tuple(args.kinds),
            training_systems=tuple(args.training_systems),
            training_models=None if training_models is None else tuple(_index_name(n) for n in training_models),
            modes=tuple(args.modes), batch_sizes=tuple(args.batch_sizes), rounds=args.rounds, repeats=args.repeats,
            warmup=args.warmup, max_seconds=args.max_seconds, train_batch_size=args.train_batch_size,
            steps=args.steps, data=args.data, data_dir=args.data_dir, quiet=args.quiet,
            quiet_timeout=args.quiet_timeout, cell_timeout=args.cell_timeout,
            model_batch_sizes=_model_batch_sizes(args.model_batch_sizes), threads=args.threads,
        )
        # --workdir only says where the scratch files go (often /tmp/...): the page's command leaves it out
        argv = [a for i, a in enumerate(args.argv) if a != "--workdir" and (i == 0 or args.argv[i - 1] != "--workdir")
                and not a.startswith("--workdir=")]
        measurement = benchmark_suite.run(settings, command_line("keras-attn-zoo", argv), workdir=args.workdir)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(measurement, indent=1))
            print(f"Wrote {args.json}")
    report = benchmark_report.markdown(measurement)
    print(report)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        markers = (f"<!-- {args.section}:start -->", f"<!-- {args.section}:end -->")
        title = "## Speed" if args.section == "speed" else f"## {args.section.replace('-', ' ').capitalize()}"
        print(f"Wrote {benchmark_report.write_section(args.output, report, title, markers)}")


def _section_name(text):
    """A ``--section`` name: letters, digits and dashes (it goes into an HTML comment)."""
    if not text or not all(c.isalnum() or c == "-" for c in text):
        raise argparse.ArgumentTypeError(f"a section name is letters, digits and dashes, e.g. trainer-speed; got {text!r}")
    return text


def _model_batch_sizes(items):
    """``NAME=1,8`` items as ``{name: (1, 8)}``."""
    sizes = {}
    for item in items:
        name, sep, text = item.partition("=")
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            values = ()
        if not sep or not values or min(values) < 1:
            raise ValueError(f"--model-batch-sizes takes NAME=B1,B2 (e.g. abn_resnet152=1,8); got {item!r}.")
        sizes[_index_name(name)] = values
    return sizes


def _benchmark_worker(args):
    """One task of ``benchmark`` in this (fresh) process; the result is the last line, as JSON.
    Keras (and its backend) is imported only for the tasks that run it."""
    from keras_attn_zoo import timing
    from keras_attn_zoo.benchmark_suite import RESULT

    task = json.loads(args.task)
    kind, system = task["task"], task.get("system", "")
    shape = tuple(task["image_shape"]) if task.get("image_shape") else None
    timed = {"repeats": task.get("repeats", 10), "warmup": task.get("warmup", 2), "max_seconds": task.get("max_seconds")}
    threads = task.get("threads")
    if kind == "peak":
        result = timing.matmul_peak(threads=threads)
    elif kind == "prepare":
        import_backend()
        from keras_attn_zoo.benchmark import prepare

        result = prepare(task["model"], task["dir"], task["systems"], data=task.get("data"), data_dir=task.get("data_dir"))
    elif system == "torch-reference":
        import numpy as np

        from keras_attn_zoo import torch_reference

        if threads:
            _torch_threads(threads)
        module = torch_reference.build(task["reference"])
        if kind == "inference":  # the prepared weights (training starts from the module's own initialisation)
            with np.load(task["file"]) as state:
                torch_reference.load_numpy_state(module, dict(state))
            result = {"times": torch_reference.time_inference(module, task["batches"], shape, **timed)}
        else:
            steps = torch_reference.time_training(module, task["batch"], shape, task["reference"]["classes"],
                                                  task["steps"], task["steps"])
            result = {"step_seconds": steps}
        import torch

        result["runtime"] = f"torch {torch.__version__}"
    elif kind == "inference" and system == "onnxruntime":
        times, runtime = timing.time_onnx(task["file"], task["batches"], shape, **timed, threads=threads)
        result = {"times": times, "runtime": runtime}
    elif kind == "inference" and system.startswith("tflite"):
        times, runtime = timing.time_tflite(task["file"], task["batches"], shape, **timed, threads=threads)
        result = {"times": times, "runtime": runtime}
    else:
        import_backend()
        from keras_attn_zoo import benchmark
        from keras_attn_zoo.training.trainer import backend_version

        if threads:
            benchmark.set_backend_threads(threads)

        if kind == "inference":
            result = {"times": benchmark.keras_inference(task["model"], task["weights"], task["batches"], shape,
                                                         compiled=system == "keras-tf-xla", **timed)}
        else:
            measure = benchmark.training if kind == "training" else benchmark.objective
            (row,) = measure(task["model"], data=task.get("data") if kind == "training" else None,
                             batch_size=task["batch"], steps=task["steps"], epochs=2, modes=(task["mode"],),
                             data_dir=task.get("data_dir"))
            result = {"step_seconds": row.get("step_seconds") or [row["step_ms"] / 1000], "data": row["data"],
                      **({"first_epoch_extra_s": row["first_epoch_extra_s"]} if "first_epoch_extra_s" in row else {})}
        result["runtime"] = backend_version()
    print(RESULT + json.dumps(result))


def _torch_threads(threads):
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def _add_benchmark_parser(sub):
    p = sub.add_parser("benchmark", help="speed of every system (Keras on 3 backends, ONNX, TFLite, a PyTorch "
                                         "reference) in interleaved rounds of fresh processes, against the CPU's peak")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--preset", choices=("docs",),
                   help="docs: the models of docs/benchmarks.md (the depth-20 set of every mechanism, "
                        "ABN-ResNet-56/110/152), training for the CIFAR ones")
    p.add_argument("--kinds", nargs="+", default=["inference", "training"], choices=("inference", "training", "objective"),
                   help="objective: step time of the DAT objective against plain training (TensorFlow)")
    p.add_argument("--systems", nargs="+", default=list(INFERENCE_SYSTEMS), choices=INFERENCE_SYSTEMS,
                   help="inference systems (default all)")
    p.add_argument("--training-systems", nargs="+", default=list(TRAINING_SYSTEMS), choices=TRAINING_SYSTEMS)
    p.add_argument("--training-models", nargs="+", metavar="NAME", help="train only these (default: all NAMEs)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 128], help="inference batch sizes")
    p.add_argument("--model-batch-sizes", nargs="+", default=[], metavar="NAME=B1,B2",
                   help="other inference batch sizes for some models, e.g. abn_resnet152=1,8")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (a fresh process per cell and round)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per batch size and round")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    p.add_argument("--max-seconds", type=float, default=20.0, help="stop timing a batch size after this long (>= 1 call)")
    p.add_argument("--data", help="images for int8 calibration and training (default: seeded random)")
    p.add_argument("--data-dir")
    p.add_argument("--train-batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed training steps per round (after as many untimed)")
    p.add_argument("--modes", nargs="+", default=["model"], choices=TRAINING_MODES,
                   help="how Keras training is fed: model (normalised arrays), wrapper (+ augmentation), "
                        "pipeline (+ the trainer's batches), trainer (the trainer itself, with validation; needs --data)")
    p.add_argument("--quiet", type=float, metavar="PERCENT",
                   help="before each cell, wait until the CPU is at most this busy at nice 0 (plus steal)")
    p.add_argument("--quiet-timeout", type=float, default=600.0, help="seconds to wait for --quiet at most")
    p.add_argument("--cell-timeout", type=float, default=3600.0, help="seconds a cell's process may take")
    p.add_argument("--threads", type=int, help="threads of every runtime (default: each runtime's own choice)")
    p.add_argument("--workdir", help="keep the weights and exports here (default: a temporary folder)")
    p.add_argument("--json", help="also write the measurement (every timed call) as JSON")
    p.add_argument("--from-json", metavar="FILE", help="write the report of a saved measurement, measuring nothing")
    p.add_argument("--recheck", action="store_true",
                   help="with --from-json: export the models again and replace their checks (timings kept)")
    p.add_argument("-o", "--output", help="put the report into this markdown file (between its speed markers)")
    p.add_argument("--section", default="speed", type=_section_name,
                   help="with -o: the markers to write between, <!-- SECTION:start --> and :end (default speed; "
                        "docs/benchmarks.md has speed, trainer-speed and objective-speed)")
    p.set_defaults(func=_benchmark)
    p = sub.add_parser("benchmark-worker", help="(internal) one task of `benchmark`, in a fresh process")
    p.add_argument("task", help="the task as JSON")
    p.set_defaults(func=_benchmark_worker)


def _add_train_parser(sub):
    p = sub.add_parser("train", help="train a model with a paper's recipe; writes a .weights.h5 and its record")
    p.add_argument("name")
    p.add_argument("--data", required=True, help="folder, archive, 'cifar10-jpeg' or a tensorflow-datasets name")
    p.add_argument("--recipe", default="fanet_cifar", choices=RECIPE_NAMES)
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--lr", type=float, help="initial / peak learning rate")
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--milestones", help="comma-separated epochs of the step schedule, e.g. 60,120,180")
    p.add_argument("--weight-decay", type=float, help="coupled L2 (PyTorch's weight_decay)")
    p.add_argument("--augmentation", choices=AUGMENTATIONS)
    p.add_argument("--output", help="run folder (default runs/NAME); the same command resumes a killed run")
    p.add_argument("--limit", type=int, help="train on a seeded subset of this many images")
    p.add_argument("--eval-limit", type=int, help="validate and measure on a subset of this many test images")
    p.add_argument("--image-size", type=int, help="model input side (default: the model's, 224 for ImageNet)")
    p.add_argument("--data-dir", help="folder of local archives (default $KERAS_ATTN_ZOO_DATA), or tfds' data_dir")
    p.add_argument("--manual-dir", help="tensorflow-datasets manual folder (ImageNet tar files)")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES)
    p.add_argument("--tpu", help="TPU name for --strategy tpu")
    p.add_argument("--cpu-devices", type=int, help="split the CPU into N logical devices (testing distribution)")
    p.add_argument("--mixed-precision", choices=("float16", "bfloat16"))
    p.add_argument("--sync-bn", action="store_true",
                   help="BatchNormalization statistics over all replicas, not per replica (tf.distribute)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-weights", help="start from these weights (tag or path)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in the output folder")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), help="1: progress bar, 2: a line per epoch")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a builder argument, repeatable, recorded with the run: e.g. auxiliary_weight=0.3 "
                        "(PAYA's per-module cross-entropy, ours, not the paper's), attention_heads=2")
    _add_skip_bad_images_argument(p)
    _add_objective_arguments(p)
    p.set_defaults(func=_train)


def _add_finetune_parser(sub):
    p = sub.add_parser("finetune", help="fine-tune a pretrained model on a folder of class subfolders; "
                                        "writes a .keras with the class names")
    p.add_argument("name")
    p.add_argument("--data", required=True, help="a folder (or archive) of <class>/<image> or train/ and val/ splits")
    p.add_argument("--weights",
                   help="a published tag, a trained or converted .weights.h5, 'torchvision' (converted by "
                        "scripts/convert_torchvision.py --tag torchvision), torchvision's ResNet checkpoint "
                        "(resnet50-11ad3fa6.pth) for the ImageNet ResNets, or none: random initialisation "
                        "(default cifar10)")
    p.add_argument("--from-scratch", action="store_true",
                   help="the same recipe from random initialisation (--weights none): the baseline")
    p.add_argument("--mean", nargs="+", type=float, metavar="M",
                   help="per-channel input mean on the [0, 1] scale, with --std, for --from-scratch or weights "
                        "without a training record (default: measured on the training split)")
    p.add_argument("--std", nargs="+", type=float, metavar="S", help="per-channel input std, with --mean")
    p.add_argument("--output", help="run folder (default runs/NAME_finetune); the same command resumes a killed run")
    p.add_argument("--epochs", type=int, default=10, help="epochs with the backbone unfrozen (0: head only)")
    p.add_argument("--freeze-epochs", type=int, default=5, help="epochs before that with the backbone frozen")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate, backbone frozen")
    p.add_argument("--fine-tune-lr", type=float, default=1e-4, help="Adam learning rate, backbone unfrozen")
    p.add_argument("--validation-split", type=float, default=0.2,
                   help="fraction of each class held out for validation when there are no split folders")
    p.add_argument("--image-size", type=int, help="model input side (default: the model's)")
    p.add_argument("--augmentation", default="flip", choices=AUGMENTATIONS)
    p.add_argument("--limit", type=int, help="a seeded subset of this many training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in the output folder")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), help="1: progress bar, 2: a line per epoch")
    _add_skip_bad_images_argument(p)
    _add_objective_arguments(p)
    p.set_defaults(func=_finetune)


def _add_weights_parsers(sub):
    p = sub.add_parser("evaluate", help="top-1 / top-5 of weights on a data split; top-1, per-class recall and "
                                        "the confusion matrix of a fine-tuned .keras file")
    p.add_argument("name", nargs="?", help="a registered name (with --weights) or a fine-tuned .keras file")
    p.add_argument("--weights", help="a published tag or a trained .weights.h5")
    p.add_argument("--all", action="store_true",
                   help="re-measure every published weight of the data's data set against its manifest row")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", choices=("train", "val", "validation", "test"),
                   help="test (a val/ folder if there is no test/), val or train")
    p.add_argument("-o", "--output", help="also draw the confusion matrix into this PNG")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--limit", type=int, help="a seeded subset of this many images")
    p.add_argument("--data-dir")
    p.add_argument("--manual-dir")
    p.add_argument("--record", action="store_true",
                   help="store the measurement in the manifest row and rewrite the results page")
    _add_skip_bad_images_argument(p)
    _add_normalization_arguments(p)
    p.add_argument("--manifest", help="manifest to record in (default weights/manifest.json)")
    p.add_argument("--results", help="results page to write (default docs/results.md)")
    p.set_defaults(func=_evaluate)
    p = sub.add_parser("publish", help="copy trained weights into weights/, hash them, write the manifest row")
    p.add_argument("weights_file", help="a .weights.h5 written by `keras-attn-zoo train`")
    p.add_argument("--tag", required=True, help="e.g. cifar10")
    p.add_argument("--manifest", help="default weights/manifest.json")
    p.add_argument("--results", help="results page to write (default docs/results.md)")
    p.add_argument("--url", help="where the file will be downloadable from")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_publish)
    p = sub.add_parser("download", help="fetch and verify published weights into the cache")
    p.add_argument("spec", metavar="NAME[:TAG]")
    p.set_defaults(func=_download)


def _add_normalization_arguments(p):
    p.add_argument("--mean", type=float, nargs="+", metavar="M",
                   help="per-channel mean on the 0-1 scale, for weights that record no normalisation")
    p.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel std, with --mean")


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-attn-zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered model names")
    p.add_argument("pattern", nargs="?", help="shell-style pattern, e.g. 'fa_*'")
    p.add_argument("--pretrained", action="store_true", help="only names with published weights")
    p.set_defaults(func=_list)
    p = sub.add_parser("info", help="paper, architecture and parameter counts of a model")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)
    p = sub.add_parser("gates", help="the FA gates k_i of a model for a batch of inputs")
    p.add_argument("model")
    p.add_argument("--weights", default=None, help="a .weights.h5 path or a published tag")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_gates)

    p = sub.add_parser("export", help="write a SavedModel, TFLite or ONNX file and check it against Keras")
    p.add_argument("model", help="a registered name or a .keras file")
    p.add_argument("--weights", default=None, help="a .weights.h5 path or a published tag")
    p.add_argument("--format", required=True, choices=["savedmodel", "tflite", "onnx"])
    p.add_argument("--quantize", choices=["float16", "dynamic", "int8"], help="TFLite only")
    p.add_argument("--representative-images", metavar="DIR",
                   help="your images: int8 calibration (required for int8) and the parity check")
    p.add_argument("--batch-size", type=int, default=None, help="fixed batch (1 for mobile); dynamic by default")
    p.add_argument("--outputs", nargs="+", default=[], metavar="LAYER[:INDEX]",
                   help="extra named outputs, e.g. '*_fa:1' for every FA gate")
    p.add_argument("-o", "--output", required=True, help="the file to write (a folder for savedmodel)")
    p.add_argument("--include-preprocessing", action="store_true",
                   help="build the normalisation into the file: it then takes RGB pixels 0-255 as input 'pixels'")
    _add_normalization_arguments(p)
    p.set_defaults(func=_export)

    p = sub.add_parser("predict", help="top-k classes of image files")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", required=True, help="a registered name or a .keras file")
    p.add_argument("--weights", default=None, help="a .weights.h5 path or a published tag")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--format", default="text", choices=PREDICTION_FORMATS,
                   help="text: 'path: class score, ...' lines; csv: path,rank,class,score rows; json: one document")
    p.add_argument("--class-names", default=None, help="a text file with one class name per line")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--early-exit", type=float, default=None, metavar="THRESHOLD",
                   help="PAYA models: leave at the first attention module whose own top score reaches THRESHOLD")
    _add_normalization_arguments(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("explain", help="Grad-CAM, ABN attention map, FA gates and SE weights of one image, as a PNG")
    p.add_argument("image")
    p.add_argument("--model", required=True, help="a registered name or a .keras file")
    p.add_argument("--weights", default=None, help="a .weights.h5 path or a published tag")
    p.add_argument("--layer", default=None, help="the Grad-CAM layer; defaults to the model's")
    p.add_argument("--class-index", type=int, default=None, help="the class to explain; defaults to the top one")
    p.add_argument("--class-names", default=None, help="a text file with one class name per line")
    p.add_argument("-o", "--output", required=True, help="the PNG to write")
    p.add_argument("--dat", action="store_true",
                   help="draw the DAT view instead: the target (--class-index, else the top class) and the "
                        "most confusing class's attention maps at the inner and last layers, with their soft IoU")
    p.add_argument("--dat-attention", choices=("channel", "pixel"), default="channel",
                   help="with --dat: A_ch (channel-wise, default) or A_px (pixel-wise) maps")
    _add_normalization_arguments(p)
    p.set_defaults(func=_explain)

    _add_train_parser(sub)
    _add_finetune_parser(sub)
    _add_weights_parsers(sub)
    _add_benchmark_parser(sub)
    return parser


def _check_weights_paths(args):
    """A folder given where a weights file goes is named as one (the loaders say "not found")."""

    flags = {"weights": "--weights", "init_weights": "--init-weights", "weights_file": "WEIGHTS_FILE"}
    for option, flag in flags.items():
        value = getattr(args, option, None)
        if value is not None and is_path(value) and os.path.isdir(value):
            raise ValueError(f"{flag} {value} is a folder: pass the .weights.h5 file in it, or a published tag.")


# A native log line: severity, date, time, thread, file:line] message (abseil / glog format).
_NATIVE_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
# how a dropped line's message goes on (cpu_feature_guard's second line, indented ones)
_CONTINUATIONS = (" ", "\t", "To enable the following instructions")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def backend_chatter_filter(text, min_level):
    """``text`` without the native log lines below ``min_level`` (TF_CPP_MIN_LOG_LEVEL: 1 drops
    INFO, 2 also WARNING, 3 also ERROR), the indented or known lines that continue them, and
    abseil's preamble about them; everything else (Python warnings, tracebacks) is kept."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _NATIVE_LOG_LINE.match(line)
        if match:
            dropping = "IWEF".index(match[1]) < min_level
        elif line.startswith(_ABSL_PREAMBLE):
            dropping = min_level >= 1
        elif not line.startswith(_CONTINUATIONS):
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide the backend's native start-up lines (TensorFlow's oneDNN and CPU-feature notes, which
    TensorFlow 2.21 writes through abseil before it reads TF_CPP_MIN_LOG_LEVEL): stderr's file
    descriptor goes to a temporary file while the backend is imported, then what is not such a
    line is written back (an import error's message included)."""
    try:
        level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        level = 0
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr descriptor: nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            rest = backend_chatter_filter(text, level) if level > 0 else text
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


# Optional packages that TensorFlow's and Keras' own imports pull in when installed, and that no
# command needs from them: tf.lite's jax.jit (for converting JAX functions) and Keras' image-
# gallery plots (matplotlib.pyplot). Together about 1.5 s of the 4-5 s start-up on two cores.
_BACKEND_EXTRAS = ("jax", "matplotlib")


class _Refuse(importlib.abc.MetaPathFinder):
    """Refuses to find ``names`` (importers that try them and go on without get an ImportError)."""

    def __init__(self, names):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is not imported while the backend starts", name=fullname)
        return None


def _keras_backend():
    """The backend Keras will pick: $KERAS_BACKEND, else keras.json's, else TensorFlow (Keras' rule)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    config = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "keras.json"
    try:
        return json.loads(config.read_text()).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def import_backend():
    """Import Keras and its backend once, as fast and as quietly as it allows: TensorFlow's native
    start-up lines hidden (:func:`_quiet_native_stderr`), and on the TensorFlow backend the
    optional extras its import would pull in skipped (``_BACKEND_EXTRAS``; importable again
    afterwards, e.g. matplotlib for ``explain``)."""
    if "keras" in sys.modules:
        return
    skip = [] if _keras_backend() != "tensorflow" else [m for m in _BACKEND_EXTRAS if m not in sys.modules]
    refuse = _Refuse(skip)
    sys.meta_path.insert(0, refuse)
    try:
        with _quiet_native_stderr():
            import keras  # noqa: F401
    finally:
        sys.meta_path.remove(refuse)


def main(argv=None):
    # Before anything imports TensorFlow: its C++ start-up lines stay hidden unless the user asked
    # for them by setting TF_CPP_MIN_LOG_LEVEL.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        _check_weights_paths(args)
        if args.command not in LIGHT_COMMANDS:
            import_backend()
        args.func(args)
    except (ValueError, OSError, ImportError, FloatingPointError) as e:  # FloatingPointError: training diverged
        print(f"keras-attn-zoo: error: {e}", file=sys.stderr)
        return 2
    return 0

if __name__ == "__main__":
    sys.exit(main())

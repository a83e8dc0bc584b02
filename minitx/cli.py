"""Command-line front end: ``minitx train | generate | eval {perplexity,passkey,long-context} | demo | figures``.

Errors in the user's input (a bad flag value, a missing file, a damaged checkpoint) are
printed as one line starting with "error:" and exit with status 2; they are not tracebacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointError

log = logging.getLogger("minitx")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append "(default: X)" only where X is a real value and the help does not state one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or action.required:
            return text
        return super()._get_help_string(action)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 128,256,512, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _prepare_output_folder(folder) -> Path:
    """Create ``folder`` and check it is writable, before any long work starts."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--out {str(folder)!r} is a file. Choose a folder path.")
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / ".minitx-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise PermissionError(f"--out {str(folder)!r} is not writable ({error.strerror}). Choose another folder.") from None
    return folder


def _load_corpus(data):
    from .data import load_default_corpus, load_text

    return load_text(data) if data else load_default_corpus()


def _float_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0,0.5,1, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return values


def _apply_position(model, args, length: int):
    """Return ``model`` switched to the encoding asked for with --position, if any.

    Without --window, Self-Extend uses W = L // 4; without --group-size, the smallest G that
    keeps ``length`` tokens inside the training length. The chosen values are printed.
    """
    from .positions import RoPE, SelfExtend, fit_group_size

    if args.position != "self-extend" and (args.group_size is not None or args.window is not None):
        raise ValueError("--group-size and --window apply to Self-Extend only. Add --position self-extend.")
    if args.position in (None, model.config.position) and args.position != "self-extend":
        return model
    c = model.config
    if args.position == "self-extend":
        if c.position == "sinusoidal":
            raise ValueError(
                "--position self-extend needs a model trained with RoPE, but this checkpoint was "
                "trained with sinusoidal positions. Train one with minitx train --position rope."
            )
        window = max(1, c.context_length // 4) if args.window is None else args.window
        group_size = fit_group_size(c.context_length, length, window) if args.group_size is None else args.group_size
        print(f"Self-Extend with group size G={group_size} and window W={window}.")
        return model.with_position(SelfExtend(c.head_dim, group_size, window, base=c.base, pairing=c.pairing))
    if args.position == "rope" and c.position != "sinusoidal":
        return model.with_position(RoPE(c.head_dim, base=c.base, pairing=c.pairing))
    raise ValueError(
        f"This checkpoint was trained with position={c.position!r} and cannot run as "
        f"{args.position!r}. Train one with minitx train --position {args.position}."
    )


def cmd_train(args) -> int:
    from .checkpoint import load_checkpoint
    from .config import ModelConfig
    from .data import build_tokenizer, split_train_val
    from .model import TransformerLM
    from .train import TrainConfig, train

    if args.recipe:
        return _train_recipe(args)
    text = _load_corpus(args.data)
    out = _prepare_output_folder(args.out)
    checkpoint = out / "model.npz"
    train_config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, min_learning_rate=args.min_lr,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        eval_interval=args.eval_interval, checkpoint_interval=args.checkpoint_interval, seed=args.seed,
    )
    if checkpoint.exists() and not (args.resume or args.overwrite):
        raise FileExistsError(
            f"{checkpoint} already exists. Pass --resume to continue training it, --overwrite to "
            "replace it, or choose another --out folder."
        )
    resume = None
    if args.resume:
        model, tokenizer, optimizer_state, meta = load_checkpoint(checkpoint)
        if "step" not in meta or "history" not in meta or not optimizer_state:
            raise CheckpointError(
                f"{checkpoint} contains no training state (step, history and optimizer), so training "
                "cannot resume from it. Train without --resume, or into another --out folder."
            )
        if meta["step"] >= args.steps:
            print(f"{checkpoint} is already at step {meta['step']}; pass --steps above {meta['step']} to train further.")
            return 0
        resume = {"optimizer_state": optimizer_state, "meta": meta}
        print(f"Resuming {checkpoint} from step {meta['step']}; the model settings come from the checkpoint.")
    else:
        tokenizer = build_tokenizer(args.tokenizer, text)
        config = ModelConfig(tokenizer.vocab_size, args.context_length, n_layer=args.n_layer, n_head=args.n_head,
                             n_embd=args.n_embd, position=args.position, norm=args.norm)
        model = TransformerLM(config, seed=args.seed)
    train_ids, val_ids = split_train_val(tokenizer.encode(text))
    print(f"{model.n_params:,} parameters; {len(train_ids):,} training and {len(val_ids):,} validation tokens.")
    history = train(model, train_ids, val_ids, train_config, tokenizer=tokenizer, checkpoint_path=checkpoint,
                    resume=resume, progress=not args.no_progress)
    if history["val_loss"]:
        print(f"Validation loss {history['val_loss'][-1]:.4f} nats after {train_config.steps} steps.")
    print(f"Wrote {checkpoint}.")
    return 0


def _train_recipe(args) -> int:
    from .recipes import get_recipe, run_recipe

    recipe = get_recipe(args.recipe)
    if args.resume or args.data:
        raise ValueError("--recipe fixes the corpus and trains from scratch; drop --resume and --data.")
    checkpoint = _prepare_output_folder(args.out) / f"{recipe.name}.npz"
    print(f"Recipe {recipe.name}: {recipe.description}, {recipe.steps} steps of {recipe.batch_size} x "
          f"{recipe.context_length} tokens, seed {recipe.seed}.")
    _, _, history = run_recipe(recipe.name, out=checkpoint, progress=not args.no_progress)
    print(f"Validation loss {history['val_loss'][-1]:.4f} nats after {recipe.steps} steps.")
    print(f"Wrote {checkpoint}.")
    return 0


def cmd_generate(args) -> int:
    from .checkpoint import load_checkpoint
    from .generate import generate

    model, tokenizer, _, _ = load_checkpoint(args.checkpoint)
    prompt = tokenizer.encode(args.prompt)
    if prompt.size == 0:
        raise ValueError("--prompt is empty. Give at least one character to continue.")
    new_tokens = 200 if args.max_new_tokens is None else args.max_new_tokens
    model = _apply_position(model, args, len(prompt) + new_tokens)
    limit = model.max_length()
    if args.max_new_tokens is None and not args.extrapolate:
        new_tokens = max(0, min(new_tokens, limit - len(prompt)))  # a prompt past the limit fails below
    if len(prompt) + new_tokens > limit and not args.extrapolate:
        raise ValueError(
            f"The prompt ({len(prompt)} tokens) plus --max-new-tokens {new_tokens} exceeds {limit}, the "
            "longest input this model supports. Pass a smaller --max-new-tokens or a shorter prompt, "
            "--position self-extend to extend a RoPE model, or --extrapolate to run past the limit."
        )
    tokens = generate(model, prompt, new_tokens, temperature=args.temperature, top_k=args.top_k,
                      seed=args.seed, extrapolate=args.extrapolate)
    print(args.prompt + tokenizer.decode(tokens[len(prompt):]))
    return 0


def _sweep_requested(args) -> bool:
    if bool(args.sweep_group_sizes) != bool(args.sweep_windows):
        raise ValueError("Give both --sweep-group-sizes and --sweep-windows for a G x W sweep, or neither.")
    return bool(args.sweep_group_sizes)


def _prepare_evaluation(args):
    """Check the flags and output folder, then return (trained, tokenizer, model, lengths, sweep).

    ``model`` is ``trained`` switched to the --position setting; lengths default to 1x..8x L.
    """
    from .recipes import load_pretrained

    if args.out:
        _prepare_output_folder(args.out)
    sweep = _sweep_requested(args)
    trained, tokenizer = load_pretrained(args.model)
    L = trained.config.context_length
    lengths = args.lengths or [L, 2 * L, 4 * L, 8 * L]
    model = _apply_position(trained, args, max(lengths))
    return trained, tokenizer, model, lengths, sweep


def cmd_eval_perplexity(args) -> int:
    from .data import split_train_val
    from .long_context import format_by_length_table, format_sweep_table, write_json
    from .plotting import plot_perplexity_by_length, plot_self_extend_sweep, save_figure
    from .tasks import perplexity_by_length, sweep_self_extend

    trained, tokenizer, model, lengths, sweep = _prepare_evaluation(args)
    L = trained.config.context_length
    _, val_ids = split_train_val(tokenizer.encode(_load_corpus(args.data)))
    results = perplexity_by_length(model, val_ids, lengths, args.max_tokens, progress=not args.no_progress)

    name = _setting_name(model)
    if max(lengths) > model.max_length():
        print(f"Lengths above {model.max_length()} exceed what this model supports; expect them to degrade.")
    print(f"Validation perplexity of {args.model} ({name}, trained at {L}):")
    print(format_by_length_table({name: results}, L))
    payload = {"model": str(args.model), "config": dataclasses.asdict(model.config),
               "perplexity": {str(n): p for n, p in results.items()}}
    if sweep:
        length = max(lengths)
        payload["sweep"] = sweep_self_extend(
            trained, args.sweep_group_sizes, args.sweep_windows, progress=not args.no_progress,
            metric=lambda m: perplexity_by_length(m, val_ids, [length], args.max_tokens)[length],
        )
        payload["sweep"]["length"] = length
        print(f"\nSelf-Extend G x W, perplexity at {length} tokens:")
        print(format_sweep_table(payload["sweep"]))
    if args.out:
        out = _prepare_output_folder(args.out)
        written = [write_json(out / "perplexity.json", payload),
                   save_figure(plot_perplexity_by_length({name: results}, L), out / "perplexity_by_length.png")]
        if sweep:
            figure = plot_self_extend_sweep(payload["sweep"], f"perplexity at {payload['sweep']['length']}")
            written.append(save_figure(figure, out / "self_extend_sweep_perplexity.png"))
        print(f"Wrote {', '.join(str(path) for path in written)}.")
    return 0


def _setting_name(model) -> str:
    c = model.config
    if c.position == "self-extend":
        return f"rope + self-extend (G={c.group_size}, W={c.window})"
    return c.position


def cmd_eval_passkey(args) -> int:
    from .long_context import format_passkey_table, format_sweep_table, write_json
    from .plotting import plot_passkey_heatmaps, plot_self_extend_sweep, save_figure
    from .tasks import evaluate_passkey, sweep_self_extend

    trained, tokenizer, model, lengths, sweep = _prepare_evaluation(args)
    L = trained.config.context_length

    def evaluate(m, lengths, progress=False):
        return evaluate_passkey(m, tokenizer, lengths, args.depths, n_keys=args.keys, seed=args.seed,
                                batch_size=args.batch_size, method=args.method, progress=progress)

    result = evaluate(model, lengths, progress=not args.no_progress)
    name = _setting_name(model)
    print(f"Passkey exact-match accuracy of {args.model} ({name}, trained at {L}, {args.keys} keys per cell):")
    print(format_passkey_table(result, L))
    payload = {"model": str(args.model), "config": dataclasses.asdict(model.config), "passkey": result}
    if sweep:
        length = max(lengths)
        payload["sweep"] = sweep_self_extend(trained, args.sweep_group_sizes, args.sweep_windows,
                                             progress=not args.no_progress,
                                             metric=lambda m: np.mean(evaluate(m, [length])["accuracy"]))
        payload["sweep"]["length"] = length
        print(f"\nSelf-Extend G x W, passkey accuracy at {length} tokens (mean over depths):")
        print(format_sweep_table(payload["sweep"], "{:.0%}"))
    if args.out:
        out = _prepare_output_folder(args.out)
        written = [write_json(out / "passkey.json", payload),
                   save_figure(plot_passkey_heatmaps({name: result}, L), out / "passkey_heatmap.png")]
        if sweep:
            figure = plot_self_extend_sweep(payload["sweep"], f"passkey accuracy at {payload['sweep']['length']} (%)",
                                            percent=True)
            written.append(save_figure(figure, out / "self_extend_sweep_passkey.png"))
        print(f"Wrote {', '.join(str(path) for path in written)}.")
    return 0


def cmd_eval_long_context(args) -> int:
    from .long_context import run_long_context_study

    run_long_context_study(_prepare_output_folder(args.out), n_keys=args.keys, progress=not args.no_progress)
    return 0


def cmd_demo(args) -> int:
    from .demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    if args.steps is not None:
        settings = dataclasses.replace(settings, steps=args.steps)
    if args.group_size is not None:
        settings = dataclasses.replace(settings, group_size=args.group_size)
    if args.window is not None:
        settings = dataclasses.replace(settings, window=args.window)
    run_demo(_prepare_output_folder(args.out), settings, progress=not args.no_progress)
    return 0


def cmd_figures(args) -> int:
    from .figures import build_figures

    result = build_figures(_prepare_output_folder(args.out), long_context=not args.no_long_context)
    print(f"Wrote {len(result['written'])} files to {args.out}.")
    for name, reason in result["skipped"]:
        print(f"Skipped {name}: {reason}.")
    return 0


def _add_position_flags(parser):
    parser.add_argument("--position", choices=("sinusoidal", "rope", "self-extend"), default=None,
                        help="run a RoPE-trained model as plain RoPE or with Self-Extend; a sinusoidal "
                             "model only as sinusoidal (default: as trained)")
    parser.add_argument("--group-size", type=int, default=None,
                        help="Self-Extend group size G (default: the smallest G that keeps the longest input inside the training length)")
    parser.add_argument("--window", type=int, default=None,
                        help="Self-Extend neighbour window W, in tokens (default: a quarter of the training length)")


def _add_sweep_flags(parser):
    parser.add_argument("--sweep-group-sizes", type=_int_list, default=None,
                        help="comma-separated group sizes G for a Self-Extend G x W sweep at the longest length")
    parser.add_argument("--sweep-windows", type=_int_list, default=None,
                        help="comma-separated windows W, in tokens, for the G x W sweep")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minitx", description="Train and probe small transformers with different position encodings.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train RoPE and sinusoidal models, compare them past the training length",
                               formatter_class=_HelpFormatter)
    demo.add_argument("--out", default="minitx-demo", help="output folder for checkpoints, results.json and the plot")
    demo.add_argument("--quick", action="store_true", help="a seconds-long run with a tiny model (for tests)")
    demo.add_argument("--steps", type=int, default=None, help="training steps per model (default: 800, or 30 with --quick)")
    demo.add_argument("--group-size", type=int, default=None, help="Self-Extend group size G (default: 16, with or without --quick)")
    demo.add_argument("--window", type=int, default=None, help="Self-Extend window W in tokens (default: 32, or 8 with --quick)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(run=cmd_demo)

    figures = commands.add_parser("figures", help="regenerate every figure (PNG, SVG, GIF) from seeded code",
                                  formatter_class=_HelpFormatter)
    figures.add_argument("--out", default="figures", help="output folder (files of the same name are replaced)")
    figures.add_argument("--no-long-context", action="store_true",
                         help="leave out the long-context study on the shipped checkpoints, which takes minutes")
    figures.set_defaults(run=cmd_figures)

    tr = commands.add_parser("train", help="train a model and write OUT/model.npz",
                             formatter_class=_HelpFormatter)
    tr.add_argument("--recipe", default=None, help="train a shipped model's recipe (char-rope, char-sinusoidal, "
                    "passkey-rope, passkey-sinusoidal) and write OUT/NAME.npz; the recipe fixes every other setting")
    tr.add_argument("--data", default=None, help="UTF-8 text file (default: the CPython language reference topics)")
    tr.add_argument("--tokenizer", choices=("char", "byte"), default="char", help="one id per character, or per UTF-8 byte")
    tr.add_argument("--out", default="minitx-run", help="output folder")
    tr.add_argument("--resume", action="store_true",
                    help="continue training from OUT/model.npz; the model and tokenizer settings then come from the checkpoint")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing OUT/model.npz instead of stopping")
    tr.add_argument("--position", choices=("rope", "sinusoidal"), default="rope", help="position encoding to train with")
    tr.add_argument("--context-length", type=int, default=128, help="training length L, in tokens")
    tr.add_argument("--n-layer", type=int, default=3, help="number of transformer blocks")
    tr.add_argument("--n-head", type=int, default=4, help="attention heads per block")
    tr.add_argument("--n-embd", type=int, default=96, help="embedding width C")
    tr.add_argument("--norm", choices=("layernorm", "rmsnorm"), default="layernorm", help="normalisation layer")
    tr.add_argument("--steps", type=int, default=800, help="optimiser steps")
    tr.add_argument("--batch-size", type=int, default=16, help="sequences per step")
    tr.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    tr.add_argument("--min-lr", type=float, default=3e-4, help="learning rate at the end of the cosine decay")
    tr.add_argument("--warmup-steps", type=int, default=50, help="steps of linear warmup")
    tr.add_argument("--weight-decay", type=float, default=0.1, help="AdamW decoupled weight decay")
    tr.add_argument("--grad-clip", type=float, default=1.0, help="maximum global gradient L2 norm (0: no clipping)")
    tr.add_argument("--eval-interval", type=int, default=100, help="steps between validation losses")
    tr.add_argument("--checkpoint-interval", type=int, default=200, help="steps between checkpoints (0: only at the end)")
    tr.add_argument("--seed", type=int, default=0, help="seed for the weights and the batches")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    tr.set_defaults(run=cmd_train)

    gen = commands.add_parser("generate", help="continue a prompt with a trained model",
                              formatter_class=_HelpFormatter)
    gen.add_argument("--checkpoint", required=True, help="a .npz file written by minitx train or minitx demo")
    gen.add_argument("--prompt", required=True, help="text to continue")
    gen.add_argument("--max-new-tokens", type=int, default=None,
                     help="tokens to generate (default: 200, or fewer if the model's maximum length is reached first)")
    gen.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (0: greedy)")
    gen.add_argument("--top-k", type=int, default=None, help="sample only from the k most likely tokens")
    gen.add_argument("--seed", type=int, default=None, help="seed for sampling")
    gen.add_argument("--extrapolate", action="store_true", help="allow lengths past what the position encoding supports")
    _add_position_flags(gen)
    gen.set_defaults(run=cmd_generate)

    ev = commands.add_parser("eval", help="evaluate a trained model")
    tasks = ev.add_subparsers(dest="task", required=True)
    ppl = tasks.add_parser("perplexity", help="validation perplexity at several input lengths",
                           formatter_class=_HelpFormatter)
    ppl.add_argument("--model", "--checkpoint", dest="model", default="char-rope",
                     help="a shipped model name (char-rope, passkey-rope, ...) or a .npz checkpoint path")
    ppl.add_argument("--data", default=None, help="the UTF-8 text the model was trained on (default: the CPython topics)")
    ppl.add_argument("--lengths", type=_int_list, default=None, help="comma-separated input lengths in tokens (default: 1x,2x,4x,8x L)")
    ppl.add_argument("--max-tokens", type=int, default=8192, help="held-out tokens scored per length")
    ppl.add_argument("--out", default=None, help="folder for perplexity.json and the plots (default: print only)")
    ppl.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_position_flags(ppl)
    _add_sweep_flags(ppl)
    ppl.set_defaults(run=cmd_eval_perplexity)

    pk = tasks.add_parser("passkey", help="passkey retrieval accuracy by input length and key depth",
                          formatter_class=_HelpFormatter)
    pk.add_argument("--model", default="passkey-rope",
                    help="a shipped model name (passkey-rope, passkey-sinusoidal, ...) or a .npz checkpoint path")
    pk.add_argument("--lengths", type=_int_list, default=None,
                    help="comma-separated input lengths in tokens, prompt plus the 6-token answer (default: 1x,2x,4x,8x L)")
    pk.add_argument("--depths", type=_float_list, default=[0.0, 0.25, 0.5, 0.75, 1.0],
                    help="comma-separated key depths, 0 (start of the filler) to 1 (right before the question)")
    pk.add_argument("--keys", type=int, default=20, help="random keys per (length, depth) cell")
    pk.add_argument("--seed", type=int, default=0, help="seed of the keys")
    pk.add_argument("--batch-size", type=int, default=8, help="prompts per forward")
    pk.add_argument("--method", choices=("score", "generate"), default="score",
                    help="score: teacher-forced argmax, one forward per batch; generate: greedy decoding with "
                         "the KV cache. Both give the same exact-match accuracy")
    pk.add_argument("--out", default=None, help="folder for passkey.json and the plots (default: print only)")
    pk.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_position_flags(pk)
    _add_sweep_flags(pk)
    pk.set_defaults(run=cmd_eval_passkey)

    study = tasks.add_parser("long-context", help="the Self-Extend study on the shipped models: all tables, "
                             "JSON and figures", formatter_class=_HelpFormatter)
    study.add_argument("--out", default="figures", help="output folder")
    study.add_argument("--keys", type=int, default=10, help="random keys per passkey (length, depth) cell")
    study.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    study.set_defaults(run=cmd_eval_long_context)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, CheckpointError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory. Use a smaller model, batch or length.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

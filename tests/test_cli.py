"""The command line: the quick demo end to end, and each subcommand on a tiny model."""

import json
import subprocess
import sys

import numpy as np
import pytest

from minitx.cli import build_parser, main


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


def test_quick_demo_writes_results(demo_output):
    results = json.loads((demo_output / "results.json").read_text())
    assert set(results["perplexity"]) == {"sinusoidal", "rope", "rope + self-extend"}
    L = results["trained_length"]
    assert results["lengths"] == [L, 2 * L, 4 * L, 8 * L]
    for by_length in results["perplexity"].values():
        values = [by_length[str(n)] for n in results["lengths"]]
        assert all(np.isfinite(values))
        assert min(values) > 1
    assert (demo_output / "perplexity_by_length.png").stat().st_size > 10_000
    assert (demo_output / "rope.npz").is_file()
    assert (demo_output / "sinusoidal.npz").is_file()
    assert not list(demo_output.glob(".*")), "temporary files were left behind"


def test_quick_demo_prints_table(capsys, tmp_path):
    main(["demo", "--quick", "--no-progress", "--out", str(tmp_path), "--steps", "5"])
    printed = capsys.readouterr().out
    assert "rope + self-extend" in printed
    assert "(8x L)" in printed
    assert "continuation" in printed


def test_train_then_generate_and_eval(tmp_path, capsys):
    data = tmp_path / "tiny.txt"
    data.write_text("the quick brown fox jumps over the lazy dog. " * 60, encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--context-length", "16", "--n-layer", "1",
            "--n-head", "2", "--n-embd", "16", "--steps", "6", "--eval-interval", "3", "--batch-size", "4",
            "--checkpoint-interval", "3", "--no-progress"]
    assert main(args) == 0
    assert (out / "model.npz").is_file()
    assert main(args[:-1] + ["--steps", "9", "--resume", "--no-progress"]) == 0
    assert "Resuming" in capsys.readouterr().out

    checkpoint = str(out / "model.npz")
    assert main(["generate", "--checkpoint", checkpoint, "--prompt", "the quick", "--max-new-tokens", "5",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("the quick")
    assert main(["eval", "perplexity", "--checkpoint", checkpoint, "--data", str(data), "--lengths", "16,64",
                 "--position", "self-extend", "--group-size", "4", "--window", "4", "--no-progress",
                 "--out", str(tmp_path / "eval")]) == 0
    saved = json.loads((tmp_path / "eval" / "perplexity.json").read_text())
    assert set(saved["perplexity"]) == {"16", "64"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--checkpoint", "missing.npz", "--prompt", "a"], "not found"),
        (["train", "--data", "missing.txt"], "not found"),
        (["train", "--position", "rope", "--n-embd", "10", "--n-head", "4", "--steps", "1"], "not divisible"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert message in err
    assert "Traceback" not in err


def test_cli_rejects_bad_lengths(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "perplexity", "--checkpoint", "x", "--lengths", "12,abc"])
    assert "comma-separated integers" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [["demo"], ["train"], ["generate"], ["eval", "perplexity"], ["eval", "passkey"], ["eval", "long-context"], ["figures"]],
)
def test_help_names_defaults(command):
    text = subprocess.run([sys.executable, "-m", "minitx", *command, "--help"], capture_output=True, text=True, check=True).stdout
    assert "default" in text
    assert "usage: minitx" in text


def test_train_out_file_fails_early(tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    assert main(["train", "--out", str(blocker), "--steps", "1"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_self_extend_flags_need_self_extend(tmp_path, capsys, demo_output):
    assert main(["generate", "--checkpoint", str(demo_output / "rope.npz"), "--prompt", "def", "--window", "4"]) == 2
    assert "--position self-extend" in capsys.readouterr().err


def test_resume_needs_training_state(tmp_path, capsys, demo_output):
    import shutil

    from minitx.checkpoint import load_checkpoint, save_checkpoint

    model, tokenizer, _, _ = load_checkpoint(demo_output / "rope.npz")
    save_checkpoint(tmp_path / "model.npz", model, tokenizer)
    assert main(["train", "--out", str(tmp_path), "--resume", "--steps", "5"]) == 2
    assert "no training state" in capsys.readouterr().err
    shutil.copy(demo_output / "rope.npz", tmp_path / "model.npz")
    assert main(["train", "--out", str(tmp_path), "--resume", "--steps", "5", "--no-progress"]) == 0
    assert "already at step" in capsys.readouterr().out


def test_demo_rejects_bad_settings_before_training(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--group-size", "0"]) == 2
    assert "group_size must be >= 1" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.npz"))


def test_train_refuses_to_overwrite_a_checkpoint(tmp_path, capsys, demo_output):
    import shutil

    shutil.copy(demo_output / "rope.npz", tmp_path / "model.npz")
    before = (tmp_path / "model.npz").read_bytes()
    assert main(["train", "--out", str(tmp_path), "--steps", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "model.npz").read_bytes() == before


def test_generate_default_length_fits_the_model(capsys, demo_output):
    assert main(["generate", "--checkpoint", str(demo_output / "rope.npz"), "--prompt", "def ", "--temperature", "0"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("def ")
    assert len(printed.rstrip("\n")) == 32  # the quick model's context length


def test_self_extend_settings_are_fitted_and_printed(capsys, demo_output):
    assert main(["eval", "perplexity", "--checkpoint", str(demo_output / "rope.npz"), "--lengths", "32,256",
                 "--position", "self-extend", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "G=11 and window W=8" in printed  # smallest G with G * (32 - 8 + 8 // G) >= 256
    assert "rope + self-extend (G=11, W=8)" in printed


def test_help_states_each_default_once():
    ppl = subprocess.run([sys.executable, "-m", "minitx", "eval", "perplexity", "--help"], capture_output=True, text=True, check=True).stdout
    assert "(default: None)" not in ppl
    assert "(default: False)" not in ppl
    assert ppl.count("(default:") >= 3


def test_eval_passkey_writes_table_json_and_figures(tmp_path, capsys):
    out = tmp_path / "passkey"
    argv = ["eval", "passkey", "--model", "passkey-rope", "--position", "self-extend", "--group-size", "4",
            "--window", "32", "--lengths", "128,300", "--depths", "0,1", "--keys", "2", "--no-progress",
            "--sweep-group-sizes", "2,4", "--sweep-windows", "16,32", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "rope + self-extend (G=4, W=32)" in printed
    assert "G \\ W" in printed
    saved = json.loads((out / "passkey.json").read_text())
    assert saved["passkey"]["lengths"] == [128, 300]
    assert np.array(saved["passkey"]["accuracy"]).shape == (2, 2)
    assert np.array(saved["sweep"]["values"]).shape == (2, 2)
    assert saved["sweep"]["length"] == 300
    for figure in ("passkey_heatmap.png", "self_extend_sweep_passkey.png"):
        assert (out / figure).stat().st_size > 10_000
    assert not list(out.glob(".*")), "temporary files were left behind"


def test_eval_perplexity_accepts_shipped_name(tmp_path, capsys):
    out = tmp_path / "ppl"
    argv = ["eval", "perplexity", "--model", "char-rope", "--lengths", "128,256", "--max-tokens", "512",
            "--sweep-group-sizes", "4", "--sweep-windows", "16,32", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    saved = json.loads((out / "perplexity.json").read_text())
    assert set(saved["perplexity"]) == {"128", "256"}
    assert (out / "self_extend_sweep_perplexity.png").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "passkey", "--model", "passkey-sinusoidal", "--position", "self-extend", "--keys", "1"], "trained with RoPE"),
        (["eval", "passkey", "--model", "nope", "--keys", "1"], "neither a shipped model"),
        (["eval", "passkey", "--lengths", "300", "--sweep-windows", "16"], "Give both"),
        (["eval", "perplexity", "--model", "char-rope", "--position", "sinusoidal"], "cannot run as 'sinusoidal'"),
        (["train", "--recipe", "passkey-alibi"], "Unknown recipe"),
    ],
)
def test_eval_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert message in err


def test_generate_prompt_past_limit_names_flags(capsys, demo_output):
    assert main(["generate", "--checkpoint", str(demo_output / "rope.npz"), "--prompt", "x" * 40]) == 2
    assert "--max-new-tokens" in capsys.readouterr().err

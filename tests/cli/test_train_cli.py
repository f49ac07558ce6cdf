"""``grounding train`` and ``grounding ground`` in-process: exit codes, stdout, files written."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from grounding.cli.main import main
from tests.training import single_thread, write_tiny_config, write_tiny_world  # noqa: F401 (single_thread: autouse)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_world(tmp_path_factory.mktemp("world"), num_videos=10, num_test=3)


@pytest.fixture(scope="module")
def trained(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder trained for one epoch through the CLI."""
    folder = tmp_path_factory.mktemp("cli")
    config = write_tiny_config(folder / "tiny.yaml", world, folder / "ignored")
    assert main(["train", "--config", str(config), "--output-dir", str(folder / "run"), "train.epochs=1"]) == 0
    return folder / "run"


def test_train_prints_a_summary_and_writes_the_run(trained: Path, world: Path, tmp_path: Path, capsys) -> None:
    assert (trained / "best" / "model.safetensors").is_file() and (trained / "last" / "training_state.json").is_file()
    assert (trained / "log.csv").read_text().count("\n") == 2  # header + one epoch
    config = write_tiny_config(tmp_path / "tiny.yaml", world, tmp_path / "run")
    capsys.readouterr()
    assert main(["train", "--config", str(config), "train.epochs=1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["run_dir"] == str(tmp_path / "run") and summary["epochs_done"] == 1
    assert summary["best_split"] == "val" and summary["best_epoch"] == 1
    assert set(summary["metrics"]) == {"val", "test"} and summary["metrics"]["test"]["num_queries"] == 3


def test_train_resume_flag_continues_a_stopped_run(world: Path, tmp_path: Path, capsys) -> None:
    config = write_tiny_config(tmp_path / "tiny.yaml", world, tmp_path / "run", stop_after_epoch=1)
    assert main(["train", "--config", str(config)]) == 0
    assert "stopped (resume with --resume) after epoch 1" in capsys.readouterr().out
    assert main(["train", "--config", str(config), "train.stop_after_epoch=null", "--resume"]) == 0
    assert "finished after epoch 2" in capsys.readouterr().out


def test_a_deterministic_training_run_never_imports_dynamo(world: Path, tmp_path: Path) -> None:
    """torch.optim's wrappers and torch.use_deterministic_algorithms would import torch._dynamo (~75 MB resident)."""
    config = write_tiny_config(tmp_path / "tiny.yaml", world, tmp_path / "run", epochs=1, deterministic=True)
    script = textwrap.dedent(
        f"""
        import sys, torch
        from grounding.model import GroundingModel
        seen = []
        forward = GroundingModel.score_encoded  # training and evaluation both pass through it
        def recording(self, *args, **kwargs):
            seen.append(torch.are_deterministic_algorithms_enabled())
            return forward(self, *args, **kwargs)
        GroundingModel.score_encoded = recording
        from grounding.cli.main import main
        assert main(["train", "--config", {str(config)!r}]) == 0
        print(all(seen) and bool(seen), torch.are_deterministic_algorithms_enabled(), "torch._dynamo" in sys.modules)
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().splitlines()[-1] == "True False False"


def test_unknown_override_is_one_line_with_a_suggestion(capsys) -> None:
    assert main(["train", "train.learning_rate=0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err == (
        "grounding train: error: override 'train.learning_rate=0.1': unknown config key 'train.learning_rate'; "
        "did you mean 'train.lr'?"
    )


def test_print_config_shows_the_resolved_yaml(capsys) -> None:
    assert main(["train", "--print-config", "train.epochs=3", "--output-dir", "runs/x"]) == 0
    out = capsys.readouterr().out
    assert "  epochs: 3\n" in out and "  output_dir: runs/x\n" in out and out.startswith("model:\n")


def test_ground_features_json_gives_spans_in_seconds_sorted_by_score(trained: Path, world: Path, capsys) -> None:
    args = ["ground", "--checkpoint", str(trained), "--features", str(world / "features.h5"), "--video-id", "v08",
            "--query", "a red ball jumps", "--query", "the blue box spins", "--top-k", "4", "--json"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["checkpoint"] == str(trained / "best") and payload["video_id"] == "v08"
    duration = payload["duration"]
    rows = [json.loads(line) for line in (world / "test.jsonl").read_text().splitlines()]
    assert duration == next(row["duration"] for row in rows if row["vid"] == "v08")  # from the file's attrs
    assert [entry["query"] for entry in payload["queries"]] == ["a red ball jumps", "the blue box spins"]
    for entry in payload["queries"]:
        spans = entry["spans"]
        assert len(spans) == 4
        assert [s["score"] for s in spans] == sorted((s["score"] for s in spans), reverse=True)
        assert all(0.0 <= s["start"] < s["end"] <= duration for s in spans)


def test_ground_text_output_and_plot(trained: Path, world: Path, tmp_path: Path, capsys) -> None:
    plot = tmp_path / "figures" / "ground.png"
    args = ["ground", "--checkpoint", str(trained / "last"), "--features", str(world / "features.h5"),
            "--video-id", "v09", "--query", "a red ball jumps", "--plot", str(plot)]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{world / 'features.h5'}:v09 (") and out[1] == '"a red ball jumps"'
    assert out[2].lstrip().startswith("1.") and " s - " in out[2] and "score" in out[2]
    assert out[-1] == f"wrote {plot}"
    assert plot.read_bytes()[:8] == PNG_SIGNATURE and plot.stat().st_size > 5000


def test_ground_errors_are_one_line(trained: Path, world: Path, tmp_path: Path, capsys) -> None:
    base = ["ground", "--checkpoint", str(trained), "--query", "a red ball jumps"]
    assert main(base + ["--features", str(world / "features.h5"), "--video-id", "v99"]) == 2
    assert "no video 'v99'" in capsys.readouterr().err
    assert main(base + ["--features", str(world / "features.h5")]) == 2
    assert "--features needs --video-id" in capsys.readouterr().err
    assert main(["ground", "--checkpoint", str(tmp_path), "--features", "f.h5", "--video-id", "a", "--query", "q"]) == 2
    assert "no config.json + model.safetensors" in capsys.readouterr().err
    assert main(base + ["--video", str(tmp_path / "missing.mp4")]) == 2
    assert "missing.mp4: no such video file" in capsys.readouterr().err

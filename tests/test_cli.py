"""The CLI as a user runs it: start-up stays light, and the inspection commands work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tinyllava.testing import tiny_run_spec
from tinyllava.testing.cli_probe import probe_cli
from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

HEAVY = ("torch", "transformers", "peft", "deepspeed", "bitsandbytes")
def run_cli_probe(args: list[str]) -> tuple[int, str, list[str]]:
    proc, imported = probe_cli(args, HEAVY)
    return proc.returncode, proc.stdout, imported


def tinyllava(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "tinyllava"
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, env=env)


def test_help_imports_nothing_heavy():
    code, out, heavy = run_cli_probe(["--help"])
    assert code == 0 and "train" in out and "eval" in out
    assert heavy == []


def test_plugins_list_imports_nothing_heavy():
    code, out, heavy = run_cli_probe(["plugins", "list", "--check"])
    assert code == 0 and "tinyllava-plugin-mlp" in out
    assert heavy == []


def test_components_and_config_validate_import_nothing_heavy(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_run_spec(tmp_path / "runs")))
    for args in (["components"], ["config", "validate", str(spec)]):
        code, out, heavy = run_cli_probe(args)
        assert code == 0, out
        assert heavy == [], args


def test_console_script_version_and_plugins_json():
    proc = tinyllava("version")
    assert proc.returncode == 0 and proc.stdout.strip() == "0.1.0"
    proc = tinyllava("plugins", "list", "--json", "--check")
    data = json.loads(proc.stdout)
    assert data["python"] == sys.executable or Path(data["python"]).parent == Path(sys.executable).parent
    by_id = {p["plugin"]: p for p in data["plugins"]}
    for plugin in ("llama", "clip", "mlp", "pretrain", "base", "shapes"):
        assert by_id[plugin]["status"] == "ok", by_id[plugin]
    assert by_id["llama"]["components"] == {"chat_template": ["llama"], "llm": ["llama"]}


def test_components_json_by_kind():
    proc = tinyllava("components", "--kind", "connector", "--json")
    rows = json.loads(proc.stdout)
    mlp = next(r for r in rows if r["name"] == "mlp")
    assert mlp["distribution"] == "tinyllava-plugin-mlp" and mlp["reference"].endswith(":MLPConnector")
    assert all(r["kind"] == "connector" for r in rows)
    bad = tinyllava("components", "--kind", "nope")
    assert bad.returncode == 2 and "unknown kind" in bad.stderr


def test_config_commands(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_run_spec(tmp_path / "runs")))
    ok = tinyllava("config", "validate", str(spec))
    assert ok.returncode == 0 and "valid run spec" in ok.stdout
    shown = yaml.safe_load(tinyllava("config", "show", str(spec), "--set", "stages.0.lr=0.5").stdout)
    assert shown["stages"][0]["lr"] == 0.5
    assert shown["model"]["connector"] == {"name": "mlp", "depth": 2, "position_embedding": "none"}
    bad = tmp_path / "bad.yaml"
    raw = tiny_run_spec(tmp_path / "runs")
    raw["model"]["connector"]["name"] = "mpl"
    bad.write_text(yaml.safe_dump(raw))
    proc = tinyllava("config", "validate", str(bad))
    assert proc.returncode == 2
    assert "did you mean 'mlp'" in proc.stderr
    schema = json.loads(tinyllava("config", "schema").stdout)
    assert "connector.mlp" in schema["$defs"]


def test_quickstart_config_is_the_builtin_one():
    root = Path(__file__).resolve().parents[1]
    shipped = (root / "tinyllava_cli" / "quickstart.yaml").read_text()
    assert (root / "configs" / "quickstart.yaml").read_text() == shipped
    proc = tinyllava("config", "validate", str(root / "configs" / "quickstart.yaml"))
    assert proc.returncode == 0, proc.stderr


def test_every_plugin_folder_is_in_the_dev_install():
    root = Path(__file__).resolve().parents[1]
    listed = {line.split()[-1] for line in (root / "requirements-dev.txt").read_text().splitlines()
              if line.startswith("-e plugins/")}
    folders = {f"plugins/{p.name}" for p in (root / "plugins").iterdir() if (p / "pyproject.toml").is_file()}
    assert folders == listed


def _code_block_after(text: str, heading: str) -> list[str]:
    section = text.split(heading, 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_commands():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    ci = [line.strip() for line in (root / ".ci" / "run").read_text().splitlines()]
    install = _code_block_after(readme, "## Install")
    test = _code_block_after(readme, "## Test")
    assert install[0].startswith("python3 -m venv .venv")
    for command in install[1:] + test:
        assert command in ci, command
    assert ci.index(install[-1]) < ci.index(test[-1])

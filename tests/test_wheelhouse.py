"""Distribution as users meet it: wheels and sdists from a wheelhouse, a fresh environment with only the core.

The core, the gemma plugin and the mlp plugin are built (sdist, then the wheel from the sdist) into a wheelhouse.
A fresh venv (from the base interpreter, so none of this checkout's editable installs is visible) sees the heavy
stack through a folder of links to this environment's packages, minus every tinyllava distribution. Installing
only the core from the wheelhouse lists no plugin, and `tinyllava train` says which plugin distributions to
install; installing `tinyllava-plugin-gemma` from the wheelhouse makes `gemma` usable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tinyllava.testing.timeouts import SUBPROCESS_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", "*.pyc")
HIDDEN = ("tinyllava", "__editable__")  # this checkout's own distributions and editable finders


def run(cmd: list[str], env: dict[str, str] | None = None, check: bool = True,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, env=env, cwd=cwd)
    if check:
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def copy_core(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dst / name)
    for folder in ("core", "tinyllava_cli"):
        shutil.copytree(ROOT / folder, dst / folder, ignore=IGNORE)
    return dst


def build(src: Path, wheelhouse: Path) -> None:
    """`python -m build`: the sdist first, then the wheel built from that sdist (so the sdist is complete)."""
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(wheelhouse), str(src)])


def heavy_stack(folder: Path) -> Path:
    """Links to every package of this environment except tinyllava's own distributions and .pth hooks."""
    folder.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.startswith(HIDDEN) or entry.suffix == ".pth":
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


def fresh_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "TINYLLAVA_PLUGINS_"))}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "PIP_CONFIG_FILE": os.devnull,
            "COLUMNS": "250", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def metadata(wheel: Path) -> tuple[dict[str, list[str]], str]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(zf.read(name).decode())
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    return fields, message.get_payload()


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheelhouse")
    house = root / "wheels"
    build(copy_core(root / "src" / "tinyllava"), house)
    for plugin in ("gemma", "mlp"):
        src = root / "src" / f"tinyllava-plugin-{plugin}"
        shutil.copytree(ROOT / "plugins" / f"tinyllava-plugin-{plugin}", src, ignore=IGNORE)
        build(src, house)
    return house


def test_every_built_distribution_has_complete_metadata(wheelhouse):
    names = sorted(p.name for p in wheelhouse.iterdir())
    for dist in ("tinyllava-0.1.0", "tinyllava_plugin_gemma-0.1.0", "tinyllava_plugin_mlp-0.1.0"):
        assert f"{dist}.tar.gz" in names and f"{dist}-py3-none-any.whl" in names, names
    for wheel in wheelhouse.glob("*.whl"):
        fields, body = metadata(wheel)
        assert fields["License-Expression"] == ["Apache-2.0"], wheel.name
        assert fields["Description-Content-Type"] == ["text/markdown"] and body.lstrip().startswith("# ")
        assert any(c.startswith("Topic :: Scientific/Engineering") for c in fields["Classifier"])
        assert {u.split(",")[0] for u in fields["Project-URL"]} >= {"Homepage", "Repository", "Issues"}
        if wheel.name.startswith("tinyllava_plugin_"):
            requires = [r for r in fields["Requires-Dist"] if r.startswith("tinyllava")]
            assert requires and all(">=0.1" in r and "<0.2" in r for r in requires), requires
            assert not any(r.startswith("tinyllava-plugin") for r in fields["Requires-Dist"])
        else:
            assert "LICENSE" in " ".join(zipfile.ZipFile(wheel).namelist())


def test_core_alone_then_a_plugin_from_the_wheelhouse(wheelhouse, tmp_path):
    started = time.monotonic()
    venv = tmp_path / "venv"
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    run([str(base_python), "-m", "venv", "--without-pip", str(venv)])
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "heavy-stack.pth").write_text(str(heavy_stack(tmp_path / "heavy")) + "\n")
    env = fresh_env(venv)
    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "tinyllava")

    def pip_install(*names: str) -> None:
        run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index", "--find-links",
             str(wheelhouse), *names], env=env)

    pip_install("tinyllava")
    listed = json.loads(run([cli, "plugins", "list", "--json"], env=env).stdout)
    assert listed["plugins"] == [] and Path(listed["python"]).parent == venv / "bin"
    # a pip-installed user has no configs/ folder: the quickstart and the paper rows ship inside the package
    row = "tinyllava-phi-2-siglip-base"
    shipped = run([cli, "config", "init", f"paper/{row}"], env=env, cwd=tmp_path).stdout
    assert shipped == (ROOT / "configs" / "paper" / f"{row}.yaml").read_text()

    trained = run([cli, "train", str(ROOT / "configs" / "quickstart.yaml")], env=env, check=False)
    assert trained.returncode != 0 and "Traceback" not in trained.stderr
    for dist in ("tinyllava-plugin-llama", "tinyllava-plugin-clip", "tinyllava-plugin-mlp"):
        assert f"pip install {dist}" in trained.stderr, trained.stderr[-3000:]

    pip_install("tinyllava-plugin-gemma")
    listed = json.loads(run([cli, "plugins", "list", "--json"], env=env).stdout)
    assert [(p["plugin"], p["status"]) for p in listed["plugins"]] == [("gemma", "ok")]
    assert "all 1 plugins ok" in run([cli, "plugins", "check"], env=env).stdout
    probe = (
        "import torch; torch.set_num_threads(1)\n"
        "from tinyllava.api import get_registry\n"
        "tiny = {'hidden_size': 32, 'intermediate_size': 64, 'num_hidden_layers': 1, 'num_attention_heads': 2,"
        " 'num_key_value_heads': 1, 'head_dim': 16}\n"
        "llm = get_registry().create('llm', 'gemma', {'config': tiny, 'tokenizer_vocab_size': 300})\n"
        "model, tok = llm.build()\n"
        "ids = torch.tensor([tok('hello')['input_ids']])\n"
        "print(type(model).__name__, tuple(model(ids).logits.shape[:2]) == tuple(ids.shape), llm.__module__)\n"
    )
    out = run([python, "-c", probe], env=env).stdout.split()
    assert out[:2] == ["GemmaForCausalLM", "True"]
    assert str(venv) in run([python, "-c", "import tinyllava_plugin_gemma as m; print(m.__file__)"], env=env).stdout
    print(f"wheelhouse install steps took {time.monotonic() - started:.1f}s")

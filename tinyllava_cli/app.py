"""The typer app. Keep this module import-light: `tinyllava --help` must never import torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="tinyllava",
    help="Build, train, evaluate and ship small LLaVA-style multimodal models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: typer's rich help costs ~60 ms of imports at every start
)
plugins_app = typer.Typer(help="Installed plugins.", no_args_is_help=True, rich_markup_mode=None)
config_app = typer.Typer(help="Validate, show and describe run specs.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(plugins_app, name="plugins")
app.add_typer(config_app, name="config")

SetOption = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option("--set", "-s", help="override a spec field, e.g. --set stages.0.lr=1e-3 (repeatable)"),
]


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("--verbose", help="also show third-party warnings hidden by default")]
    = False,
) -> None:
    """Build, train, evaluate and ship small LLaVA-style multimodal models."""
    import os

    from tinyllava_cli.commands.quiet import VERBOSE_ENV, install

    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # launched processes (torchrun) inherit it
    install()


@app.command()
def version() -> None:
    """Print the tinyllava version."""
    from tinyllava import __version__

    typer.echo(__version__)


@plugins_app.command("list")
def plugins_list(
    check: Annotated[bool, typer.Option("--check", help="also list the components each plugin provides")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Discovered plugins: distribution, version, status and error."""
    from tinyllava_cli.commands.inspect import plugins_list as run

    raise typer.Exit(run(check=check, as_json=as_json))


@plugins_app.command("check")
def plugins_check(
    names: Annotated[Optional[list[str]], typer.Argument(help="plugin ids or distributions (default: all)")] = None,  # noqa: UP045
    show_traceback: Annotated[bool, typer.Option("--traceback", help="print the full errors")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Import every component, check its contract and Options defaults, build the schema; exit 1 on a problem."""
    from tinyllava_cli.commands.plugins_check import plugins_check as run

    raise typer.Exit(run(names or [], with_traceback=show_traceback, as_json=as_json))


@plugins_app.command("new")
def plugins_new(
    kind: Annotated[str, typer.Argument(help="llm, vision_tower, connector, chat_template, recipe, dataset or "
                                              "benchmark")],
    name: Annotated[str, typer.Argument(help="the component (and plugin) name, e.g. my-connector")],
    directory: Annotated[Path, typer.Option("--dir", help="folder to create the distribution in")] = Path("."),
) -> None:
    """Scaffold an out-of-tree plugin distribution: pyproject, registration, component, README, kit tests."""
    from tinyllava_cli.commands.plugins_new import plugins_new as run

    raise typer.Exit(run(kind, name, directory))


@app.command()
def components(
    kind: Annotated[Optional[str], typer.Option("--kind", "-k", help="only this kind")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Registered components by kind (nothing is imported to list them)."""
    from tinyllava_cli.commands.inspect import components_list as run

    raise typer.Exit(run(kind=kind, as_json=as_json))


@config_app.command("validate")
def config_validate(file: Path, set_: SetOption = None) -> None:
    """Validate a run spec, every component's options included."""
    from tinyllava_cli.commands.config import validate as run

    raise typer.Exit(run(file, set_ or []))


@config_app.command("show")
def config_show(file: Path, set_: SetOption = None) -> None:
    """Print the resolved spec (defaults filled in, overrides applied) as YAML."""
    from tinyllava_cli.commands.config import show as run

    raise typer.Exit(run(file, set_ or []))


@config_app.command("init")
def config_init(
    name: Annotated[str, typer.Argument(help="quickstart or paper/<row>, e.g. paper/tinyllava-phi-2-siglip-base")]
    = "quickstart",
) -> None:
    """Print an editable copy of a built-in spec: tinyllava config init [quickstart|paper/<row>] > my.yaml"""
    from tinyllava_cli.commands.config import init as run

    raise typer.Exit(run(name))


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of a run spec, including every installed plugin's options."""
    from tinyllava_cli.commands.config import schema as run

    raise typer.Exit(run())


@app.command()
def train(
    spec: Annotated[Optional[Path], typer.Argument(help="run spec YAML (default: the built-in quickstart)")] = None,  # noqa: UP045
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint of this run")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="delete this run's previous results first")] = False,
    nproc: Annotated[
        int, typer.Option("--nproc", help="processes on this machine (re-launches through torchrun)")
    ] = 1,
    nnodes: Annotated[int, typer.Option("--nnodes", help="machines in the run; each runs this command")] = 1,
    node_rank: Annotated[int, typer.Option("--node-rank", help="this machine's place, 0 to nnodes-1")] = 0,
    master_addr: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--master-addr", help="address of the node-rank 0 machine (several machines)")] = None,
    master_port: Annotated[int, typer.Option("--master-port", help="a free port on that machine")] = 29500,
) -> None:
    """Train the stages of a run spec. With no spec, train the tiny quickstart model on synthetic shapes."""
    from tinyllava.training.distributed import Launch
    from tinyllava_cli.commands.train import train as run

    launch = Launch(nproc, nnodes, node_rank, master_addr, master_port)
    raise typer.Exit(run(spec, set_ or [], resume=resume, nproc=nproc, overwrite=overwrite, launch=launch))


@app.command()
def merge(
    model: Annotated[Path, typer.Option("--model", "-m", help="checkpoint directory with adapters")],
    output: Annotated[Path, typer.Option("--output", "-o", help="new directory for the merged checkpoint")],
) -> None:
    """Fold a checkpoint's LoRA adapters into its weights: a plain full checkpoint."""
    from tinyllava_cli.commands.merge import merge as run

    raise typer.Exit(run(model, output))


@app.command()
def export(
    model: Annotated[Path, typer.Option("--model", "-m", help="tinyllava checkpoint directory")],
    output: Annotated[Path, typer.Option("--output", "-o", help="new directory for the exported model")],
    to: Annotated[str, typer.Option("--to", help="target layout: hf-llava (transformers' LLaVA)")] = "hf-llava",
    dtype: Annotated[str, typer.Option("--dtype", help="float32, bfloat16, float16 or auto (the LLM's)")] = "float32",
) -> None:
    """Export a checkpoint to transformers' LLaVA layout (adapters merged; loads without tinyllava)."""
    from tinyllava_cli.commands.export import export as run

    raise typer.Exit(run(model, to, output, dtype))


@app.command(name="import")
def import_command(
    src: Annotated[Path, typer.Argument(help="the checkpoint folder to import")],
    source_format: Annotated[str, typer.Option("--from", help="tinyllava-factory or hf-llava")],
    output: Annotated[Path, typer.Option("--output", "-o", help="new directory for the tinyllava checkpoint")],
    tokenizer: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--tokenizer", help="tinyllava-factory: tokenizer folder when SRC has none")] = None,
    image_processor: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--image-processor", help="tinyllava-factory: image processor folder when SRC has none")] = None,
    chat_template: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--chat-template", help="chat template name (default: the one TinyLLaVA Factory pairs with the LLM)")] = None,
) -> None:
    """Import a TinyLLaVA Factory or HF LLaVA checkpoint as a tinyllava checkpoint (usable as init_from)."""
    from tinyllava_cli.commands.import_ import import_model as run

    raise typer.Exit(run(source_format, src, output, tokenizer, image_processor, chat_template))


DEVICE_HELP = "auto (the first CUDA GPU if any, else cpu), cpu, cuda or cuda:N"
DTYPE_HELP = "auto (bfloat16 on a GPU, float32 on cpu), float32, bfloat16 or float16"


eval_app = typer.Typer(help="Evaluate a checkpoint; `eval compare` puts several results side by side.",
                       rich_markup_mode=None)
app.add_typer(eval_app, name="eval")


@eval_app.command("compare")
def eval_compare(
    targets: Annotated[list[Path], typer.Argument(help="runs, checkpoints or results.json files")],
    output: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--output", "-o", help="grouped bar chart (PNG; the table goes next to it as JSON)")] = None,
) -> None:
    """Side-by-side scores of several checkpoints: a table, a JSON file and a grouped bar chart."""
    from tinyllava_cli.commands.compare import compare as run

    raise typer.Exit(run(targets, output))


@app.command()
def runs(
    root: Annotated[Path, typer.Option("--dir", help="the output_dir the runs are in")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """The runs under ./runs: stages, steps, final loss, wall time and latest eval score."""
    from tinyllava_cli.commands.runs import runs as run

    raise typer.Exit(run(root, as_json))


@eval_app.callback(invoke_without_command=True)
def evaluate(
    ctx: typer.Context,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="checkpoint directory")] = None,  # noqa: UP045
    benchmark: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--benchmark", "-b", help="benchmark name (repeatable)")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="the benchmark's data folder")] = None,  # noqa: UP045
    limit: Annotated[Optional[int], typer.Option("--limit", help="only the first N questions")] = None,  # noqa: UP045
    batch_size: Annotated[int, typer.Option("--batch-size", help="questions per generate() call")] = 16,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="results folder")] = None,  # noqa: UP045
    option: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--option", "-O", help="a benchmark option, e.g. -O mmvet.judge_model=gpt-4o (repeatable)"),
    ] = None,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help=DTYPE_HELP)] = "auto",
) -> None:
    """Evaluate a checkpoint on one or more benchmarks; print tables, write JSON and a chart per benchmark."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None or not benchmark:
        typer.echo(ctx.get_help())
        typer.echo("\nerror: give --model CHECKPOINT and --benchmark NAME", err=True)
        raise typer.Exit(2)
    from tinyllava_cli.commands.evaluate import evaluate as run

    raise typer.Exit(run(model, benchmark, data, limit, batch_size, output, option or [], device=device, dtype=dtype))


@app.command()
def chat(
    model: Annotated[Path, typer.Option("--model", "-m", help="checkpoint directory")],
    image: Annotated[Optional[Path], typer.Option("--image", "-i", help="image file")] = None,  # noqa: UP045
    max_new_tokens: Annotated[int, typer.Option(help="longest answer")] = 128,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help=DTYPE_HELP)] = "auto",
) -> None:
    """Interactive multi-turn chat about one image. An empty line or /exit ends it."""
    from tinyllava_cli.commands.chat import chat as run

    raise typer.Exit(run(model, image, max_new_tokens, temperature, device=device, dtype=dtype))


@app.command()
def predict(
    model: Annotated[Path, typer.Option("--model", "-m", help="checkpoint directory")],
    input: Annotated[Path, typer.Option("--input", help="JSONL: {id, question, image?} per line")],
    output: Annotated[Path, typer.Option("--output", help="JSONL answers")],
    batch_size: Annotated[int, typer.Option(help="questions per generate() call")] = 16,
    max_new_tokens: Annotated[int, typer.Option(help="longest answer")] = 128,
    image_root: Annotated[Optional[Path], typer.Option(help="folder image paths are relative to")] = None,  # noqa: UP045
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help=DTYPE_HELP)] = "auto",
    on_bad_line: Annotated[str, typer.Option(
        "--on-bad-line", help="stop: answer the lines before the first bad one, then fail; skip: answer every "
        "good line and write {id, error} for bad ones")] = "stop",
) -> None:
    """Answer a JSONL file of questions in batches."""
    from tinyllava_cli.commands.predict import predict as run

    raise typer.Exit(run(model, input, output, batch_size, max_new_tokens, image_root, device=device, dtype=dtype,
                         on_bad_line=on_bad_line))


@app.command()
def serve(
    model: Annotated[Path, typer.Option("--model", "-m", help="checkpoint directory")],
    host: Annotated[str, typer.Option("--host", help="address to listen on (0.0.0.0: every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port (0: any free one, printed)")] = 8000,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help=DTYPE_HELP)] = "auto",
    max_batch: Annotated[int, typer.Option("--max-batch", help="most requests in one generate call")] = 16,
    max_wait_ms: Annotated[float, typer.Option(
        "--max-wait-ms", help="how long a request may wait for others to share its batch")] = 10.0,
    api_key: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--api-key", envvar="TINYLLAVA_API_KEY", help="require 'Authorization: Bearer KEY' on /v1, /metrics")] = None,
    max_image_bytes: Annotated[int, typer.Option("--max-image-bytes", help="largest image file")] = 20 * 1024 * 1024,
    max_image_pixels: Annotated[int, typer.Option(
        "--max-image-pixels", help="largest width x height (decompression bombs are refused)")] = 40_000_000,
    max_tokens: Annotated[int, typer.Option(
        "--max-tokens", help="answer length when a request sets none")] = 256,
    model_name: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--model-name", help="the model id clients send (default: from the checkpoint path)")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error")] = "info",
    threads: Annotated[int, typer.Option("--threads", help="torch threads (0: torch's default)")] = 0,
) -> None:
    """Serve a checkpoint: OpenAI-compatible API (/v1/chat/completions) with dynamic batching, and a chat page at /."""
    from tinyllava_cli.commands.serve import serve as run

    raise typer.Exit(run(model, host, port, device, dtype, max_batch, max_wait_ms, api_key, max_image_bytes,
                         max_image_pixels, max_tokens, model_name, log_level, threads))


def main() -> None:
    app()


if __name__ == "__main__":
    main()

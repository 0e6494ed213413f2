"""`greenlight`: run the pipeline, serve the production model, show the registry's state.

This is the edge: it resolves where things live from the environment once, exports it for the
libraries and child processes, and only then imports Prefect and the flows (Prefect reads
PREFECT_HOME when it is imported).
"""

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from pydantic import ValidationError

from deployments.containerize import add_containerize_parser, command_containerize
from deployments.export import add_export_parser, command_export
from deployments.feedback import add_feedback_parser, command_feedback
from deployments.keys import add_keys_parser, command_keys, locked
from deployments.monitor import add_monitor_parser, command_monitor
from deployments.policy import add_policy_parser, command_policy
from deployments.preflight import (
    check_data_file,
    check_prefect_api,
    check_store_location,
    check_tracking_store,
)
from deployments.scoring import add_predict_parser, command_predict
from deployments.shadow import add_shadow_parser, command_shadow
from deployments.watch import add_arrival_parsers, command_submit, command_watch
from tasks.core.config import RunConfig
from tasks.core.errors import ConfigRejected, GreenlightError
from tasks.core.keys import load_signing_key
from tasks.core.locations import Locations, export_locations, resolve_locations, sqlite_database
from tasks.core.processes import forwarding_signals, guard_descendants, start_child, stop_child
from tasks.core.spec import read_spec_file, spec_file_settings, validation_problems

EXIT_PROMOTED, EXIT_ERROR, EXIT_DATA_REJECTED, EXIT_GATE_REFUSED = 0, 1, 2, 3
# Commands that only work on an existing store: they never create one (a mistyped URI says nothing is there).
READS_STORE = (
    "serve",
    "status",
    "history",
    "rollback",
    "promote",
    "show",
    "export",
    "predict",
    "shadow",
    "feedback",
    "monitor",
    "containerize",
)


def read_settings_file(path: Path) -> dict:
    """A --config file (JSON or YAML) as a mapping; errors name the file."""
    import yaml

    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise ConfigRejected(f"config file {path} could not be read: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigRejected(f"config file {path} must hold a mapping of settings, got {type(raw).__name__}")
    return raw


def load_run_config(args: argparse.Namespace) -> RunConfig:
    """Spec file settings, then a config file, then command-line flags; errors name the field."""
    raw: dict = spec_file_settings(Path(args.spec)) if getattr(args, "spec", None) else {}
    if args.config:
        raw |= read_settings_file(Path(args.config))
    flags = {"data_path": args.data, "model_name": args.model_name, "target": getattr(args, "target", None)}
    raw |= {key: value for key, value in flags.items() if value}
    if getattr(args, "task", None):
        raw["task"] = args.task
    training = raw.setdefault("training", {}) if isinstance(raw.get("training", {}), dict) else raw["training"]
    if args.max_epochs is not None:
        training["max_epochs"] = args.max_epochs
    if args.shuffle_labels:
        training["shuffle_labels"] = True
    if getattr(args, "family", None):
        raw["model_family"] = args.family
    if getattr(args, "time_budget", None) is not None:
        training["time_budget_s"] = args.time_budget if args.time_budget > 0 else None
    if getattr(args, "accept_new_spec", False):  # issue 26 item 2: production's spec cannot score these rows
        gate = raw.setdefault("gate", {}) if isinstance(raw.get("gate", {}), dict) else raw["gate"]
        gate["accept_new_spec"] = True
    if getattr(args, "nproc_per_node", None) is not None:
        training["distributed"] = {**training.get("distributed", {}), "nproc_per_node": args.nproc_per_node}
    sweep_flags = {name: getattr(args, name, None) for name in ("trials", "concurrency", "study_name")}
    if any(value is not None for value in sweep_flags.values()):
        sweep = raw.setdefault("sweep", {}) if isinstance(raw.get("sweep", {}), dict) else raw["sweep"]
        sweep |= {name: value for name, value in sweep_flags.items() if value is not None}
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        where = args.config or getattr(args, "spec", None) or "command line"
        raise ConfigRejected(f"invalid run configuration ({where}): {validation_problems(error)}") from error


def time_breakdown(stages: dict[str, float], flow_called: float) -> str:
    """'38.2 s: start-up 7.4, Prefect server 4.2, data checks 0.4, training 2.5, ...' from process start."""
    import psutil

    stages = dict(stages)
    started_at = stages.pop("_started_at", None)
    if started_at is None:
        return "not measured"
    process_start = psutil.Process().create_time()
    parts = {"start-up (imports)": flow_called - process_start, "Prefect server": started_at - flow_called, **stages}
    total = time.time() - process_start
    return f"{total:.1f} s: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in parts.items())


def print_summary(summary, locations: Locations, flow_called: float, budget_s: float | None) -> None:
    """What the run produced and where to look next."""
    decision = summary.decision
    print("\n" + "=" * 72)
    print(f"MLflow run        {summary.run_id}  ({summary.tracking_uri})")
    served = f"{summary.family}, {summary.compression}"
    print(f"Registered        models:/{summary.model_name}/{summary.version}  ({served})")
    metrics = decision.candidate.values
    shown = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items() if "." not in name)
    print(f"Test metrics      {shown}")
    print(f"Promoted          {'yes' if summary.promoted else 'NO'}: {decision.reason}")
    print(f"Gate policy       {decision.policy}")
    for check in decision.checks:
        print(f"  {check.line()}")
    print(f"Production now    {'v' + summary.production_version if summary.production_version else 'none'}")
    print(f"Bento             {summary.bento_tag}")
    budget = "no limit" if budget_s is None else f"{budget_s:.0f} s"
    print(f"Time              {time_breakdown(summary.stage_seconds, flow_called)} (training budget {budget})")
    print("Next:")
    if locations.tracking_uri.startswith("sqlite:"):
        artifacts = locations.home / "mlartifacts"
        print(f"  registry UI     make up, or: .venv/bin/mlflow ui --backend-store-uri {locations.tracking_uri}")
        print(f"                  --default-artifact-root {artifacts} --host 127.0.0.1 --port 5000")
    else:
        print(f"  registry UI     {locations.tracking_uri} (Models -> {summary.model_name})")
    print("  Prefect UI      make up   (Prefect server + worker + MLflow UI on 127.0.0.1)")
    where = f"POST http://127.0.0.1:3000/models/{summary.model_name}/predict"
    print(f"  serve           .venv/bin/greenlight serve   (every production model: {where})")
    print("=" * 72)


# Prefect gives its temporary server 20 s (counting only its 0.1 s sleeps); two runs importing torch at once on two
# busy cores took longer, and the timed-out server was started again beside the first, which then held its port.
PREFECT_START_TIMEOUT_S = 120


def start_temporary_prefect_server(prefect_home: Path) -> threading.Thread | None:
    """Without PREFECT_API_URL, Prefect starts a temporary server on the first API call (4-11 s); started here in
    a thread, its process boots while this one imports the pipeline. Prefect's own start() then finds it running.
    One start at a time per PREFECT_HOME (issue 26, item 7): a server creates and migrates a fresh prefect.db as
    it starts, and two first runs at once each did, timing out or failing on the other's tables."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None  # a server (or a test harness) is configured: nothing to start

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        with locked(prefect_home / "prefect.db"):
            SubprocessASGIServer().start(timeout=PREFECT_START_TIMEOUT_S)

    thread = threading.Thread(target=start, name="prefect-temporary-server", daemon=True)
    thread.start()
    return thread


def command_run(args: argparse.Namespace, locations: Locations) -> int:
    return run_pipeline(load_run_config(args), locations)


def command_sweep(args: argparse.Namespace, locations: Locations) -> int:
    """A run whose training stage is a sweep: the study's trials, then the best trial's model through the rest."""
    config = load_run_config(args)
    if not config.sweep.trials:
        raise ConfigRejected("greenlight sweep needs --trials N (or sweep.trials in the spec or --config file)")
    if config.spec_path:  # the spec names the family: a model option it refuses is refused before anything starts
        from tasks.model.sweep import check_model_options

        check_model_options(config.sweep, read_spec_file(Path(config.spec_path).expanduser())[0].model)
    code = run_pipeline(config, locations)
    print("Sweep trials      nested runs of the MLflow run above (expand it in the run list; tags.mlflow.parentRunId)")
    return code


def run_pipeline(config: RunConfig, locations: Locations) -> int:
    """Check what a run needs, start Prefect, run the flow, print what it did; the exit code says how it ended."""
    check_data_file(config)  # a missing file is refused in well under a second, before anything starts
    check_tracking_store(locations.tracking_uri, create=True)
    check_store_location(locations.tracking_uri)
    check_prefect_api()
    load_signing_key(os.environ)  # an unreadable or wrong key file is refused now, not after training
    export_locations(locations, create=True)  # only now: a refused run leaves no empty stores behind
    guard_descendants()  # a kill -9 of this run leaves no Prefect server, build or bento server behind
    server = start_temporary_prefect_server(locations.prefect_home)
    from flows.training import training_pipeline

    if server is not None:
        server.join()

    flow_called = time.time()  # splits the summary's start-up from the wait for Prefect's server
    summary = training_pipeline(config=config)
    print_summary(summary, locations, flow_called, config.training.time_budget_s)
    # An identical rerun ends where a promotion would: production serves this very model (nothing refused).
    return EXIT_PROMOTED if summary.promoted or summary.decision.duplicate_of else EXIT_GATE_REFUSED


def command_serve(args: argparse.Namespace, locations: Locations) -> int:
    os.environ.update(serving_key_files())  # issue 26 item 10: a key file that is no key stops us here
    if args.model_name is None:
        if args.pinned:
            raise ConfigRejected("--pinned keeps one model's bento on its version: name it with --model-name")
        return serve_every_model(args, locations)
    from tasks.registry.client import find_version

    found = find_version(locations.tracking_uri, args.model_name)
    if found is None:
        raise GreenlightError(f"no production version of '{args.model_name}' yet: run `greenlight run` first")
    bento_tag = found.tags.get("bento_tag")
    if not bento_tag:
        raise GreenlightError(f"production version {found.version} has no bento_tag tag; re-run the pipeline")
    from bentos.serve import serve_command, serve_environment

    follow = None if args.pinned else "production"
    mode = f"following @{follow}" if follow else "pinned to this version"
    access = access_environment(locations)
    print(f"serving {found.uri} (bento {bento_tag}, {mode}) on http://{args.host}:{args.port}", flush=True)
    print(f"  {describe_access(access)}", flush=True)
    return run_server(serve_command(bento_tag, args.host, args.port), serve_environment(follow, **access))


def serving_key_files() -> dict[str, str]:
    """The API key and verify key files this process's environment names, read here: one that is not a key (garbage,
    a private key, empty) exits 2 in one line before a server starts, where every worker would fail its start and be
    restarted forever. Each passes on as an absolute path: the server runs in the bento's folder, where a relative
    one names nothing."""
    from tasks.core.keys import SettingsRejected, load_verify_key, read_api_key

    try:
        read_api_key(os.environ)
        load_verify_key(os.environ)
    except SettingsRejected as error:
        raise ConfigRejected(" ".join(str(error).split())) from error
    named = ("GREENLIGHT_API_KEY_FILE", "GREENLIGHT_VERIFY_KEY_FILE")
    return {name: str(Path(os.environ[name]).expanduser().resolve()) for name in named if os.environ.get(name)}


def access_environment(locations: Locations) -> dict[str, str]:
    """Who may call and where calls are written: the key file (GREENLIGHT_KEYS_FILE, else <home>/serving-keys.yaml
    when it exists) unless a single key is set, and the audit log (GREENLIGHT_AUDIT_LOG, else <home>/audit/). A key
    file that cannot be used is refused here, before a server starts."""
    from bentos.access import read_key_file
    from deployments.keys import default_keys_file

    keys_file, named = default_keys_file(locations.home), os.environ.get("GREENLIGHT_KEYS_FILE")
    if named and not keys_file.exists():
        raise ConfigRejected(f"GREENLIGHT_KEYS_FILE={named} does not exist: add a key with `greenlight keys add`")
    single = os.environ.get("GREENLIGHT_API_KEY") or os.environ.get("GREENLIGHT_API_KEY_FILE")
    if named and single:
        raise ConfigRejected("GREENLIGHT_KEYS_FILE and GREENLIGHT_API_KEY(_FILE) are both set: choose one")
    audit = os.environ.get("GREENLIGHT_AUDIT_LOG") or str(locations.home / "audit" / "serving.jsonl")
    # Captured requests (GREENLIGHT_CAPTURE_RATE) go under the data folder unless told otherwise.
    written = {"GREENLIGHT_AUDIT_LOG": audit}
    written["GREENLIGHT_CAPTURE_DIR"] = locations.capture
    if not keys_file.exists() or single:
        return written
    read_key_file(keys_file)  # a broken file is named now, not in the server's log
    return {"GREENLIGHT_KEYS_FILE": str(keys_file), **written}


def describe_access(access: dict[str, str]) -> str:
    keys = access.get("GREENLIGHT_KEYS_FILE")
    single = os.environ.get("GREENLIGHT_API_KEY") or os.environ.get("GREENLIGHT_API_KEY_FILE")
    who = f"keys from {keys}" if keys else ("one API key (GREENLIGHT_API_KEY)" if single else "open: no key needed")
    return f"{who}; audit log {access['GREENLIGHT_AUDIT_LOG']}"


def serve_every_model(args: argparse.Namespace, locations: Locations) -> int:
    """One service for the production version of every registered model (bentos/gateway.py)."""
    from bentos.serve import gateway_command, serve_environment
    from tasks.registry.client import versions_with_alias

    models = versions_with_alias(locations.tracking_uri)
    bounds = {"GREENLIGHT_MAX_MODELS": args.max_models, "GREENLIGHT_MAX_MODEL_BYTES": args.max_model_bytes}
    for name, value in bounds.items():
        if value is not None and value <= 0:
            raise ConfigRejected(f"--{name.removeprefix('GREENLIGHT_').lower().replace('_', '-')} must be > 0")
    access = access_environment(locations)
    extra = {name: str(value) for name, value in bounds.items() if value} | access
    listed = ", ".join(f"{name} v{version}" for name, version in sorted(models.items())) or "none yet"
    print(f"serving every production model ({listed}) on http://{args.host}:{args.port}", flush=True)
    print("  POST /models/<name>/predict, /v2/models/<name>/infer; GET / documents them", flush=True)
    print(f"  {describe_access(access)}", flush=True)
    return run_server(gateway_command(args.host, args.port), serve_environment(**extra))


def run_server(command: list[str], env: dict[str, str]) -> int:
    """Run a server in the foreground; its exit code (128 + signal when a signal stopped it)."""
    server = start_child(command, env)
    # Any stop of this command stops the server: signals are passed on, and a kill -9 reaches it through
    # PR_SET_PDEATHSIG; nothing keeps answering with this command's settings after it is gone.
    try:
        with forwarding_signals(server):
            code = server.wait()
    finally:
        stop_child(server)
    return code if code >= 0 else 128 - code


def recover(locations: Locations, model_name: str, command: str) -> None:
    """Mark what runs that died left behind (versions, MLflow runs, Prefect flow runs), before showing anything."""
    from tasks.registry.recovery import recover_abandoned

    experiment = RunConfig.model_fields["experiment_name"].default
    for line in recover_abandoned(locations.tracking_uri, experiment, model_name, f"`greenlight {command}`").lines:
        print(line)


def command_relocate(args: argparse.Namespace, locations: Locations) -> int:
    """Point a moved or restored local store at where it is now."""
    from tasks.registry.client import relocate_sqlite_store

    database = sqlite_database(locations.tracking_uri)
    if database is None:
        raise GreenlightError(f"relocate is for a local store (sqlite:///...); {locations.tracking_uri} is not one")
    old, new = Path(args.old_home).expanduser().resolve() / "mlartifacts", database.parent / "mlartifacts"
    if not new.is_dir():
        raise GreenlightError(f"{new} does not exist: move the whole folder (the database and mlartifacts/) first")
    changed = relocate_sqlite_store(locations.tracking_uri, old, new)
    print(f"{database}: {changed} artifact locations now under {new} (were under {old})")
    return 0


def command_status(args: argparse.Namespace, locations: Locations) -> int:
    from tasks.registry.client import find_version, list_versions

    recover(locations, args.model_name, "status")
    production = find_version(locations.tracking_uri, args.model_name)
    print(f"tracking store    {locations.tracking_uri}")
    print(f"bentoml home      {locations.bentoml_home}")
    print(f"production        {production.uri if production else 'none'}")
    versions = list_versions(locations.tracking_uri, args.model_name, limit=args.limit)
    if not versions:
        print(f"no versions of '{args.model_name}' registered yet")
    for v in versions:
        marker = "*" if production and v.version == production.version else " "
        tags = v.tags
        print(
            f"{marker} v{v.version:<4} gate={tags.get('gate_verdict', '?'):<8} {main_metric(tags):<20}"
            f" {tags.get('compression', '?'):<25} {tags.get('bento_tag', '')}"
        )
    return 0


def print_move(move) -> None:
    start = f"v{move.from_version}" if move.from_version else "none"
    print(f"production: {start} -> v{move.to_version} ({move.kind}) by {move.actor}: {move.reason}")


def command_history(args: argparse.Namespace, locations: Locations) -> int:
    from tasks.registry.client import alias_history, find_version
    from tasks.release.promotion import history_disagreement, rollback_target

    recover(locations, args.model_name, "history")
    moves = alias_history(locations.tracking_uri, args.model_name)
    if not moves:
        print(f"'{args.model_name}' has no recorded production moves yet")
    for m in moves:
        start = f"v{m['from_version']}" if m["from_version"] not in (None, "None") else "none"
        print(f"{m['at']}  {start:>5} -> v{m['to_version']:<4} {m['kind']:<8} {m['actor']}: {m['reason']}")
    if problem := history_disagreement(moves, find_version(locations.tracking_uri, args.model_name)):
        print(f"WARNING: {problem}")
    elif moves:
        target = rollback_target(moves)
        print(f"next `greenlight rollback` goes to v{target}" if target else "no earlier version to roll back to")
    return 0


def command_rollback(args: argparse.Namespace, locations: Locations) -> int:
    from tasks.release.promotion import rollback

    print_move(rollback(locations.tracking_uri, args.model_name, args.reason, to=args.to))
    return 0


def command_promote(args: argparse.Namespace, locations: Locations) -> int:
    """A version refused only for lack of shadow evidence is judged on the evidence captured since; any other
    version is promoted by hand, with --reason."""
    from deployments.shadow import promote_on_evidence
    from tasks.release.promotion import force_promote

    move = promote_on_evidence(locations, args.model_name, args.version)
    if move is None:
        move = force_promote(locations.tracking_uri, args.model_name, args.version, args.reason or "")
    print_move(move)
    return 0


def command_show(args: argparse.Namespace, locations: Locations) -> int:
    from deployments.shadow import read_shadow_evidence
    from deployments.show import render_version
    from tasks.registry.client import describe_version

    recover(locations, args.model_name, "show")
    record = describe_version(locations.tracking_uri, args.model_name, args.version)
    print(render_version(record, read_shadow_evidence(locations, args.model_name, args.version)))
    return 0


def command_keygen(args: argparse.Namespace, locations: Locations) -> int:
    """Write an ed25519 key pair: the private key for the pipeline (0600), the public key for services."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    from tasks.core.keys import key_id

    out = Path(args.out)
    private_path, public_path = out / "greenlight-signing.pem", out / "greenlight-verify.pem"
    if private_path.exists() and not args.force:
        raise GreenlightError(
            f"{private_path} exists: keep it (versions signed with it verify only under it), or --force"
        )
    out.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_path.touch(mode=0o600)
    private_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public_path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    print(f"key {key_id(key.public_key())}")
    print(f"  pipeline (keep secret, not in the registry): export GREENLIGHT_SIGNING_KEY_FILE={private_path}")
    print(f"  services (public):                           export GREENLIGHT_VERIFY_KEY_FILE={public_path}")
    return 0


def main_metric(tags: dict[str, str]) -> str:
    """The version's main test metric as 'accuracy=0.9833' or 'r2=0.4512' ('?' before the gate scored it)."""
    name = "test_r2" if tags.get("task") == "regression" else "test_accuracy"
    return f"{name.removeprefix('test_')}={tags.get(name, '?')}"


def command_init(args: argparse.Namespace, locations: Locations) -> int:
    """Infer a spec from a table and write it for review: every column's type and why, then the YAML."""
    from tasks.core.spec import safe_name
    from tasks.data.files import load_dataset
    from tasks.data.image_folders import LABEL_COLUMN
    from tasks.data.infer import infer_spec, render_column_table, write_spec_file

    data = Path(args.data).expanduser()
    out = Path(args.out)
    target = args.target or (LABEL_COLUMN if data.is_dir() else None)
    if target is None:
        raise ConfigRejected("greenlight init needs --target COLUMN: the column to predict")
    dataset = load_dataset.fn(str(data), locations.datasets_dir, None)
    spec, columns = infer_spec(dataset.frame, target, args.task or "auto", name=safe_name(str(data)))
    print(render_column_table(columns))
    # Relative to the spec file, as `run --spec` reads it: the spec and its data can move (or be committed) together.
    relative = os.path.relpath(data.resolve(), out.resolve().parent)
    settings = {"data": relative, "model_name": args.model_name or safe_name(str(data))}
    write_spec_file(spec, settings, out, force=args.force)
    target = spec.dataset.target
    print(f"\n{spec.dataset.task} of '{target.name}'" + (f", labels {target.labels}" if target.labels else ""))
    print(f"wrote {out}: review each type (the 'why' says what it was inferred from), commit it, then run:")
    print(f"  greenlight run --spec {out}")
    return 0


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """The flags `run` and `sweep` share: the data, its spec, the settings, the model's name."""
    run.add_argument(
        "--data", help="CSV or Parquet file, or a folder of images with one subfolder per class; default: the digits"
    )
    run.add_argument("--target", help="the column to predict; its spec is inferred (see `greenlight init`)")
    run.add_argument("--task", choices=["auto", "classification", "regression"], help="default: inferred")
    run.add_argument("--spec", help="a reviewed spec YAML from `greenlight init` (with its data and run settings)")
    run.add_argument("--config", help="JSON or YAML file with RunConfig fields (see tasks/core/config.py)")
    run.add_argument("--model-name", help="registered model name (default: digits-classifier, or the data file's name)")
    run.add_argument("--max-epochs", type=int, help="override training.max_epochs")
    run.add_argument("--shuffle-labels", action="store_true", help="train on permuted labels (a gate drill)")
    run.add_argument("--family", help="train this model family instead of the spec's (default: auto for a table)")
    run.add_argument(
        "--time-budget", type=float, help="seconds of training (candidate families, fits); 0 = no limit (default 60)"
    )
    run.add_argument(
        "--accept-new-spec",
        action="store_true",
        help="promote even though production answers another spec that cannot score this data (no comparison)",
    )
    run.add_argument(
        "--nproc-per-node", type=int, help="train data-parallel in N processes (torchrun: gloo on CPU, NCCL on GPU)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greenlight", description="Greenlight MLOps pipeline")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="validate, train, compress, export, register, build and maybe promote")
    add_run_arguments(run)
    sweep = commands.add_parser("sweep", help="a run whose training is an Optuna sweep; its best model goes on")
    add_run_arguments(sweep)
    sweep.add_argument("--trials", type=int, help="trials the study should end with (a resumed study counts its own)")
    sweep.add_argument("--concurrency", type=int, help="trials trained at once (default 1)")
    sweep.add_argument("--study-name", help="the study to create or resume (default: model name + data fingerprint)")
    serve = commands.add_parser(
        "serve", help="serve every production model over HTTP (--model-name: one model's bento, on /predict)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--model-name", help="serve only this model's bento, on POST /predict (today's service)")
    serve.add_argument("--max-models", type=int, help="models kept loaded at once; the least recently used goes")
    serve.add_argument("--max-model-bytes", type=int, help="bytes of ONNX files kept loaded at once (the same)")
    serve.add_argument("--pinned", action="store_true", help="keep serving this version when production moves")
    status = commands.add_parser("status", help="show the production version and recent versions")
    status.add_argument("--model-name", default="digits-classifier")
    status.add_argument("--limit", type=int, default=10)
    history = commands.add_parser("history", help="every move of the production alias: from, to, when, why, who")
    history.add_argument("--model-name", default="digits-classifier")
    rollback = commands.add_parser(
        "rollback", help="move production one step back through its history (or --to a version that served)"
    )
    rollback.add_argument("--model-name", default="digits-classifier")
    rollback.add_argument("--to", metavar="VERSION", help="a version that was production before or passed its gate")
    rollback.add_argument("--reason", default="manual rollback", help="recorded in the history")
    promote = commands.add_parser(
        "promote", help="promote a version by hand, even one the gate refused; or on its shadow evidence"
    )
    promote.add_argument("version", help="registered version number")
    promote.add_argument(
        "--reason", help="why the gate is overridden (recorded; mandatory unless judged on shadow evidence)"
    )
    promote.add_argument("--model-name", default="digits-classifier")
    show = commands.add_parser("show", help="one version's gate report, signature and lineage")
    show.add_argument("version", help="registered version number")
    show.add_argument("--model-name", default="digits-classifier")
    relocate = commands.add_parser("relocate", help="point a moved or restored local store at where it is now")
    relocate.add_argument("--from", dest="old_home", required=True, help="the data folder's old location")
    add_arrival_parsers(commands)
    keygen = commands.add_parser("keygen", help="write an ed25519 key pair to sign models and verify them when served")
    keygen.add_argument("--out", default="keys", help="folder for greenlight-signing.pem and greenlight-verify.pem")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    init = commands.add_parser("init", help="infer a spec from a table and write it as YAML for review")
    init.add_argument("--data", required=True, help="CSV or Parquet file, or a folder of images (subfolder per class)")
    init.add_argument("--target", help="the column to predict (an image folder: its subfolder names)")
    init.add_argument("--task", choices=["auto", "classification", "regression"], help="default: inferred")
    init.add_argument("--out", default="greenlight.yaml", help="spec file to write (default greenlight.yaml)")
    init.add_argument("--model-name", help="registered model name to record (default: the data file's name)")
    init.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_export_parser(commands)
    add_containerize_parser(commands)
    add_predict_parser(commands)
    add_monitor_parser(commands)
    add_feedback_parser(commands)
    add_shadow_parser(commands)
    add_keys_parser(commands)
    add_policy_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    locations = resolve_locations()
    export_locations(locations, create=args.command == "init")
    # Every command that talks to Prefect without a server (status, rollback, promote, ...) starts a temporary one;
    # Prefect waits 20 s for it, which a busy 2-core machine overran (a raw RuntimeError): the run's allowance.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(PREFECT_START_TIMEOUT_S))
    handler = {
        "run": command_run,
        "sweep": command_sweep,
        "serve": command_serve,
        "status": command_status,
        "history": command_history,
        "rollback": command_rollback,
        "promote": command_promote,
        "init": command_init,
        "show": command_show,
        "watch": command_watch,
        "submit": command_submit,
        "keygen": command_keygen,
        "relocate": command_relocate,
        "export": command_export,
        "containerize": command_containerize,
        "predict": command_predict,
        "monitor": command_monitor,
        "feedback": command_feedback,
        "keys": command_keys,
        "shadow": command_shadow,
        "policy": command_policy,
    }[args.command]
    try:
        if args.command in READS_STORE:
            check_tracking_store(locations.tracking_uri, create=False)
            check_store_location(locations.tracking_uri)
        if args.command in ("rollback", "promote"):
            check_prefect_api()  # the promotion lock lives in Prefect's database
        return handler(args, locations)
    except GreenlightError as error:
        print(f"\ngreenlight {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except RuntimeError as error:
        if "ephemeral Prefect API server" not in str(error):
            raise
        print(
            f"\ngreenlight {args.command}: Prefect's temporary server did not answer within"
            f" {os.environ['PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS']} s (a busy machine, or a broken"
            f" PREFECT_HOME {locations.prefect_home}); nothing was changed. Try again, raise"
            " PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run a server (`make up`) and set PREFECT_API_URL",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`greenlight shadow VERSION`: have the running services also score a candidate on live requests, beside
production (bentos/shadow.py); the evidence `greenlight show` prints and `greenlight promote` judges (the manual:
docs/monitoring.md#shadow)."""

import argparse
import os

from tasks.core.errors import GreenlightError
from tasks.core.locations import Locations
from tasks.core.spec import Spec

# What a service does between two looks at the registry, unless GREENLIGHT_ALIAS_POLL_S says otherwise.
DEFAULT_POLL_S = 5.0


def add_shadow_parser(commands: argparse._SubParsersAction) -> None:
    """The `shadow` command and its flags."""
    shadow = commands.add_parser(
        "shadow",
        help="score a candidate version on live requests beside production (off the request path)",
        description=(
            "Point the registry alias `shadow` at VERSION: every running `greenlight serve` with capture configured"
            " also scores it on the requests production answers, off the request path, and writes both answers and"
            " latencies under the capture folder. `greenlight show VERSION` prints the agreement and latency;"
            " `greenlight promote VERSION` judges them when the gate asked for shadow evidence. Exit 1 when the"
            " version cannot be shadowed (production itself, unknown, not ready, another request contract)."
        ),
    )
    shadow.add_argument("version", nargs="?", help="registered version number to shadow")
    shadow.add_argument("--stop", action="store_true", help="stop shadowing: remove the `shadow` alias")
    shadow.add_argument("--model-name", default="digits-classifier")


def command_shadow(args: argparse.Namespace, locations: Locations) -> int:
    """Move the `shadow` alias (or remove it with --stop) and say what the running services will do, and when."""
    from tasks.registry.client import remove_shadow_alias, set_shadow_alias

    poll = f"within {poll_seconds():g} s (their next look at the registry, GREENLIGHT_ALIAS_POLL_S)"
    if args.stop:
        if args.version:
            raise GreenlightError("--stop takes no VERSION: it stops whatever version is shadowed")
        stopped = remove_shadow_alias(locations.tracking_uri, args.model_name)
        if stopped is None:
            print(f"'{args.model_name}' has no shadowed version: nothing to stop")
        else:
            print(f"stopped shadowing models:/{args.model_name}/{stopped}: running services stop scoring it {poll}")
        return 0
    if not args.version:
        raise GreenlightError("name the VERSION to shadow (`greenlight shadow 4 --model-name M`), or --stop")
    candidate, production = shadowable(locations.tracking_uri, args.model_name, args.version)
    set_shadow_alias(candidate)
    folder = f"{locations.capture.rstrip('/')}/{args.model_name}/shadow/{candidate.version}"
    rate = os.environ.get("GREENLIGHT_SHADOW_RATE") or "1.0"
    print(f"shadowing {candidate.uri} beside production v{production.version}")
    print(f"  running services with capture configured start scoring it {poll}, on a share {rate} of requests")
    print("  (GREENLIGHT_SHADOW_RATE), off the request path: production keeps answering every request")
    print(f"  evidence: {folder}; figures: `greenlight show {candidate.version} --model-name {args.model_name}`")
    print(f"  stop: `greenlight shadow --stop --model-name {args.model_name}`")
    return 0


def shadowable(tracking_uri: str, model_name: str, version: str):
    """(candidate, production) refs when the version can be shadowed, else a GreenlightError saying why not."""
    from tasks.registry.client import describe_version, find_version, read_version_spec

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # reading a spec is no download to watch
    production = find_version(tracking_uri, model_name)
    if production is None:
        raise GreenlightError(f"'{model_name}' has no production version: shadowing compares a candidate with it")
    if version == production.version:
        raise GreenlightError(f"v{version} is the production version of '{model_name}': shadow a candidate instead")
    record = describe_version(tracking_uri, model_name, version)  # a GreenlightError for an unknown version
    candidate = record.ref
    if not candidate.tags.get("onnx_sha256"):
        raise GreenlightError(f"{candidate.uri} is not ready: it records no ONNX file (onnx_sha256 tag)")
    verdict = candidate.tags.get("gate_verdict", "")
    if record.run_status in ("FAILED", "KILLED") or verdict in ("pending", "abandoned", "error"):
        why = candidate.tags.get("gate_reason") or f"its run is {record.run_status}"
        raise GreenlightError(f"{candidate.uri} is not ready: {why}")
    differences = contract_differences(read_version_spec(production), read_version_spec(candidate))
    if differences:
        raise GreenlightError(
            f"{candidate.uri} answers another request contract than production v{production.version}"
            f" ({differences}): production's requests would not be its requests"
        )
    return candidate, production


def contract_differences(production: Spec | None, candidate: Spec | None) -> str:
    """What differs between the two versions' requests ("" when nothing does)."""
    from bentos.shadow import request_differences

    if production is None or candidate is None:
        return "" if production == candidate else "one of them records no spec"
    return "; ".join(request_differences(production.dataset, candidate.dataset))


def poll_seconds() -> float:
    raw = os.environ.get("GREENLIGHT_ALIAS_POLL_S")
    try:
        return float(raw) if raw else DEFAULT_POLL_S
    except ValueError:
        return DEFAULT_POLL_S


def read_shadow_evidence(locations: Locations, model_name: str, version: str, beside: str | None = None):
    """The version's ShadowEvidence from the capture location (only beside production v`beside` when given); a
    GreenlightError when it cannot be read."""
    from tasks.core.capture_store import CaptureStore
    from tasks.monitoring.shadow_evidence import shadow_evidence

    return shadow_evidence(CaptureStore.open(locations.capture), model_name, version, beside)


def promote_on_evidence(locations: Locations, model_name: str, version: str):
    """For a version the gate refused only for lack of shadow evidence: the move after judging the evidence
    captured since (ShadowEvidenceLacking, exit 3, when it still lacks); None for any other version."""
    from tasks.registry.client import describe_version, find_version
    from tasks.release.promotion import awaits_shadow_evidence, promote_on_shadow_evidence

    target = describe_version(locations.tracking_uri, model_name, version).ref
    if not awaits_shadow_evidence(target):
        return None
    production = find_version(locations.tracking_uri, model_name)
    beside = production.version if production is not None else None
    return promote_on_shadow_evidence(target, read_shadow_evidence(locations, model_name, version, beside))

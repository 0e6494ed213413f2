"""The routes of the many-model service (bentos/gateway.py): POST /models/{name}/predict, GET /models,
GET /models/{name} (its page) and /models/{name}/openapi.json, the Open Inference Protocol under /v2
(bentos/inference_protocol.py), GET / and GET /metrics.

Every model request is admitted per model (bentos/access.py), answered by the version its alias points to now,
counted in that model's metrics and written to the audit log; a refusal is one JSON sentence, never a 500.
"""

import html
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bentoml import get_current_service
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bentos import inference_protocol as v2
from bentos.access import Denied
from bentos.documentation import field_docs, index_page, openapi_document, summary, template
from bentos.endpoint import audit_line, check_content, denied, metrics, read_body, refuse
from tasks.core.contract import Contract, Refusal
from tasks.onnx.verified import ServedModel

MODELS_PREFIX, PREDICT_SUFFIX = "/models/", "/predict"
PROTOCOL_MEDIA = ("application/json", "application/octet-stream")


@dataclass(frozen=True)
class Door:
    """How one kind of model request is read and answered: POST /models/{name}/predict or the V2 infer."""

    media_types: tuple[str, ...]
    answer: Callable[[ServedModel, Any, bytes, Headers], Response]


def predict_target(scope: Scope) -> str | None:
    """The model name of a POST /models/{name}/predict, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":  # a lifespan or websocket scope has no path
        return None
    path = scope["path"]
    if not path.startswith(MODELS_PREFIX) or not path.endswith(PREDICT_SUFFIX):
        return None
    name = path[len(MODELS_PREFIX) : -len(PREDICT_SUFFIX)]
    return name if name and "/" not in name else None


async def predict(scope: Scope, receive: Receive, send: Send, name: str) -> None:
    await answer_model_request(scope, receive, send, name, PREDICT)


async def answer_model_request(scope: Scope, receive: Receive, send: Send, name: str, door: Door) -> None:
    """Admit, read, answer with the model's current version, then count and audit the request."""
    started = time.perf_counter()
    service = get_current_service()
    headers = Headers(scope=scope)
    caller = service.access.admit(headers, name)
    if isinstance(caller, Denied):
        response, loaded = denied(caller), None
    else:
        response, loaded = await answer_admitted(service, headers, receive, name, door)
    await response(scope, receive, send)
    seconds = time.perf_counter() - started
    if loaded is not None:
        loaded.slot.metrics.requested(response.status_code, seconds)
    if service.audit is not None:
        key = None if isinstance(caller, Denied) else caller.key_id
        audit_line(service.audit, key, name, response, seconds, scope["path"])


async def answer_admitted(service: Any, headers: Headers, receive: Receive, name: str, door: Door):
    """(response, the loaded model or None when the request never reached one)."""
    outcome = check_content(headers, door.media_types) or await read_body(receive)
    if isinstance(outcome, Refusal):
        return refuse(outcome), None
    loaded = await service.model(name)
    if isinstance(loaded, Refusal):
        return refuse(loaded), None
    model = loaded.slot.current  # read once: a switch mid-request cannot mix two versions
    return door.answer(model, loaded.slot, outcome, headers), loaded


def answer_predict(model: ServedModel, slot: Any, body: bytes, _: Headers) -> Response:
    batch = model.contract.parse(body)
    if isinstance(batch, Refusal):
        return refuse(batch)
    started = time.perf_counter()
    outputs = slot.timed_predict(model, batch)
    seconds = time.perf_counter() - started
    answer = model.contract.answer(outputs, model.name, model.version)
    service = get_current_service()
    request_id = service.capture.request_id()
    service.capture.keep(model, request_id, batch.feeds, outputs)
    service.shadow.offer(model, request_id, batch.feeds, outputs, seconds)
    headers = {"X-Model-Version": model.version, "X-Rows": str(batch.size), "X-Request-Id": request_id}
    return Response(answer, media_type="application/json", headers=headers)


def answer_infer(model: ServedModel, slot: Any, body: bytes, headers: Headers) -> Response:
    request = v2.parse_infer(body, headers.get(v2.HEADER_LENGTH), model.contract)
    if isinstance(request, Refusal):
        return refuse(request)
    started = time.perf_counter()
    outputs = slot.timed_predict(model, request.batch)
    seconds = time.perf_counter() - started
    answer = v2.infer_answer(request, outputs, model.contract, model.name, model.version)
    service = get_current_service()
    request_id = service.capture.request_id()
    service.capture.keep(model, request_id, request.batch.feeds, outputs)
    service.shadow.offer(model, request_id, request.batch.feeds, outputs, seconds)
    extra = {"X-Model-Version": model.version, "X-Rows": str(request.batch.size), "X-Request-Id": request_id}
    return Response(answer.body, headers={**answer.headers, **extra})


PREDICT = Door(("application/json",), answer_predict)
INFER = Door(PROTOCOL_MEDIA, answer_infer)


class PredictRoute:
    """The declared POST /models/{name}/predict (gateway.ModelsFirst answers it before routing; a request under
    a root_path still arrives here)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await predict(scope, receive, send, scope["path_params"]["name"])


class InferRoute:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        if not await version_matches(scope, receive, send, params):
            return
        await answer_model_request(scope, receive, send, params["name"], INFER)


async def version_matches(scope: Scope, receive: Receive, send: Send, params: dict[str, str]) -> bool:
    """A /v2/models/{name}/versions/{version}/... path names the version served now, or is answered 404."""
    wanted = params.get("version")
    if wanted is None:
        return True
    loaded = await get_current_service().model(params["name"])
    served = None if isinstance(loaded, Refusal) else loaded.slot.current.version
    if served == wanted:
        return True
    message = f"model {params['name']!r} serves version {served}, not {wanted}" if served else "no such model"
    await JSONResponse({"error": message}, status_code=404)(scope, receive, send)
    return False


async def loaded_model(request: Request) -> Any:
    """The model a GET names, loaded (its first request loads it), or the refusal as a response."""
    name = request.path_params["name"]
    service = get_current_service()
    caller = service.access.admit(request.headers, name)
    if isinstance(caller, Denied):
        return denied(caller)
    loaded = await service.model(name)
    return refuse(loaded) if isinstance(loaded, Refusal) else loaded.slot.current


def guarded(handler: Callable[[Request, ServedModel], Response]) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        model = await loaded_model(request)
        return model if isinstance(model, Response) else handler(request, model)

    return route


def model_metadata(request: Request, model: ServedModel) -> Response:
    return JSONResponse(v2.model_metadata(model.contract, model.name, model.version))


def model_ready(_: Request, model: ServedModel) -> Response:
    return JSONResponse({"name": model.name, "version": model.version, "ready": True})


def model_openapi(_: Request, model: ServedModel) -> Response:
    document = openapi_document(model.contract, model.name, model.version)
    document["servers"] = [{"url": f"{MODELS_PREFIX}{model.name}"}]  # its POST /predict is /models/{name}/predict
    return JSONResponse(document)


def model_page(request: Request, model: ServedModel) -> Response:
    example = model.contract.parse(json.dumps(model.contract.example_body()).encode())
    answer = model.contract.answer(model.predict(example), model.name, model.version)
    base_url = f"{str(request.base_url).rstrip('/')}{MODELS_PREFIX}{model.name}"
    keyed = get_current_service().access.protected
    return HTMLResponse(index_page(model.contract, model.name, model.version, base_url, keyed, answer))


async def list_models(request: Request) -> Response:
    """GET /models: each model the caller may call, with its version, whether it is loaded, its doors and its
    contract (a key sees only the models it may call)."""
    service = get_current_service()
    names = service.access.visible(request.headers, sorted(service.catalog.listing))
    if isinstance(names, Denied):
        return denied(names)
    entries = await run_in_threadpool(model_entries, service, names)
    return JSONResponse({"alias": service.catalog.alias, "models": entries})


def model_entries(service: Any, names: list[str]) -> list[dict[str, Any]]:
    """The named models; the contract of one not loaded yet is read from its registered spec (MLmodel only)."""
    entries = []
    listing = service.catalog.listing
    for name, version in ((name, listing[name]) for name in names if name in listing):
        loaded = service.catalog.loaded.get(name)
        current = loaded.slot.current if loaded is not None else None
        contract = current.contract if current is not None else service.catalog.contract_of(name, version)
        entry: dict[str, Any] = {
            "name": name,
            "version": current.version if current is not None else version,
            "loaded": current is not None,
            "predict": f"{MODELS_PREFIX}{name}{PREDICT_SUFFIX}",
            "infer": f"/v2/models/{name}/infer",
        }
        entries.append(entry | contract_entry(contract))
    return entries


def contract_entry(contract: Contract | Refusal) -> dict[str, Any]:
    if isinstance(contract, Refusal):
        return {"contract": None, "problem": contract.message}
    fields = [
        {"name": f.name, "type": f.type, "accepts": f.accepts, "missing": f.missing} for f in field_docs(contract)
    ]
    described = {"task": contract.spec.task, "summary": summary(contract), "fields": fields}
    if contract.spec.task == "classification":
        described["labels"] = contract.label_texts
    return {"contract": described}


async def index(request: Request) -> Response:
    """GET /: every model, its version and fields, how to call it by either door."""
    service = get_current_service()
    names = service.access.visible(request.headers, sorted(service.catalog.listing))
    if isinstance(names, Denied):  # a browser has no key to send: say how to list the models with one
        page = f"<h1>Greenlight models</h1><p>{html.escape(names.message)}. With a key: GET /models.</p>"
        return HTMLResponse(page, status_code=names.status)
    entries = await run_in_threadpool(model_entries, service, names)
    base_url = str(request.base_url).rstrip("/")
    page = template("models.html").render(models=entries, base_url=base_url, keyed=service.access.protected)
    return HTMLResponse(page)


def server_metadata(_: Request) -> Response:
    return JSONResponse({"name": "greenlight", "version": "1", "extensions": ["binary_tensor_data"]})


def live(_: Request) -> Response:
    return JSONResponse({"live": True})


def ready(_: Request) -> Response:
    catalog = get_current_service().catalog
    up = catalog.listing_error is None
    return JSONResponse({"ready": up}, status_code=200 if up else 503)


V2_MODEL = "/v2/models/{name}"
V2_VERSION = "/v2/models/{name}/versions/{version}"

app = Starlette(
    routes=[
        Route("/", index, methods=["GET"]),
        Route("/models", list_models, methods=["GET"]),
        Route("/models/{name}", guarded(model_page), methods=["GET"]),
        Route("/models/{name}/openapi.json", guarded(model_openapi), methods=["GET"]),
        Route("/models/{name}/predict", PredictRoute(), methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        *[Route(path, guarded(model_metadata), methods=["GET"]) for path in (V2_MODEL, V2_VERSION)],
        *[Route(f"{path}/ready", guarded(model_ready), methods=["GET"]) for path in (V2_MODEL, V2_VERSION)],
        *[Route(f"{path}/infer", InferRoute(), methods=["POST"]) for path in (V2_MODEL, V2_VERSION)],
    ]
)

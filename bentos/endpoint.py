"""POST /predict, GET /, GET /openapi.json and GET /metrics: a Starlette app mounted on the BentoML service.

Mounted rather than declared with @bentoml.api: BentoML's API machinery cost ~100 us per request and answered a bad
body with 400 and a traceback (benchmarks/serving.py). Each refusal is one JSON sentence, never a 500.
"""

import html
import json
import logging
import time
from typing import TYPE_CHECKING

from bentoml import get_current_service
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bentos.access import Denied
from bentos.documentation import index_page, openapi_document
from bentos.metrics import exposition
from tasks.core.contract import MAX_BODY_BYTES, Refusal

if TYPE_CHECKING:
    from bentos.audit import AuditLog

logger = logging.getLogger("greenlight.serving")

PREDICT_PATH = "/predict"

NOT_JSON = Refusal(415, "send the body as JSON with 'Content-Type: application/json'")
TOO_LARGE = Refusal(413, f"body larger than {MAX_BODY_BYTES} bytes: split the batch")


async def predict(scope: Scope, receive: Receive, send: Send) -> None:
    """Admit the caller, check the request, then let the service parse and answer it with the model it serves
    right now; count it, and write its audit line when there is an audit log."""
    started = time.perf_counter()
    service = get_current_service()
    headers = Headers(scope=scope)
    caller = service.access.admit(headers, service.model_name)
    if isinstance(caller, Denied):
        response = denied(caller)
    else:
        outcome = check_content(headers) or await read_body(receive)
        response = refuse(outcome) if isinstance(outcome, Refusal) else service.answer(outcome)
    await response(scope, receive, send)
    seconds = time.perf_counter() - started
    service.slot.metrics.requested(response.status_code, seconds)
    if service.audit is not None:
        key = None if isinstance(caller, Denied) else caller.key_id
        audit_line(service.audit, key, service.model_name, response, seconds, scope["path"])


def audit_line(audit: "AuditLog", key: str | None, model: str, response: Response, seconds: float, path: str) -> None:
    """One request's audit line: who, which model and version, the status, how many rows, how long."""
    version, rows = response.headers.get("x-model-version"), int(response.headers.get("x-rows", 0))
    audit.write(key, model, version, response.status_code, rows, seconds, path)


def denied(refusal: Denied) -> Response:
    """A 401, 403 or 429 from the access policy, with its WWW-Authenticate or Retry-After header."""
    logger.debug("refused: %d %s", refusal.status, refusal.message)
    return Response(refusal.body(), status_code=refusal.status, media_type="application/json", headers=refusal.headers)


def check_content(headers: Headers, media_types: tuple[str, ...] = ("application/json",)) -> Refusal | None:
    """A body of a media type the door reads (no Content-Type at all counts as JSON), within the size limit."""
    media_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media_type not in media_types:
        return (
            NOT_JSON
            if media_types == ("application/json",)
            else Refusal(415, f"send the body as {' or '.join(media_types)}")
        )
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        return TOO_LARGE
    return None


async def read_body(receive: Receive) -> bytes | Refusal:
    """The whole body, or a 413 as soon as it grows past the limit (a chunked body has no length header)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return Refusal(400, "the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def refuse(refusal: Refusal) -> Response:
    # A client's mistake, not a server event: visible only when debugging.
    logger.debug("refused POST /predict: %d %s", refusal.status, refusal.message)
    headers = {"WWW-Authenticate": 'Bearer realm="greenlight"'} if refusal.status == 401 else None
    return Response(refusal.body(), status_code=refusal.status, media_type="application/json", headers=headers)


def unavailable(problem: str) -> Response:
    return JSONResponse({"error": f"no model to answer with: {problem}"}, status_code=503)


async def openapi(_: Request) -> Response:
    """The OpenAPI document of the version served now."""
    service = get_current_service()
    model = service.slot.current
    if model is None:
        return unavailable(service.slot.problem)
    return JSONResponse(openapi_document(model.contract, model.name, model.version))


def metrics(_: Request) -> Response:
    """Prometheus metrics of all workers (bentos/metrics.py). A plain function: Starlette runs it in a
    thread, so reading the workers' metric files never holds up the event loop."""
    from prometheus_client import CONTENT_TYPE_LATEST  # not at import: see bentos/metrics.py

    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


async def index(request: Request) -> Response:
    """The page documenting /predict for the version served now, with an example and that version's answer."""
    service = get_current_service()
    model = service.slot.current
    if model is None:
        return HTMLResponse(f"<h1>No model yet</h1><p>{html.escape(service.slot.problem)}</p>", status_code=503)
    example = model.contract.parse(json.dumps(model.contract.example_body()).encode())
    answer = model.contract.answer(model.predict(example), model.name, model.version)
    base_url = str(request.base_url).rstrip("/")
    page = index_page(model.contract, model.name, model.version, base_url, service.access.protected, answer)
    return HTMLResponse(page)


class GreenlightEndpoint(Starlette):
    """The mounted app. POST /predict is answered as a bare ASGI call, the rest through Starlette's routing.

    Measured with benchmarks/serving.py and py-spy: this app's own error and exception middlewares, router
    and Request wrapper cost about as much per request as the contract's validation, on top of BentoML's
    middleware stack that every request crosses anyway. /predict needs none of them: it reads the body
    and headers once and always answers (a refusal is an answer). The route stays declared, so BentoML's
    mount matches /predict, GET /predict is answered 405, and a path under a root_path still reaches it.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PREDICT_PATH and scope["method"] == "POST":
            await predict(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


class PredictRoute:
    """predict() as an ASGI app: a Route given a callable object (not a function) hands it the raw call."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await predict(scope, receive, send)


app = GreenlightEndpoint(
    routes=[
        Route(PREDICT_PATH, PredictRoute(), methods=["POST"]),
        Route("/", index, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
)

"""POST /predict and GET /openapi.json: a Starlette app mounted on the BentoML service.

Mounted rather than declared with @bentoml.api, for two reasons measured in benchmarks/serving.py:
BentoML's API machinery costs ~100 us per request before the model runs (the request is parsed and
validated, the method's signature inspected, the answer wrapped), about what the whole minimal endpoint
costs; and it answers an invalid body with 400, a pydantic dump and an ERROR traceback in the log.
Here a request is checked in one pass: API key (401), media type (415), size (413), schema (422), each
refusal one JSON sentence naming the row, column and value, logged at DEBUG only; never a 500.
Health, readiness and metrics stay BentoML's, and need no key. The key is compared in constant time
and appears in no message and no log line.
"""

import hmac
import logging

from bentoml import get_current_service
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bentos.contract import MAX_BODY_BYTES, Refusal, openapi_document, parse_request

logger = logging.getLogger("greenlight.serving")

UNAUTHORIZED = Refusal(401, "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
NOT_JSON = Refusal(415, "send the body as JSON with 'Content-Type: application/json'")
TOO_LARGE = Refusal(413, f"body larger than {MAX_BODY_BYTES} bytes: split the batch")


async def predict(request: Request) -> Response:
    """Check the request, then let the service answer it with the model it serves right now."""
    service = get_current_service()
    outcome = check_headers(request.headers, service.api_key) or await read_body(request)
    if isinstance(outcome, bytes):
        outcome = parse_request(outcome)
    if isinstance(outcome, Refusal):
        logger.debug("refused POST /predict: %d %s", outcome.status, outcome.message)
        return refuse(outcome)
    return service.answer(outcome)


def check_headers(headers: Headers, api_key: bytes | None) -> Refusal | None:
    if api_key is not None and not authorized(headers, api_key):
        return UNAUTHORIZED
    media_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media_type != "application/json":  # no Content-Type at all counts as JSON
        return NOT_JSON
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        return TOO_LARGE
    return None


def authorized(headers: Headers, api_key: bytes) -> bool:
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    offered = credentials.strip() if scheme.lower() == "bearer" else headers.get("x-api-key", "")
    return hmac.compare_digest(offered.encode(), api_key)


async def read_body(request: Request) -> bytes | Refusal:
    """The whole body, or a 413 as soon as it grows past the limit (a chunked body has no length header)."""
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return TOO_LARGE
            chunks.append(chunk)
    except ClientDisconnect:
        return Refusal(400, "the client disconnected before sending the whole body")
    return b"".join(chunks)


def refuse(refusal: Refusal) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="greenlight"'} if refusal.status == 401 else None
    return Response(refusal.body(), status_code=refusal.status, media_type="application/json", headers=headers)


async def openapi(_: Request) -> Response:
    return JSONResponse(openapi_document())


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/openapi.json", openapi)])

"""BentoML service answering POST /predict with a registered ONNX model, verified by checksum, in the request
contract generated from the spec that version was trained with.

The bento argument `model_tag` pins the model per bento; GREENLIGHT_FOLLOW_ALIAS makes it follow the registry
(bentos/follow.py). Endpoints: bentos/endpoint.py; settings: bentos/settings.py; the whole story: docs/serving.md.
"""

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import bentoml
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bentos import endpoint
from bentos.access import AccessPolicy
from bentos.capture import Capture
from bentos.endpoint import refuse, unavailable
from bentos.metrics import ServingMetrics
from bentos.model import ModelSlot, settle_garbage_collector
from bentos.settings import ServingSettings, open_audit_log
from bentos.shadow import start_shadow
from tasks.core.contract import Refusal
from tasks.onnx.verified import ModelRefused, Provenance, ServedModel, load_verified

if TYPE_CHECKING:
    from bentos.follow import AliasFollower


class PinnedModel(BaseModel):
    """Bento argument fixed at build time: the BentoML model tag this bento serves."""

    model_tag: str


@bentoml.asgi_app(endpoint.app, path="/")
@bentoml.service(
    # BentoML's request timeout costs ~20 us per request (a second task and a timer, py-spy) but its
    # configuration schema takes no "off" (a number > 0 only), so it stays, and bounds a stalled body read.
    traffic={"timeout": 30},
    # Both measured (benchmarks/serving.py, py-spy): an access-log line and an OpenTelemetry span per
    # request (made even when nothing samples or exports them) cost more than the inference itself.
    # /metrics counts and times every /predict (bentos/metrics.py); docs/serving.md says how to turn either back on.
    logging={"access": {"enabled": False}},
    # BentoML's request metrics middleware cost ~60 us per request (py-spy), about 20% of a minimal
    # endpoint's whole request; bentos/metrics.py counts and times /predict and serves GET /metrics itself.
    metrics={"enabled": False},
    tracing={"excluded_urls": ["/predict", "/healthz", "/livez", "/readyz", "/metrics"]},
)
class GreenlightModel:
    """One registered MLflow model version run with onnxruntime, answering the contract of its spec."""

    bento_model = bentoml.models.BentoModel(bentoml.use_arguments(PinnedModel).model_tag)

    def __init__(self) -> None:
        # BentoML leaves the root logger at WARNING; model loads and switches are worth an INFO line.
        logging.getLogger("greenlight").setLevel(logging.INFO)
        self.settings = ServingSettings.from_env()
        labels = self.bento_model.info.labels
        self.model_name = labels["model_name"]
        self.access = AccessPolicy.from_settings(self.settings.keys_file, self.settings.api_key)
        self.audit = open_audit_log(self.settings)
        self.capture = Capture(self.settings.capture)
        self.slot = ModelSlot(ServingMetrics(labels["model_name"]))
        bento_model = self.load_bento_model()
        self.follower = self.follow(bento_model) if self.settings.follow_alias else None
        self.shadow = start_shadow(self.settings, only=self.model_name)  # a candidate beside production (if any)
        settle_garbage_collector()

    def load_bento_model(self) -> ServedModel | None:
        """The bento's own model if it passes its checksum and warm-up; else None and the slot says why."""
        labels = self.bento_model.info.labels
        name, version = labels["model_name"], labels["model_version"]
        # bentoml.mlflow.import_model stores the MLflow model directory (MLmodel, spec, .onnx) under "mlflow_model".
        model_dir = Path(self.bento_model.path_of("mlflow_model"))
        try:
            provenance = Provenance(labels.get("onnx_sha256"), labels.get("signature"), self.settings.verify_key)
            model = load_verified(model_dir, provenance, name, version, self.settings.ort_threads)
        except ModelRefused as refused:
            self.slot.refuse(version, refused)
            return None
        self.slot.serve(model)
        return model

    def follow(self, bento_model: ServedModel | None) -> "AliasFollower":
        """Start following the alias; the first look happens now, so the service is ready on the right version."""
        from bentos.follow import AliasFollower  # imports MLflow: only when following

        follower = AliasFollower(self.slot, self.settings, self.bento_model.info.labels["model_name"], bento_model)
        follower.poll()
        follower.start(self.settings.poll_s)
        return follower

    def answer(self, body: bytes) -> Response:
        """Parse a /predict body with the served version's contract and answer it with that version.

        Runs inline on the event loop (bentos/endpoint.py): a ~0.1 ms inference is cheaper than a hop
        to a worker thread, and one worker serves one core."""
        model = self.slot.current  # read once: a switch mid-request cannot mix two models or two contracts
        if model is None:
            return unavailable(self.slot.problem)
        batch = model.contract.parse(body)
        if isinstance(batch, Refusal):
            return refuse(batch)
        started = time.perf_counter()
        outputs = self.slot.timed_predict(model, batch)
        seconds = time.perf_counter() - started
        answer = model.contract.answer(outputs, model.name, model.version)
        request_id = self.capture.request_id()
        self.capture.keep(model, request_id, batch.feeds, outputs)
        self.shadow.offer(model, request_id, batch.feeds, outputs, seconds)
        headers = {"X-Model-Version": model.version, "X-Rows": str(batch.size), "X-Request-Id": request_id}
        return Response(answer, media_type="application/json", headers=headers)

    async def __is_ready__(self) -> bool:
        return self.slot.current is not None

    @bentoml.on_shutdown
    def stop_following(self) -> None:
        if self.follower is not None:
            self.follower.stop()
        if self.audit is not None:
            self.audit.close()
        self.capture.close()
        self.shadow.close()


class PredictFirst:
    """POST /predict answered ahead of BentoML's inner layers, through its public add_asgi_middleware.

    BentoML places a service's own middlewares inside its timeout and tracing middlewares but outside its
    context middleware, its router and the mount of bentos/endpoint.py's app. /predict needs none of those
    (it reads its headers and body once and always answers), and skipping them saved ~50 us per request in
    benchmarks/serving.py. Every other path goes on through BentoML's stack unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == endpoint.PREDICT_PATH and scope["method"] == "POST":
            await endpoint.predict(scope, receive, send)
        else:
            await self.app(scope, receive, send)


GreenlightModel.add_asgi_middleware(PredictFirst)

"""One BentoML service for every production model: POST /models/{name}/predict (each version's own contract),
the Open Inference Protocol under /v2, GET /models and a page at GET / documenting them all.

Models load on first use and follow their own registry alias (bentos/catalog.py). Access is checked per model
(bentos/access.py: open, one key, or scoped keys with rates) and every model request leaves an audit line
(bentos/audit.py). `greenlight serve` without --model-name runs `bentoml serve bentos.gateway:GreenlightModels`.
"""

import logging
import os

import bentoml
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from bentos import models_endpoint
from bentos.access import AccessPolicy
from bentos.capture import Capture
from bentos.catalog import CatalogLimits, ModelCatalog
from bentos.model import settle_garbage_collector
from bentos.settings import ServingSettings, open_audit_log, positive
from bentos.shadow import start_shadow
from tasks.core.keys import SettingsRejected

logger = logging.getLogger("greenlight.serving")


def catalog_limits() -> CatalogLimits:
    """GREENLIGHT_MAX_MODELS and GREENLIGHT_MAX_MODEL_BYTES (unset: no bound)."""
    models = positive(os.environ, "GREENLIGHT_MAX_MODELS", 0, int) or None
    size = positive(os.environ, "GREENLIGHT_MAX_MODEL_BYTES", 0, int) or None
    return CatalogLimits(int(models) if models else None, int(size) if size else None)


@bentoml.asgi_app(models_endpoint.app, path="/")
@bentoml.service(
    # As bentos/service.py, measured there: no access log, no BentoML request metrics, no spans on model paths.
    traffic={"timeout": 30},
    logging={"access": {"enabled": False}},
    metrics={"enabled": False},
    tracing={"excluded_urls": ["/models", "/v2", "/healthz", "/livez", "/readyz", "/metrics"]},
)
class GreenlightModels:
    """The production version of every registered model, behind one endpoint."""

    def __init__(self) -> None:
        logging.getLogger("greenlight").setLevel(logging.INFO)
        os.environ.setdefault("GREENLIGHT_FOLLOW_ALIAS", "production")
        self.settings = ServingSettings.from_env()
        if not self.settings.tracking_uri:
            raise SettingsRejected("serving every model needs MLFLOW_TRACKING_URI: the registry to read them from")
        self.access = AccessPolicy.from_settings(self.settings.keys_file, self.settings.api_key)
        self.audit = open_audit_log(self.settings)
        self.capture = Capture(self.settings.capture)
        self.catalog = ModelCatalog(self.settings, catalog_limits())
        self.catalog.start()
        self.shadow = start_shadow(self.settings, only=None)  # every model's `shadow` candidate beside production
        logger.info(
            "serving the %s version of %d models from %s",
            self.catalog.alias,
            len(self.catalog.listing),
            self.settings.tracking_uri,
        )
        settle_garbage_collector()

    async def model(self, name: str):
        """The loaded model, loading it in a thread on its first request; or the refusal (404, 503)."""
        found = self.catalog.get(name)
        if found is not None:
            return found
        return await run_in_threadpool(self.catalog.load, name)

    async def __is_ready__(self) -> bool:
        return self.catalog.listing_error is None or bool(self.catalog.listing)

    @bentoml.on_shutdown
    def stop(self) -> None:
        self.catalog.stop()
        if self.audit is not None:
            self.audit.close()
        self.capture.close()
        self.shadow.close()


class ModelsFirst:
    """POST /models/{name}/predict answered ahead of BentoML's inner layers, as bentos/service.py's PredictFirst
    does for /predict; every other path goes on through BentoML's stack."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = models_endpoint.predict_target(scope)
        if name is not None:
            await models_endpoint.predict(scope, receive, send, name)
        else:
            await self.app(scope, receive, send)


GreenlightModels.add_asgi_middleware(ModelsFirst)

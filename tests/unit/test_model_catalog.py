"""The many-model service's catalog without a registry: models load on first use, the least recently used is
unloaded past the bound (a count or bytes of ONNX files) and the log says so; an unknown name is a 404."""

import logging
from dataclasses import dataclass

import pytest

from bentos.catalog import CatalogLimits, LoadedModel, ModelCatalog
from bentos.metrics import ServingMetrics
from bentos.model import ModelSlot
from bentos.settings import ServingSettings
from tasks.core.contract import Refusal


@dataclass
class StandIn:
    """What the catalog reads of a loaded version: its name, version and size."""

    name: str
    version: str
    size_bytes: int
    sha256: str = "0" * 64


class Follower:
    def __init__(self) -> None:
        self.stopped = False
        self.polls = 0

    def poll(self) -> None:
        self.polls += 1

    def stop(self) -> None:
        self.stopped = True


class OfflineCatalog(ModelCatalog):
    """The catalog with the registry replaced by a listing and models of given sizes."""

    def __init__(self, limits: CatalogLimits, sizes: dict[str, int]) -> None:
        super().__init__(ServingSettings(follow_alias="production", tracking_uri="sqlite:///unused.db"), limits)
        self.sizes = sizes
        self.listing = dict.fromkeys(sizes, "1")
        self.listed_at = float("inf")  # never re-read: there is no registry here
        self.opened: list[str] = []

    def refresh_listing(self) -> bool:
        return True  # the test sets the listing itself

    def open(self, name: str) -> LoadedModel:
        self.opened.append(name)
        slot = ModelSlot(ServingMetrics(name))
        if self.sizes[name] < 0:  # a version that fails its checks
            slot.problem = f"{name} version {self.listing[name]} fails its checksum"
        else:
            slot.current = StandIn(name, self.listing[name], self.sizes[name])
        return LoadedModel(slot, Follower())


def test_the_least_recently_used_model_is_unloaded_past_the_count(caplog: pytest.LogCaptureFixture) -> None:
    catalog = OfflineCatalog(CatalogLimits(max_models=2), dict.fromkeys("abcd", 1000))
    first = catalog.load("a")
    catalog.load("b")
    catalog.get("a")  # a is used again: b is now the least recently used
    with caplog.at_level(logging.INFO, logger="greenlight.serving"):
        catalog.load("c")
    assert list(catalog.loaded) == ["a", "c"]
    assert "unloaded b (least recently used) to stay within 2 models" in caplog.text
    assert catalog.load("a") is first and catalog.opened == ["a", "b", "c"]  # loaded once, answered from memory
    catalog.load("b")  # back on its next request
    assert catalog.opened == ["a", "b", "c", "b"] and "c" not in catalog.loaded


def test_the_byte_bound_unloads_until_the_loaded_files_fit() -> None:
    catalog = OfflineCatalog(CatalogLimits(max_bytes=250), {"small": 100, "medium": 120, "large": 200})
    catalog.load("small")
    catalog.load("medium")
    unloaded = catalog.loaded["small"].follower
    catalog.load("large")
    assert list(catalog.loaded) == ["large"] and unloaded.stopped
    catalog.load("small")  # 300 bytes: over the bound, the older one goes
    assert list(catalog.loaded) == ["small"]


def test_a_model_bigger_than_the_bound_is_still_served_alone() -> None:
    catalog = OfflineCatalog(CatalogLimits(max_bytes=10), {"big": 1000})
    assert isinstance(catalog.load("big"), LoadedModel) and list(catalog.loaded) == ["big"]


def test_a_name_without_a_production_version_is_a_404_that_lists_nothing() -> None:
    catalog = OfflineCatalog(CatalogLimits(), {"a": 1})
    refused = catalog.load("secret-model")
    assert isinstance(refused, Refusal) and refused.status == 404
    assert "GET /models lists the models" in refused.message and catalog.opened == []


def test_a_version_that_cannot_load_is_refused_without_a_download_per_request_until_the_alias_moves() -> None:
    catalog = OfflineCatalog(CatalogLimits(), {"broken": -1})
    first, second = catalog.load("broken"), catalog.load("broken")
    assert first.status == 503 and "fails its checksum" in first.message and second is first
    assert catalog.opened == ["broken"]
    catalog.listing["broken"], catalog.sizes["broken"] = "2", 10  # the alias moved to a good version
    assert isinstance(catalog.load("broken"), LoadedModel) and catalog.opened == ["broken", "broken"]


def test_a_poll_looks_closer_only_at_the_models_whose_alias_moved() -> None:
    catalog = OfflineCatalog(CatalogLimits(), {"a": 1, "b": 1})
    a, b = catalog.load("a"), catalog.load("b")
    catalog.poll()
    assert (a.follower.polls, b.follower.polls) == (0, 0)  # the listing said where both aliases point
    catalog.listing["b"] = "2"
    catalog.poll()
    assert (a.follower.polls, b.follower.polls) == (0, 1)

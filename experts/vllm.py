"""`VllmExpert`: a vLLM worker, i.e. an `OpenAIExpert` plus what vLLM serves beside the API.

Lifecycle::

    expert = VllmExpert(spec, http)   # spec.endpoint is http://host:port/v1
    await expert.start()              # GET /v1/models: pick the served model (or check the
                                      # LoRA adapter named by spec.model is served)
    ...                               # chat()/stream() as OpenAIExpert; they call start() first
    await expert.health()             # GET {root}/health + {root}/metrics (running / waiting)

`{root}` is the endpoint without its `/v1` suffix, where vLLM serves `/health` and `/metrics`.
"""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from experts.base import ExpertHealth
from experts.errors import ExpertUnavailable, UpstreamError, map_httpx_errors
from experts.openai import OpenAIExpert
from experts.openai_wire import model_ids
from registry.spec import ExpertSpec

__all__ = ["RUNNING_METRIC", "WAITING_METRIC", "VllmExpert", "parse_vllm_load"]

RUNNING_METRIC = "vllm:num_requests_running"
WAITING_METRIC = "vllm:num_requests_waiting"


def parse_vllm_load(text: str) -> tuple[float | None, float | None]:
    """(running, waiting) requests from vLLM's Prometheus text, each summed over its label sets
    (one per served model); None for a metric that is absent. Raises ValueError on bad text."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (RUNNING_METRIC, WAITING_METRIC):
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals.get(RUNNING_METRIC), totals.get(WAITING_METRIC)


class VllmExpert(OpenAIExpert):
    """An expert served by vLLM; `spec.model` may be None (the first served model) or the
    name of a base model or LoRA adapter the worker serves."""

    def __init__(self, spec: ExpertSpec, http: httpx.AsyncClient) -> None:
        super().__init__(spec, http)
        self._root = self._base.removesuffix("/v1")
        self._served_model: str | None = None
        self._served: tuple[str, ...] = ()
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        """Discover the served models (once); raises ExpertUnavailable when the wanted model
        is not served."""
        await self.model_name()

    async def model_name(self) -> str:
        if self._served_model is not None:
            return self._served_model
        async with self._start_lock:
            if self._served_model is None:
                self._served = await self._discover()
                self._served_model = self._pick(self._served)
            return self._served_model

    def _pick(self, served: tuple[str, ...]) -> str:
        wanted = self._spec.model
        if wanted is None and served:
            return served[0]
        if wanted is None:
            raise ExpertUnavailable(f"vLLM expert {self.name!r} serves no model", expert=self.name)
        if wanted not in served:
            raise ExpertUnavailable(
                f"vLLM expert {self.name!r}: model {wanted!r} is not served at {self._base} "
                f"(served: {', '.join(served) or 'none'})",
                expert=self.name,
            )
        return wanted

    async def _discover(self) -> tuple[str, ...]:
        with map_httpx_errors(self.name):
            response = await self._http.get(
                f"{self._base}/models", headers=self._headers, timeout=self._probe_timeout
            )
        if not response.is_success:
            raise self._status_error(response.status_code, response.content)
        try:
            return model_ids(response.content)
        except ValueError as exc:
            raise UpstreamError(
                f"vLLM expert {self.name!r}: /models answered no model list", expert=self.name
            ) from exc

    async def health(self) -> ExpertHealth:
        """GET {root}/health, then {root}/metrics for the load. Never raises; a /metrics
        failure leaves the load unknown (None) but the expert healthy."""
        probe = await self._probe(f"{self._root}/health")
        if isinstance(probe, str):
            return ExpertHealth(healthy=False, detail=f"/health {probe}")
        running, waiting, detail = await self._load()
        return ExpertHealth(
            healthy=True,
            detail=detail,
            models=self._served,
            running_requests=running,
            waiting_requests=waiting,
        )

    async def _load(self) -> tuple[float | None, float | None, str]:
        response = await self._probe(f"{self._root}/metrics")
        if isinstance(response, str):
            return None, None, f"/metrics {response}"
        try:
            running, waiting = parse_vllm_load(response.text)
        except ValueError:
            return None, None, "/metrics is not Prometheus text"
        return running, waiting, ""

"""Experts: things that answer chat requests (OpenAI-compatible servers, vLLM, simulators,
local models). `experts.local` (torch) is imported only when a local expert is built."""

from experts.base import Expert, ExpertHealth
from experts.chat import (
    AUTO_MODEL,
    ChatDelta,
    ChatRequest,
    ChatResult,
    Message,
    Sampling,
    Usage,
    with_system_prompt,
)
from experts.errors import (
    ExpertCancelled,
    ExpertError,
    ExpertTimeout,
    ExpertUnavailable,
    UpstreamError,
    UpstreamRejected,
    map_httpx_errors,
)
from experts.factory import build_expert
from experts.openai import OpenAIExpert
from experts.simulator import SimulatedExpert, SimulatorConfig, SimulatorStats
from experts.simulator_app import create_simulator_app, serve_simulator
from experts.vllm import VllmExpert

__all__ = [
    "AUTO_MODEL",
    "ChatDelta",
    "ChatRequest",
    "ChatResult",
    "Expert",
    "ExpertCancelled",
    "ExpertError",
    "ExpertHealth",
    "ExpertTimeout",
    "ExpertUnavailable",
    "Message",
    "OpenAIExpert",
    "Sampling",
    "SimulatedExpert",
    "SimulatorConfig",
    "SimulatorStats",
    "UpstreamError",
    "UpstreamRejected",
    "Usage",
    "VllmExpert",
    "build_expert",
    "create_simulator_app",
    "map_httpx_errors",
    "serve_simulator",
    "with_system_prompt",
]

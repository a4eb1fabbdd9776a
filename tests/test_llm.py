"""The LLM edge on real components: SmolLM2-135M run in-process by xllamacpp, and the HTTP client
talking to the OpenAI-compatible server that same xllamacpp instance serves on loopback."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import httpx
import pytest

pytest.importorskip("xllamacpp", reason="the agent extra is not installed: pip install 'dso[agent]'")

from dso.edges import llm  # noqa: E402
from dso.edges.llm import HttpChatModel, LLMSettings, LocalChatModel, ModelSpec, model_file  # noqa: E402
from dso.errors import ConfigError, LLMRequestError, LLMTimeout, LLMUnavailable, ModelIntegrityError  # noqa: E402

QUESTION = [{"role": "user", "content": "What is 2 plus 3? Answer with one number."}]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    model = LocalChatModel("smollm2-135m", threads=1, context=1024, cache=tmp_path_factory.mktemp("cache"))
    yield model
    model.close()


def test_local_model_answers_with_token_counts_and_a_rate(local):
    reply = local.complete(QUESTION, max_tokens=16, temperature=0.0)
    assert reply.text.strip()
    assert reply.prompt_tokens > 5 and 0 < reply.completion_tokens <= 16
    assert reply.finish_reason in ("stop", "length") and reply.tokens_per_second > 0


def test_http_client_gets_a_completion_from_a_real_openai_compatible_server(local):
    endpoint = local.endpoint()
    client = HttpChatModel(endpoint.base_url, endpoint.model, endpoint.api_key, timeout=60)
    try:
        reply = client.complete(QUESTION, max_tokens=8, temperature=0.0, seed=1)
    finally:
        client.close()
    assert reply.text.strip() and 0 < reply.completion_tokens <= 8 and reply.prompt_tokens > 5


def test_greedy_replies_agree_across_the_two_backends(local):
    endpoint = local.endpoint()
    client = HttpChatModel(endpoint.base_url, endpoint.model, endpoint.api_key, timeout=60)
    try:
        assert client.complete(QUESTION, max_tokens=8).text == local.complete(QUESTION, max_tokens=8).text
    finally:
        client.close()


def test_a_wrong_api_key_is_refused_and_never_shown(local):
    secret = "sk-never-print-me-4242"
    client = HttpChatModel(local.endpoint().base_url, "smollm2-135m", secret, timeout=30, retries=0)
    with pytest.raises(LLMRequestError, match="401") as caught:
        client.complete(QUESTION, max_tokens=4)
    client.close()
    assert secret not in str(caught.value) and secret not in repr(client)
    settings = LLMSettings(base_url="http://127.0.0.1:1/v1", model="m", api_key=secret)
    assert secret not in repr(settings) and secret not in str(settings)


def test_bad_requests_are_refused_before_anything_is_sent(local):
    for messages in ([], "hi", [{"role": "robot", "content": "x"}], [{"role": "user"}]):
        with pytest.raises(LLMRequestError):
            local.complete(messages, max_tokens=4)
    with pytest.raises(LLMRequestError, match="max_tokens"):
        local.complete(QUESTION, max_tokens=0)
    with pytest.raises(LLMRequestError, match="temperature"):
        local.complete(QUESTION, temperature=float("nan"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_endpoint_is_LLMUnavailable_after_its_retries():
    client = HttpChatModel(f"http://127.0.0.1:{free_port()}/v1", "m", timeout=5, retries=1, backoff=0.01)
    with pytest.raises(LLMUnavailable, match="cannot reach"):
        client.complete(QUESTION, max_tokens=4)


def test_an_endpoint_that_never_answers_is_LLMTimeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts connections (the kernel does), never reads or answers
    try:
        client = HttpChatModel(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", "m", timeout=0.5, retries=1, backoff=0.01)
        with pytest.raises(LLMTimeout):
            client.complete(QUESTION, max_tokens=4)
    finally:
        listener.close()


def test_a_transient_503_is_retried_and_then_answered_by_the_real_server(local):
    """A proxy in front of the real server fails the first request with 503, then forwards."""
    upstream = local.endpoint()
    seen: list[int] = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(len(seen))
            if len(seen) == 1:
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            answer = httpx.post(f"{upstream.base_url}/chat/completions", content=body, timeout=60,
                                headers={"Authorization": self.headers["Authorization"], "Content-Type": "application/json"})
            self.send_response(answer.status_code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = HttpChatModel(f"http://127.0.0.1:{server.server_address[1]}/v1", upstream.model, upstream.api_key, timeout=60,
                               retries=2, backoff=0.01)
        reply = client.complete(QUESTION, max_tokens=4)
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(seen) == 2 and reply.completion_tokens > 0


def test_split_models_are_assembled_once_and_checked_against_the_pinned_hash(tmp_path, monkeypatch):
    package = tmp_path / "site" / "fake_model_parts"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "part01.bin").write_bytes(b"GGUF" + b"a" * 100)
    (package / "data" / "part02.bin").write_bytes(b"b" * 50)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    whole = b"GGUF" + b"a" * 100 + b"b" * 50
    import hashlib

    parts = (("fake_model_parts", "data/part01.bin", "fake-part1"), ("fake_model_parts", "data/part02.bin", "fake-part2"))
    monkeypatch.setitem(llm.MODELS, "fake", ModelSpec("fake", "fake.gguf", hashlib.sha256(whole).hexdigest(), len(whole), parts, "test"))
    path = model_file("fake", tmp_path / "cache")
    assert path.read_bytes() == whole and path.parent == tmp_path / "cache" / "models"
    assert model_file("fake", tmp_path / "cache") == path  # the stamp: not assembled again

    monkeypatch.setitem(llm.MODELS, "bad", ModelSpec("bad", "bad.gguf", "00" * 32, len(whole), parts, "test"))
    with pytest.raises(ModelIntegrityError, match="pinned"):
        model_file("bad", tmp_path / "cache")
    assert not list((tmp_path / "cache" / "models").glob("*bad*"))  # nothing half-written is left


def test_missing_model_packages_and_unknown_models_say_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(llm.MODELS, "absent", ModelSpec("absent", "a.gguf", "00" * 32, 1, (("no_such_pkg_xyz", "a.bin", "no-such-pkg"),), "t"))
    with pytest.raises(LLMUnavailable, match="pip install no-such-pkg"):
        model_file("absent", tmp_path)
    with pytest.raises(ConfigError, match="known"):
        model_file("gpt-17", tmp_path)


def test_settings_come_from_arguments_then_environment_then_llm_json(monkeypatch, tmp_path):
    monkeypatch.setenv("DSO_HOME", str(tmp_path))
    for name in ("DSO_LLM_BASE_URL", "DSO_LLM_MODEL", "DSO_LLM_API_KEY", "DSO_LLM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert LLMSettings.resolve() == LLMSettings()
    (tmp_path / "llm.json").write_text(json.dumps({"base_url": "http://127.0.0.1:9/v1", "model": "qwen", "threads": 2}))
    monkeypatch.setenv("DSO_LLM_MODEL", "from-env")
    monkeypatch.setenv("DSO_LLM_API_KEY", "k")
    settings = LLMSettings.resolve(threads=3)
    assert (settings.base_url, settings.model, settings.threads, settings.api_key) == ("http://127.0.0.1:9/v1", "from-env", 3, "k")
    (tmp_path / "llm.json").write_text(json.dumps({"api_key": "in-a-file"}))
    with pytest.raises(ConfigError, match="never in a file"):
        LLMSettings.resolve()
    with pytest.raises(ConfigError, match="http"):
        HttpChatModel("file:///etc/passwd", "m")
    with pytest.raises(ConfigError, match="http"):
        HttpChatModel("http://[::1", "m")



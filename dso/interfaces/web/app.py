"""`dso ui`: a local web page where DAO members review batches and proposals, vote with an optional
reason (on several batches at once), and finalize.

Safe by construction:
- every value reaches the page through Jinja2 with autoescaping on (experience texts also pass
  `display_text`, so control and bidi characters show as escapes), and the page's script only ever
  sets `textContent`; the Content-Security-Policy allows no inline script, no other origin;
- every state-changing request is a POST of JSON carrying the per-process CSRF token in an
  `X-CSRF-Token` header (a cross-site form cannot set a header, and a cross-site `fetch` with one
  needs a CORS preflight this server never grants) and, when the browser sends one, an `Origin`
  equal to the page's;
- requests whose Host header is not a loopback name with this port (or one configured with
  `--allowed-host`) are refused, which defeats DNS rebinding;
- keystore signing takes the password in the request body, only from a loopback client to a
  loopback-bound server: it is used to decrypt the wallet for that one request and never stored,
  logged or echoed (the access log is off; errors name the wallet, never the password). A browser
  wallet (EIP-1193, `window.ethereum`) signs instead when the page finds one: the server only
  builds the unsigned transaction.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dso.core.experience import display_text
from dso.edges.chain import Registry, Status, describe_deadline
from dso.edges.ipfs import ContentStore
from dso.errors import DsoError
from dso.interfaces.hosts import is_loopback
from dso.workflows.library import Library
from dso.workflows.review import batch_json, list_batches, list_proposals, proposal_json, review_batch, review_json

HERE = Path(__file__).parent
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]




@dataclass
class Services:
    """What the page reads and writes: the registry, the content store, the deploy block, an
    optional library (opened on first use: it loads the embedding model) and the wallets."""

    registry: Registry
    store: ContentStore
    deploy_block: int
    open_library: Callable[[], Library | None]
    list_wallets: Callable[[], list]
    load_wallet: Callable[[str, str], Any]


class HostAndSecurityHeaders:
    """ASGI middleware: refuse Host headers not in `allowed` (400), add the security headers."""

    def __init__(self, app: Any, allowed: set[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1").lower()
        if host not in self.allowed:
            await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"text/plain"), *SECURITY_HEADERS]})
            await send({"type": "http.response.body", "body": b"dso ui: refused Host header (start dso ui with --allowed-host NAME:PORT to serve it)\n"})
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


def build_app(services: Services, port: int, bound_host: str = "127.0.0.1", allowed_hosts: tuple[str, ...] = ()) -> Any:
    """The Starlette app for `dso ui` serving on `bound_host:port`."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    csrf = secrets.token_urlsafe(32)
    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True, default_for_string=True))
    templates.filters["shown"] = display_text
    templates.filters["short"] = lambda hex_text, n=16: hex_text[: n + 2] if hex_text.startswith("0x") else hex_text[:n]
    allowed = {f"{name}:{port}" for name in LOOPBACK_NAMES} | {h.lower() if ":" in h else f"{h.lower()}:{port}" for h in allowed_hosts}
    keystore_signing = is_loopback(bound_host)
    library_lock = threading.Lock()
    write_lock = threading.Lock()  # one transaction at a time: nonces come from the pending count

    def locked(action: Callable[[dict[str, Any]], dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
        with write_lock:
            return action(body)

    library_holder: dict[str, Library | None] = {}

    def library() -> Library | None:
        with library_lock:
            if "library" not in library_holder:
                library_holder["library"] = services.open_library()
            return library_holder["library"]

    def page(name: str, request: Request, **context: Any) -> HTMLResponse:
        wallets = [w for w in services.list_wallets() if w.address]
        body = templates.get_template(name).render(csrf=csrf, keystore_signing=keystore_signing, wallets=wallets,
                                                   registry=services.registry.address, **context)
        return HTMLResponse(body)

    def index(request: Request) -> HTMLResponse:
        registry = services.registry
        batches = list_batches(registry, services.deploy_block)
        proposals = list_proposals(registry)
        now = batches.now
        return page("index.html", request, now=now, batches=[batch_json(b, now) for b in batches.batches],
                    proposals=[proposal_json(p, now) for p in proposals.proposals], deadline=lambda t: describe_deadline(t, now))

    def batch_page(request: Request) -> Response:
        text = request.path_params["root"].lower().removeprefix("0x")
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            return HTMLResponse("not a batch root", status_code=404)
        registry = services.registry
        review = review_batch(registry, services.store, bytes.fromhex(text), services.deploy_block, library())
        now = registry.chain_time()
        return page("batch.html", request, now=now, review=review_json(review, now), deadline=lambda t: describe_deadline(t, now),
                    library_open=library() is not None)

    async def state_change(request: Request, action: Callable[[dict[str, Any]], dict[str, Any]], needs_password: bool) -> JSONResponse:
        if not hmac.compare_digest(request.headers.get("x-csrf-token", ""), csrf):
            return JSONResponse({"error": "missing or wrong CSRF token: reload the page"}, status_code=403)
        origin = request.headers.get("origin")
        if origin is not None and origin != f"http://{request.headers.get('host', '')}":
            return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send JSON (application/json)"}, status_code=415)
        if needs_password and not (keystore_signing and request.client is not None and is_loopback(request.client.host)):
            return JSONResponse({"error": "keystore signing only works from 127.0.0.1 to a server bound to 127.0.0.1: use a browser wallet"},
                                status_code=403)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return JSONResponse({"error": "the request body is not a JSON object"}, status_code=400)
        try:
            return JSONResponse(await run_in_threadpool(locked, action, body))
        except DsoError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"malformed request ({type(exc).__name__}: {exc})"}, status_code=400)

    def signer(body: dict[str, Any]) -> Any:
        # The password lives in this frame only: used to decrypt, never kept or logged.
        return services.load_wallet(str(body["wallet"]), str(body.pop("password")))

    def votes_of(body: dict[str, Any]) -> list[tuple[bytes, bool, str]]:
        votes = body["votes"]
        if not isinstance(votes, list) or not votes:
            raise ValueError("votes must be a non-empty list")
        return [(bytes.fromhex(str(v["root"]).removeprefix("0x")), bool(v["support"]), str(v.get("reason") or "")) for v in votes]

    def vote(body: dict[str, Any]) -> dict[str, Any]:
        tx = services.registry.cast_batch_votes(signer(body), votes_of(body))
        return {"tx": tx.tx_hash, "gas_used": tx.gas_used, "block": tx.block_number}

    def finalize(body: dict[str, Any]) -> dict[str, Any]:
        result = services.registry.finalize_batch(signer(body), bytes.fromhex(str(body["root"]).removeprefix("0x")))
        return {"tx": result.tx.tx_hash, "status": result.status.name.lower(), "gas_used": result.tx.gas_used}

    def proposal_vote(body: dict[str, Any]) -> dict[str, Any]:
        tx = services.registry.vote_on_proposal(signer(body), int(body["id"]), bool(body["support"]))
        return {"tx": tx.tx_hash, "gas_used": tx.gas_used}

    def proposal_finalize(body: dict[str, Any]) -> dict[str, Any]:
        result = services.registry.finalize_proposal(signer(body), int(body["id"]))
        return {"tx": result.tx.tx_hash, "status": result.status.name.lower(), "applied": result.applied}

    def unsigned(body: dict[str, Any]) -> dict[str, Any]:
        registry = services.registry
        action = body["action"]
        if action == "vote":
            tx = registry.unsigned_transaction("castBatchVotes", votes_of(body))
        elif action == "finalize":
            tx = registry.unsigned_transaction("finalizeBatch", bytes.fromhex(str(body["root"]).removeprefix("0x")))
        elif action == "proposal-vote":
            tx = registry.unsigned_transaction("voteOnProposal", int(body["id"]), bool(body["support"]))
        elif action == "proposal-finalize":
            tx = registry.unsigned_transaction("finalizeProposal", int(body["id"]))
        else:
            raise ValueError(f"unknown action {action!r}")
        return {**tx, "chainId": hex(tx["chainId"])}

    def post(action: Callable[[dict[str, Any]], dict[str, Any]], needs_password: bool) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            return await state_change(request, action, needs_password)
        return endpoint

    def batch_status(request: Request) -> JSONResponse:
        info = services.registry.batch(bytes.fromhex(request.path_params["root"].lower().removeprefix("0x")))
        return JSONResponse({"status": info.tally.status.name.lower(), "yes": info.tally.yes, "no": info.tally.no,
                             "accepted": info.tally.status == Status.ACCEPTED})

    routes = [
        Route("/", index),
        Route("/batch/{root}", batch_page),
        Route("/api/batch/{root}", batch_status),
        Route("/api/vote", post(vote, True), methods=["POST"]),
        Route("/api/finalize", post(finalize, True), methods=["POST"]),
        Route("/api/proposal-vote", post(proposal_vote, True), methods=["POST"]),
        Route("/api/proposal-finalize", post(proposal_finalize, True), methods=["POST"]),
        Route("/api/unsigned", post(unsigned, False), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return HostAndSecurityHeaders(Starlette(routes=routes), allowed)


def serve(app: Any, host: str, port: int) -> None:
    """Run the page with uvicorn until interrupted; no access log (request lines only, but none kept)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)

"""The Studio simulator's HTTP side: the aiohttp application (routes, auth gate, Date header), the server, serve()."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from email.utils import format_datetime
from types import FrameType, TracebackType
from typing import Any, Final, Self

from aiohttp import web
from aiohttp.typedefs import Handler

from ._create import CreateRoutes
from ._flows import FlowRoutes
from ._numbers import NumberRoutes
from ._reads import ReadRoutes
from ._views import twilio_now
from .config import DEFAULT_CONFIG, LedgerEntry, SandboxConfig, SandboxStats
from .shapes import ApiError, not_found

# Pauses end early on shutdown, so in-flight answers need little time to finish.
_SHUTDOWN_GRACE: Final = 1.0


class _Studio(FlowRoutes, CreateRoutes, ReadRoutes, NumberRoutes):
    """The whole simulator: its state and every route, served as one aiohttp application."""

    def make_app(self) -> web.Application:
        """Build the aiohttp application serving the Studio routes."""

        @web.middleware
        async def twilio_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            if "Cookie" in request.headers:
                with self._lock:
                    self._counts["cookies_sent_back"] += 1
            if self._account(request) is None:
                return ApiError(
                    401,
                    20003,
                    "Authentication Error - invalid username",
                    headers={"WWW-Authenticate": 'Basic realm="Twilio API"'},
                ).response()
            try:
                return await handler(request)
            except ApiError as exc:
                return exc.response()
            except web.HTTPNotFound:
                return not_found(request.path).response()
            except web.HTTPMethodNotAllowed:
                return ApiError(405, 20004, "Method not allowed").response()

        app = web.Application(middlewares=[twilio_gate])
        app.on_response_prepare.append(self._stamp_date)
        app.router.add_get("/v{version:[12]}/Flows/{flow}", self._fetch_flow)
        app.router.add_get("/v2/Flows/{flow}/Revisions/{revision}", self._fetch_revision)
        for runs in ("/v1/Flows/{flow}/{collection:Engagements}", "/v2/Flows/{flow}/{collection:Executions}"):
            app.router.add_post(runs, self._create)
            app.router.add_get(runs, self._list)
            app.router.add_get(runs + "/{sid}", self._fetch_run)
            app.router.add_get(runs + "/{sid}/Context", self._fetch_context)
        # UpdateExecution (Status=ended) exists for Executions only: Twilio documents no update of an Engagement.
        app.router.add_post("/v2/Flows/{flow}/{collection:Executions}/{sid}", self._update)
        app.router.add_get("/2010-04-01/Accounts/{account}/Messages/{sid}.json", self._fetch_message)
        app.router.add_get("/2010-04-01/Accounts/{account}/IncomingPhoneNumbers.json", self._list_numbers)
        app.router.add_get("/v1/Services", self._list_services)
        app.router.add_get("/v1/Services/{service}", self._fetch_service)
        app.router.add_get("/v1/Services/{service}/PhoneNumbers", self._list_service_numbers)
        return app

    async def _stamp_date(self, request: web.Request, response: web.StreamResponse) -> None:
        """Put Twilio's clock in the Date header of every answer, in place of aiohttp's (and a cookie, if set)."""
        with self._lock:
            now = twilio_now(self._config) + timedelta(seconds=self._config.date_header_offset)
        response.headers["Date"] = format_datetime(now.replace(microsecond=0), usegmt=True)
        if self._config.set_cookie is not None:
            response.headers["Set-Cookie"] = self._config.set_cookie


def _finish_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on a loop, let it unwind, and close the loop."""
    # Handlers of connections the client already gave up on (slow faults) are no
    # longer tracked by aiohttp; cancelling them here keeps "Task was destroyed but
    # it is pending" out of the test suite.
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


class Sandbox:
    """A Twilio Studio simulator on 127.0.0.1, served from a background thread."""

    def __init__(
        self,
        config: SandboxConfig = DEFAULT_CONFIG,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Prepare a sandbox; nothing listens until start()."""
        self._studio = _Studio(config)
        self._host = host
        self._port = port
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL, like http://127.0.0.1:54321."""
        if self._url is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return self._url

    def start(self) -> str:
        """Start serving and answer the base URL once the port is listening."""
        with self._lifecycle:
            if self._thread is not None:
                raise RuntimeError("the sandbox is already running")
            ready = threading.Event()
            failures: list[BaseException] = []
            thread = threading.Thread(
                target=self._serve_in_thread,
                args=(ready, failures),
                name="batch-engage-sandbox",
                daemon=True,
            )
            thread.start()
            ready.wait()
            if failures:
                thread.join()
                raise failures[0]
            self._thread = thread
            return self.url

    def stop(self) -> None:
        """Stop serving and join the server thread; safe to call more than once."""
        with self._lifecycle:
            thread, loop = self._thread, self._loop
            if thread is None:
                return
            if loop is not None:
                loop.call_soon_threadsafe(self._studio.begin_closing)
                loop.call_soon_threadsafe(loop.stop)
            thread.join()
            self._thread = self._loop = self._url = None

    def __enter__(self) -> Self:
        """Start serving."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.stop()

    def ledger(self) -> list[LedgerEntry]:
        """Answer a copy of every run created so far, in creation order."""
        return self._studio.ledger()

    def stats(self) -> SandboxStats:
        """Answer a snapshot of the request counters."""
        return self._studio.stats()

    def reconfigure(self, **changes: Any) -> None:
        """Change settings of the running sandbox, as dataclasses.replace would."""
        self._studio.reconfigure(changes)

    def end_all_runs(self) -> None:
        """Mark every run ended, so the active rule no longer blocks its contact."""
        self._studio.end_all_runs()

    def _serve_in_thread(self, ready: threading.Event, failures: list[BaseException]) -> None:
        """Run the server's event loop until stop() stops it."""
        if hasattr(signal, "pthread_sigmask"):
            # The kernel hands a process signal to any thread that does not block
            # it; only the main thread can act on Ctrl-C or SIGTERM.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        loop = asyncio.new_event_loop()
        try:
            runner = loop.run_until_complete(self._open())
        except BaseException as exc:
            failures.append(exc)
            _finish_loop(loop)
            ready.set()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(runner.cleanup())
            finally:
                _finish_loop(loop)

    async def _open(self) -> web.AppRunner:
        """Bind the port and record the URL it is reachable at."""
        runner = web.AppRunner(
            self._studio.make_app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_GRACE,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            port = runner.addresses[0][1]
        except BaseException:
            await runner.cleanup()
            raise
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"http://{host}:{port}"
        self._studio.serving_at(self._url)
        return runner


class _Terminated(BaseException):
    """Raised by the SIGTERM handler to leave serve()'s wait."""


def serve(
    config: SandboxConfig = DEFAULT_CONFIG,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM (`batch-engage sandbox`)."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    # Built first: a bad state file raises before any signal handler is swapped.
    sandbox = Sandbox(config, host=host, port=port)
    # signal.signal only works on the main thread; elsewhere only Ctrl-C applies.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    try:
        url = sandbox.start()
        if on_ready is not None:
            on_ready(url)
        # time.sleep, unlike a lock wait, also wakes for Ctrl-C on Windows.
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sandbox.stop()

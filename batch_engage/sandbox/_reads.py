"""Routes that read runs: fetch one, its Context, a message it sent, and list pages (filters and paging)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from ._core import Studio
from ._views import ended_at, expired, replies_heard, run_context, run_json, run_url
from .config import SANDBOX_USERNAME, Api, SandboxConfig
from .shapes import ApiError, int_query, not_found, parse_moment
from .state import Message, Run, message_json, message_sid, run_messages

__all__ = ["ReadRoutes"]

_DEFAULT_PAGE_SIZE: Final = 50
_MAX_PAGE_SIZE: Final = 1000


class ReadRoutes(Studio):
    """The read handlers: a run, its Context, a message, and a page of the list."""

    async def _fetch_run(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/Flows/{f}/Engagements/{sid} and /v2/Flows/{f}/Executions/{sid}."""
        config = self._read_gate("run_requests")
        run = self._find_run(request)
        with self._lock:
            return web.json_response(run_json(run, config, self.base_url))

    async def _fetch_context(self, request: web.Request) -> web.StreamResponse:
        """GET .../Engagements/{sid}/Context and .../Executions/{sid}/Context."""
        config = self._read_gate("context_requests")
        run = self._find_run(request)
        with self._lock:
            context = run_context(run, config)
        key = "engagement_sid" if run.api == "engagements" else "execution_sid"
        return web.json_response(
            {
                "account_sid": run.account_sid,
                "context": context,
                key: run.sid,
                "flow_sid": run.flow_sid,
                "url": f"{run_url(run, self.base_url)}/Context",
            }
        )

    async def _fetch_message(self, request: web.Request) -> web.StreamResponse:
        """GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json for a message a run sent or got."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        config = self._count("message_requests")
        message: Message | None = None
        with self._lock:
            run, role = self._messages.get(request.match_info["sid"], (None, ""))
            # A message exists once its run has played out; a contact who never got
            # the question never replied.
            ended = None if run is None else ended_at(run, config)
            if run is not None and ended is not None:
                heard = replies_heard(run, config)
                message = run_messages(run, config.replies_for(run.parameters), ended, heard=heard).get(role)
            intro = None if run is None else self._fates.get(message_sid("intro", run))
            fate = self._fates.get(request.match_info["sid"])
        if role == "reply" and intro is not None and intro.status == "failed":
            message = None  # a contact who never got the question never replied
        if message is None or account_sid != request.match_info["account"] or account_sid != message.run.account_sid:
            raise not_found(request.path)
        return web.json_response(message_json(message, fate))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/Flows/{sid}/Engagements and /v2/Flows/{sid}/Executions: one page, newest first."""
        api = self._api(request)
        account_sid = self._account(request) or SANDBOX_USERNAME
        self._read_gate("list_requests")
        flow_sid = request.match_info["flow"]
        self._flow_status(request)
        query = request.query
        page_size = int_query(query, "PageSize", _DEFAULT_PAGE_SIZE, 1, _MAX_PAGE_SIZE)
        page = int_query(query, "Page", 0, 0, None)
        token = query.get("PageToken")
        filters, keep = self._list_filters(query, api)

        with self._lock:
            config = self._config
            matches = [
                run
                for run in self._runs
                if run.api == api and run.flow_sid == flow_sid and run.account_sid == account_sid and keep(run, config)
            ]
            matches.sort(key=Run.order, reverse=True)
            start, end = self._page_bounds(matches, token, page_size)
            chosen = matches[start:end]
            items = [run_json(run, config, self.base_url, listed=True) for run in chosen]

        page_base = self.base_url
        if config.next_page_host is not None:
            # Only the host changes: a client that follows it must not send its credentials there.
            page_base = urlunsplit(urlsplit(self.base_url)._replace(netloc=config.next_page_host))

        def page_url(number: int, page_token: str | None) -> str:
            params = {**filters, "PageSize": str(page_size), "Page": str(number)}
            if page_token is not None:
                params["PageToken"] = page_token
            return f"{page_base}{request.path}?{urlencode(params)}"

        url = page_url(page, token)
        if config.repeat_next_page:
            next_url: str | None = url
        elif end < len(matches) and chosen:
            next_url = page_url(page + 1, f"PA{chosen[-1].seq}")
        else:
            next_url = None
        previous_url = page_url(max(0, page - 1), f"PB{chosen[0].seq}") if start > 0 and chosen else None
        meta = {
            "page": page,
            "page_size": page_size,
            "first_page_url": page_url(0, None),
            "previous_page_url": previous_url,
            "url": url,
            "next_page_url": next_url,
            "key": api,
        }
        return web.json_response({api: items, "meta": meta})

    def _list_filters(
        self, query: Mapping[str, str], api: Api
    ) -> tuple[dict[str, str], Callable[[Run, SandboxConfig], bool]]:
        """Read v2's DateCreatedFrom/To and status filters: the ones to echo, and a test (v1 has none)."""
        # Echoed into the paging URLs so following next_page_url keeps filtering.
        filters: dict[str, str] = {}
        date_from = date_to = None
        wanted_status = None
        if api == "executions":
            if "DateCreatedFrom" in query:
                filters["DateCreatedFrom"] = query["DateCreatedFrom"]
                date_from = parse_moment("DateCreatedFrom", query["DateCreatedFrom"])
            if "DateCreatedTo" in query:
                filters["DateCreatedTo"] = query["DateCreatedTo"]
                date_to = parse_moment("DateCreatedTo", query["DateCreatedTo"])
            # The OpenAPI file spells it "status"; the helper libraries send "Status".
            for name in ("status", "Status"):
                if name in query:
                    wanted_status = query[name]
                    if wanted_status not in ("active", "ended"):
                        raise ApiError(400, 20001, f"Invalid {name}: {wanted_status!r}")
                    filters[name] = wanted_status

        def keep(run: Run, config: SandboxConfig) -> bool:
            if expired(run, config):
                return False
            # Dates are compared on Twilio's clock: that is the clock run dates are on.
            if date_from is not None and run.date_created < date_from:
                return False
            if date_to is not None and run.date_created >= date_to:
                return False
            return wanted_status is None or wanted_status == ("active" if ended_at(run, config) is None else "ended")

        return filters, keep

    def _page_bounds(self, matches: list[Run], token: str | None, page_size: int) -> tuple[int, int]:
        """Turn a page token into a slice of the newest-first matches (lock held)."""
        if token is None:
            return 0, page_size
        # Tokens name a run rather than an offset, so runs created while a client is
        # paging do not shift later pages under it.
        anchor: Run | None = None
        if token[:2] in ("PA", "PB") and token[2:].isdigit() and int(token[2:]) < len(self._runs):
            anchor = self._runs[int(token[2:])]
        if anchor is None:
            raise ApiError(400, 20001, f"Invalid PageToken: {token!r}")
        if token.startswith("PA"):
            start = sum(1 for run in matches if run.order() >= anchor.order())
            return start, start + page_size
        end = sum(1 for run in matches if run.order() > anchor.order())
        return max(0, end - page_size), end

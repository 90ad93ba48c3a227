"""Routes for Flows and their revisions: GET /v1|v2/Flows/{sid} and /v2/Flows/{sid}/Revisions/{n}."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from ._core import Studio
from .config import SANDBOX_USERNAME, SandboxConfig
from .shapes import ASK_BODY, DRAFT_ASK_BODY, FlowRevisions, flow_definition, hex32, iso, not_found

__all__ = ["FlowRoutes"]


class FlowRoutes(Studio):
    """The Flow fetch handlers: a v1 Flow, a v2 Flow (its latest revision) and one v2 revision."""

    async def _fetch_flow(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/Flows/{sid} and /v2/Flows/{sid} (v2 shows the latest revision)."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        config = self._count("flow_requests")
        revisions = FlowRevisions.of(self._flow_status(request))
        sid = request.match_info["flow"]
        self._saw_flow(sid)
        url = f"{self.base_url}/v{request.match_info['version']}/Flows/{sid}"
        if request.match_info["version"] == "1":
            return web.json_response(
                {
                    "sid": sid,
                    "account_sid": account_sid,
                    "friendly_name": f"Sandbox Flow {sid[-4:]}",
                    "status": revisions.status(revisions.latest),
                    "version": 1,
                    "date_created": iso(self._flows_born),
                    "date_updated": self._revision_updated(revisions.latest),
                    "url": url,
                    "links": {"engagements": f"{url}/Engagements", "executions": f"{url}/Executions"},
                }
            )
        body = self._revision_json(account_sid, sid, revisions, revisions.latest, config)
        body.update(
            warnings=[],
            webhook_url=f"https://webhooks.twilio.com/v1/Accounts/{account_sid}/Flows/{sid}",
            url=url,
            links={
                "test_users": f"{url}/TestUsers",
                "revisions": f"{url}/Revisions",
                "executions": f"{url}/Executions",
            },
        )
        return web.json_response(body)

    async def _fetch_revision(self, request: web.Request) -> web.StreamResponse:
        """GET /v2/Flows/{sid}/Revisions/{n | LatestPublished | LatestRevision}."""
        account_sid = self._account(request) or SANDBOX_USERNAME
        config = self._count("revision_requests")
        revisions = FlowRevisions.of(self._flow_status(request))
        wanted = request.match_info["revision"]
        number: int | None
        if wanted == "LatestPublished":
            number = revisions.published
        elif wanted == "LatestRevision":
            number = revisions.latest
        else:
            number = int(wanted) if wanted.isdigit() and 1 <= int(wanted) <= revisions.latest else None
        if number is None:
            raise not_found(request.path)
        return web.json_response(
            self._revision_json(account_sid, request.match_info["flow"], revisions, number, config)
        )

    def _revision_updated(self, number: int) -> str | None:
        """date_updated of a revision: revisions after the first are edits, a minute apart."""
        return None if number == 1 else iso(self._flows_born + timedelta(minutes=number - 1))

    def _revision_json(
        self, account_sid: str, sid: str, revisions: FlowRevisions, number: int, config: SandboxConfig
    ) -> dict[str, Any]:
        """Render one revision of a Flow, in the shape v2 Flow and FlowRevision share."""
        unpublished_edit = revisions.published is not None and number > revisions.published
        definition = flow_definition(
            wired=not config.unwired_trigger, ask_body=DRAFT_ASK_BODY if unpublished_edit else ASK_BODY
        )
        return {
            "sid": sid,
            "account_sid": account_sid,
            "author_sid": "US" + hex32("author", account_sid),
            "friendly_name": f"Sandbox Flow {sid[-4:]}",
            "definition": definition,
            "status": revisions.status(number),
            "revision": number,
            "commit_message": "Ask for a coupon code" if unpublished_edit else None,
            "valid": True,
            "errors": [],
            "date_created": iso(self._flows_born),
            "date_updated": self._revision_updated(number),
            "url": f"{self.base_url}/v2/Flows/{sid}/Revisions/{number}",
        }

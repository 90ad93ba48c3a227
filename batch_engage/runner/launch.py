"""A job resolved once for a run: the Spec as it runs, who it runs as, the Studio it talks to, what binds it.

What a run needs to know about its job that is worked out from the job (and not from its input or its
checkpoint) is worked out once, before anything is opened; the runner takes the result and never goes
back to the job file's rules. Whoever resolves the Spec proves its outputs first (``commands.launched``,
a period's settling, ``recover``), before a simulator starts or anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..checkpoint import Target
from ..credentials import Credentials
from ..job import Spec
from ..plan import fingerprint
from ..twilio import check_base_url, studio_base_url, studio_region_warning

__all__ = ["Launch", "launch", "target_for"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Launch:
    """One job, resolved for a run: its Spec (period and rehearsal applied), credentials, Studio URL and target."""

    spec: Spec
    credentials: Credentials
    base_url: str
    """Studio's base URL for this job, checked (https, or http to loopback)."""
    target: Target
    """What the checkpoint is bound to: the Twilio this job's runs go to, and as whom."""
    fingerprint: Mapping[str, Any]
    """What binds a checkpoint to this job: Flow, API, mapping, planning settings."""
    tokens: Mapping[str, str] = field(default_factory=dict)
    """The marker tokens of this job's other checkpoints, and whose they are (for ``on_active = "end"``)."""


def target_for(spec: Spec, credentials: Credentials | None, *, sandbox: bool) -> Target:
    """The Twilio this job's runs go to: base URL (with region and edge), the credential's SID, sandbox or not."""
    if sandbox:
        return Target(base_url="sandbox", identity=None, sandbox=True)
    region = credentials.region if credentials else None
    edge = credentials.edge if credentials else None
    return Target(
        base_url=studio_base_url(spec.flow, region=region, edge=edge),
        identity=credentials.username if credentials else None,
    )


def launch(spec: Spec, credentials: Credentials, *, sandbox: bool, tokens: Mapping[str, str] | None = None) -> Launch:
    """``spec`` resolved for a run as ``credentials`` (its outputs already proven): its Studio URL checked.

    A region where Studio is not generally offered is a warning, logged once here.
    """
    bound = fingerprint(spec)
    base_url = studio_base_url(spec.flow, region=credentials.region, edge=credentials.edge)
    check_base_url(base_url)
    if not spec.flow.base_url and (warning := studio_region_warning(spec.flow.region or credentials.region)):
        log.warning("region.studio", message=warning)
    # target_for's, from the URL just worked out.
    target = (
        Target(base_url="sandbox", identity=None, sandbox=True)
        if sandbox
        else Target(base_url=base_url, identity=credentials.username)
    )
    return Launch(spec, credentials, base_url, target, bound, tokens or {})

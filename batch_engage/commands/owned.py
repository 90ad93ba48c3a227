"""A checkpoint that a command reads in place of a run must be this job's, on this side of ``--sandbox``.

``run`` refuses a checkpoint made for another job or another Twilio (``check_binding``), and
``collect`` one made on the other side of ``--sandbox``. ``sweep`` and ``report`` are held to the
same: given another job's checkpoint (``--checkpoint``), ``sweep`` would end that job's runs as this
job's own and ``report`` would write its rows over this job's results table.
"""

from __future__ import annotations

import json

from ..checkpoint import SCHEMA_VERSION, Target, checkpoint_meta, describe_mismatch
from ..credentials import Credentials
from ..errors import UsageError
from ..job import Spec
from ..plan import fingerprint
from ..postgres import masked

__all__ = ["refuse_foreign_checkpoint"]


def refuse_foreign_checkpoint(
    spec: Spec, command: str, *, sandbox: bool, nothing: str, credentials: Credentials | None = None
) -> None:
    """Refuse (exit 2) a checkpoint made for another job, or on the other side of ``--sandbox``; with
    ``credentials``, one made against another Twilio too. ``nothing`` ends the line ("nothing was ended")."""
    where = spec.output.checkpoint
    meta = checkpoint_meta(where)
    shown = masked(where)
    # A checkpoint of an older format keeps its fingerprint in another shape; its run upgrades it first.
    if meta.get("version") == SCHEMA_VERSION and "fingerprint" in meta:
        stored, bound = json.loads(meta["fingerprint"]), fingerprint(spec)
        if stored != bound:
            raise UsageError(
                f"{command}: {shown} was made for another job ({describe_mismatch(stored, bound)}: not this job's); "
                f"{nothing}"
            )
    if "target" not in meta:
        return
    was = Target(**json.loads(meta["target"]))
    if was.sandbox != sandbox:
        made, hint = ("a rehearsal's, made on the sandbox", "add") if was.sandbox else ("made on Twilio", "drop")
        raise UsageError(f"{command}: {shown} is {made} ({hint} --sandbox); {nothing}")
    if credentials is not None and not sandbox:
        from ..runner import target_for  # noqa: PLC0415 - the runner loads only for a command that needs it

        target = target_for(spec, credentials, sandbox=False)
        if was.differs(target):
            made = f"was made against {was.describe()}, not {target.describe()}"
            raise UsageError(f"{command}: {shown} {made}; {nothing}")

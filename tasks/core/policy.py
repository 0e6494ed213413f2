"""A registered model's approval policy: must a person approve each promotion, who may, how long a run waits.

It lives on the registered model (its tags, shown in the MLflow UI), not in a run's configuration: whoever starts a
run can ask for approval (gate.require_approval) but cannot switch off a policy's requirement; only
`greenlight policy` changes it, and each change records who made it and when (docs/promotion.md#approval-policy).
"""

import getpass
import json
import os
import re
from dataclasses import asdict, dataclass, replace

from tasks.core.errors import ConfigRejected

# Registered-model tags: policy.<field> holds the current policy, policy_history.<nanoseconds> each change (JSON).
POLICY_TAG_PREFIX = "policy."
POLICY_HISTORY_PREFIX = "policy_history."
# As GateConfig.approval_timeout_s: Prefect's pause needs a few seconds to be seen at all; an hour is a working meeting.
MIN_TIMEOUT_S, DEFAULT_TIMEOUT_S = 10, 3600
DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class ApprovalPolicy:
    """What the registered model's owner decided about approvals; the default asks for none."""

    require_approval: bool = False
    approvers: tuple[str, ...] = ()  # empty: anyone may approve; else only these names (as typed, any case)
    approval_timeout_s: int = DEFAULT_TIMEOUT_S
    changed_by: str = ""  # who set it last (`greenlight policy`'s actor), empty while never set
    changed_at: str = ""

    def allows(self, reviewer: str) -> bool:
        """The reviewer may approve: any name when the policy lists none, else one of its approvers."""
        return not self.approvers or reviewer.strip().lower() in {a.lower() for a in self.approvers}

    def describe(self) -> str:
        """One line: what the policy demands, and who set it when."""
        if not self.require_approval:
            what = "approval not required by policy (a run may still ask for it: gate.require_approval)"
        else:
            who = ", ".join(self.approvers) if self.approvers else "anyone"
            what = f"approval required from {who}, waiting at most {self.approval_timeout_s} s"
        origin = f"set by {self.changed_by} at {self.changed_at}" if self.changed_by else "never set"
        return f"{what}; {origin}"

    def tags(self) -> dict[str, str]:
        """The policy as registered-model tags (policy.<field>), readable in the MLflow UI."""
        values = asdict(self) | {"approvers": ",".join(self.approvers)}
        return {
            f"{POLICY_TAG_PREFIX}{key}": str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in values.items()
        }

    def history_entry(self) -> str:
        """The change as one JSON line, kept beside the earlier ones (policy_history.<ns>)."""
        return json.dumps(asdict(self))

    def changed(self, require_approval: bool | None, approvers: str | None, timeout: str | None) -> "ApprovalPolicy":
        """This policy with the given changes (None: unchanged), the actor and time still to be stamped."""
        update: dict = {}
        if require_approval is not None:
            update["require_approval"] = require_approval
        if approvers is not None:
            update["approvers"] = tuple(name.strip() for name in approvers.split(",") if name.strip())
        if timeout is not None:
            update["approval_timeout_s"] = parse_duration(timeout)
        return replace(self, **update)


def policy_from_tags(tags: dict[str, str]) -> ApprovalPolicy:
    """The policy a registered model's tags hold; the default one when it has none."""
    values = {
        key.removeprefix(POLICY_TAG_PREFIX): value for key, value in tags.items() if key.startswith(POLICY_TAG_PREFIX)
    }
    default = ApprovalPolicy()
    return ApprovalPolicy(
        require_approval=values.get("require_approval", "false") == "true",
        approvers=tuple(name for name in values.get("approvers", "").split(",") if name),
        approval_timeout_s=int(values.get("approval_timeout_s", default.approval_timeout_s)),
        changed_by=values.get("changed_by", ""),
        changed_at=values.get("changed_at", ""),
    )


def person_at_terminal() -> str:
    """The person running a command, by the name a policy's approvers list (GREENLIGHT_ACTOR, else the login)."""
    return os.environ.get("GREENLIGHT_ACTOR") or getpass.getuser()


def terminal_actor() -> str:
    """How the history names that person: GREENLIGHT_ACTOR as set, else 'user <login>'."""
    return os.environ.get("GREENLIGHT_ACTOR") or f"user {getpass.getuser()}"


def parse_duration(text: str) -> int:
    """'90s', '15m', '1h', '2d' or plain seconds as seconds; at least MIN_TIMEOUT_S."""
    match = DURATION.match(text.lower())
    if match is None:
        raise ConfigRejected(f"approval timeout '{text}' is not a duration: write e.g. 90s, 15m, 1h or 2d")
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds < MIN_TIMEOUT_S:
        raise ConfigRejected(f"approval timeout '{text}' is under {MIN_TIMEOUT_S} s: nobody could answer in time")
    return seconds

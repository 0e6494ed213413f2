"""`greenlight policy`: show or change a registered model's approval policy, the only way to change it (the
manual: docs/promotion.md#approval-policy). The policy lives on the registered model as tags, so a run's
configuration can ask for more approval but never for less."""

import argparse
from dataclasses import replace
from datetime import UTC, datetime

from tasks.core.locations import Locations

SWITCH = {"on": True, "off": False}


def add_policy_parser(commands: argparse._SubParsersAction) -> None:
    """The `policy` command and its flags; with none it only shows the policy."""
    policy = commands.add_parser(
        "policy",
        help="show or change a model's approval policy (who must approve a promotion, how long a run waits)",
        description=(
            "With no flags: print the model's approval policy and its changes. With flags: change it (kept as"
            " registered-model tags policy.*, with who changed it and when). Under a policy that requires approval"
            " every run pauses before promotion until one of the approvers answers in Prefect, whatever the run's"
            " gate.require_approval says, and `greenlight promote` works only for an approver, recorded as such."
        ),
    )
    policy.add_argument("--model-name", default="digits-classifier")
    policy.add_argument("--require-approval", choices=sorted(SWITCH), help="on: every promotion needs a person's yes")
    policy.add_argument("--approvers", help="comma-separated names allowed to approve ('' : anyone)")
    policy.add_argument("--approval-timeout", help="how long a run waits for an answer: 90s, 15m, 1h, 2d")


def command_policy(args: argparse.Namespace, locations: Locations) -> int:
    """Print the policy; with flags, change it first (recording the actor and the time)."""
    from deployments.preflight import check_tracking_store
    from tasks.core.policy import terminal_actor
    from tasks.registry.client import read_approval_policy, write_approval_policy

    changes = (args.require_approval, args.approvers, args.approval_timeout)
    check_tracking_store(locations.tracking_uri, create=any(value is not None for value in changes))
    policy = read_approval_policy(locations.tracking_uri, args.model_name)
    if any(value is not None for value in changes):
        switch = SWITCH[args.require_approval] if args.require_approval else None
        changed = policy.changed(switch, args.approvers, args.approval_timeout)
        policy = replace(
            changed, changed_by=terminal_actor(), changed_at=datetime.now(UTC).isoformat(timespec="seconds")
        )
        write_approval_policy(locations.tracking_uri, args.model_name, policy)
        print(f"'{args.model_name}' policy changed")
    print(f"'{args.model_name}': {policy.describe()}")
    return 0

"""``notification``: send a notice to e-mail (SMTP provider) and webhook channels.

Every channel is tried; the output lists each delivery. The step fails when any channel failed (the
others were still delivered, and the message says which). A dry run renders the notice and resolves
the connections but sends nothing.
"""

from __future__ import annotations

from typing import ClassVar

from disaster_recovery.notify import send_notice
from disaster_recovery.plans.language.step_configs import NotificationConfig
from disaster_recovery.plans.rules.templates import TemplateRenderError
from disaster_recovery.steps.base import StepContext, StepFailed, StepResult


class NotificationStep:
    type_name: ClassVar[str] = "notification"

    def run(self, config: NotificationConfig | dict, ctx: StepContext) -> StepResult:
        cfg = config if isinstance(config, NotificationConfig) else NotificationConfig.model_validate(config)
        if not cfg.channels:
            raise StepFailed(
                "The notification step has no channels: give it 'channels', or the plan "
                "'notifications.channels' (filled in when the plan is rendered)."
            )
        context = {
            "plan_name": ctx.plan_name,
            "step_name": ctx.step_name,
            "execution_id": ctx.execution_id,
            "dry_run": ctx.dry_run,
            "try_number": ctx.try_number,
            "event": "step",
        }
        try:
            deliveries = send_notice(cfg.channels, context=context, message=cfg.message, dry_run=ctx.dry_run)
        except TemplateRenderError as exc:
            raise StepFailed(
                f"Step {ctx.step_name!r}: the notice was not sent: field 'config.{exc.field}': "
                f"{exc.reason}"
            ) from None
        delivered = [d for d in deliveries if d.ok]
        failed = [d for d in deliveries if not d.ok]
        output = {
            "dry_run": ctx.dry_run,
            "deliveries": [d.as_dict() for d in deliveries],
            "delivered": len(delivered),
            "failed": len(failed),
        }
        prefix = "Dry run: " if ctx.dry_run else ""
        if failed:
            problems = "; ".join(f"{d.channel} to {d.target}: {d.error}" for d in failed)
            ok_part = f" ({len(delivered)} other channel(s) delivered)" if delivered else ""
            raise StepFailed(
                f"{prefix}{len(failed)} of {len(deliveries)} notification channel(s) failed: {problems}{ok_part}.",
                output=output,
            )
        verb = "would send" if ctx.dry_run else "sent"
        targets = "; ".join(f"{d.channel} to {d.target}" for d in deliveries)
        return StepResult(output=output, sentence=f"{prefix}{verb.capitalize() if not prefix else verb} the notice to {len(deliveries)} channel(s): {targets}.")

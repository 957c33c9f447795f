"""Sending notices: e-mail through Airflow's SMTP provider, JSON to webhooks.

Used by the ``notification`` step and by the finalize task (completion / failure notices). Templates
(subject, body, message, string values of a webhook payload) are Jinja, rendered in a sandbox with the
notice's context (plan_name, step_name, execution_id, event, status, message, ...). A delivery never
raises: each channel returns a ``Delivery`` saying whether it went out. Nothing secret is logged or
returned: e-mail targets are the recipients, webhook targets the connection id or the URL cut to
``scheme://host/…`` (webhook URLs often carry their token in the path).
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from disaster_recovery.connections import http_target, redact_url
from disaster_recovery.plans.language.channels import EmailChannel, WebhookChannel
from disaster_recovery.plans.rules.templates import render_template, render_templates

log = logging.getLogger("disaster_recovery.notify")

WEBHOOK_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, kw_only=True)
class Delivery:
    channel: str  # email | webhook
    target: str  # recipients, or conn id / redacted URL
    ok: bool
    duration_ms: float
    error: str | None = None
    status_code: int | None = None
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_subject(context: Mapping[str, Any]) -> str:
    plan = context.get("plan_name") or "recovery plan"
    what = context.get("status") or context.get("event") or "notice"
    return f"[disaster recovery] {plan}: {what}"


def default_message(context: Mapping[str, Any]) -> str:
    plan = context.get("plan_name") or "a recovery plan"
    step = context.get("step_name")
    what = context.get("status") or context.get("event")
    text = f"Recovery plan '{plan}'"
    if step:
        text += f", step '{step}'"
    if what:
        text += f": {what}"
    if context.get("execution_id"):
        text += f" (execution {context['execution_id']})"
    return text + "."


def default_payload(context: Mapping[str, Any], message: str) -> dict[str, Any]:
    keys = ("plan_name", "step_name", "execution_id", "event", "status", "dry_run")
    payload = {k: context[k] for k in keys if context.get(k) is not None}
    payload["message"] = message
    payload["sent_at"] = datetime.now(UTC).isoformat()
    return payload


def _html(text: str) -> str:
    return "<html><body><p>" + html.escape(text).replace("\n", "<br>\n") + "</p></body></html>"


def _from_email() -> str | None:
    try:
        from airflow.configuration import conf

        return conf.get("email", "from_email", fallback=None) or None
    except Exception:
        return None


def send_email(channel: EmailChannel, *, subject: str, body: str, dry_run: bool = False) -> Delivery:
    """Mail ``body`` (plain text, sent as simple HTML) through the channel's SMTP connection."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    target = ", ".join(channel.to)
    started = time.monotonic()
    try:
        if dry_run:  # resolve the connection and the sender; do not connect
            hook = SmtpHook(smtp_conn_id=channel.smtp_conn_id)
            hook.smtp_connection = hook.get_connection(channel.smtp_conn_id)
            if not (hook.from_email or _from_email()):
                raise ValueError(f"no sender: set 'from_email' in the extra of connection '{channel.smtp_conn_id}'")
        else:
            with SmtpHook(smtp_conn_id=channel.smtp_conn_id) as hook:
                hook.send_email_smtp(
                    to=list(channel.to),
                    subject=subject,
                    html_content=_html(body),
                    from_email=hook.from_email or _from_email(),
                )
    except Exception as exc:
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        log.warning("e-mail to %s via %s failed: %s", target, channel.smtp_conn_id, error)
        return Delivery(channel="email", target=target, ok=False, duration_ms=_ms(started), error=error, dry_run=dry_run)
    log.info("e-mail %s to %s via %s", "built (dry run)" if dry_run else "sent", target, channel.smtp_conn_id)
    return Delivery(channel="email", target=target, ok=True, duration_ms=_ms(started), dry_run=dry_run)


def post_webhook(channel: WebhookChannel, *, payload: Any, dry_run: bool = False) -> Delivery:
    """Send ``payload`` as JSON to the channel's URL or HTTP connection; ok on a 2xx answer."""
    started = time.monotonic()
    url = ""
    target = f"conn:{channel.http_conn_id}" if channel.http_conn_id else redact_url(channel.url or "")
    try:
        if channel.http_conn_id:
            url, auth, headers = http_target(channel.http_conn_id, channel.endpoint)
        else:
            url, auth, headers = channel.url or "", None, {}
        body = json.dumps(payload, default=str)
        if dry_run:
            return Delivery(channel="webhook", target=target, ok=True, duration_ms=_ms(started), dry_run=True)
        with httpx.Client(timeout=WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = client.request(
                channel.method,
                url,
                content=body,
                headers={"Content-Type": "application/json", **headers},
                auth=auth,
            )
    except Exception as exc:
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if url:
            error = error.replace(url, redact_url(url))
        log.warning("webhook %s failed: %s", target, error)
        return Delivery(channel="webhook", target=target, ok=False, duration_ms=_ms(started), error=error)
    ok = 200 <= response.status_code < 300
    error = None if ok else f"HTTP {response.status_code} {response.reason_phrase}".strip()
    log.info("webhook %s answered HTTP %s", target, response.status_code)
    return Delivery(channel="webhook", target=target, ok=ok, duration_ms=_ms(started), error=error, status_code=response.status_code)


def send_notice(
    channels: Iterable[EmailChannel | WebhookChannel],
    *,
    context: Mapping[str, Any],
    message: str | None = None,
    dry_run: bool = False,
) -> list[Delivery]:
    """Render and deliver one notice to every channel; one Delivery per channel, in order.

    Every template is rendered before anything is sent (a dry run renders them too), so a template that
    fails (TemplateRenderError naming the field: ``message``, ``channels[1].subject``) sends nothing.
    """
    channels = tuple(channels)
    text = render_template(message, context, field="message") if message else default_message(context)
    ctx = {**context, "message": text}
    rendered: list[tuple[EmailChannel | WebhookChannel, dict[str, Any]]] = []
    for index, channel in enumerate(channels):
        where = f"channels[{index}]"
        if isinstance(channel, EmailChannel):
            subject = (render_template(channel.subject, ctx, field=f"{where}.subject") if channel.subject
                       else default_subject(ctx))
            body = render_template(channel.body, ctx, field=f"{where}.body") if channel.body else text
            rendered.append((channel, {"subject": subject, "body": body}))
        else:
            payload = (render_templates(channel.payload, ctx, field=f"{where}.payload") if channel.payload
                       else default_payload(ctx, text))
            rendered.append((channel, {"payload": payload}))
    deliveries: list[Delivery] = []
    for channel, parts in rendered:
        if isinstance(channel, EmailChannel):
            deliveries.append(send_email(channel, **parts, dry_run=dry_run))
        else:
            deliveries.append(post_webhook(channel, **parts, dry_run=dry_run))
    return deliveries


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)

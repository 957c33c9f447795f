"""Where notices go: e-mail through an SMTP connection, or a webhook."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from disaster_recovery.plans.language.base import PlanModel, raise_problems
from disaster_recovery.plans.language.checks import http_target_problems
from disaster_recovery.plans.language.enums import NotificationEvent
from disaster_recovery.plans.language.names import ConnId, EmailAddress
from disaster_recovery.plans.rules.secret_keys import find_secret_keys, secret_key_message
from disaster_recovery.plans.rules.templates import template_problem, template_strings


class EmailChannel(PlanModel):
    """Mail through Airflow's SMTP provider; ``subject``/``body`` are Jinja templates."""

    kind: Literal["email"]
    smtp_conn_id: ConnId = "smtp_default"
    to: tuple[EmailAddress, ...] = Field(min_length=1)
    subject: str | None = Field(None, description="template; default: a subject naming plan and status")
    body: str | None = Field(None, description="template; default: a summary of the execution")

    @model_validator(mode="after")
    def _templates_parse(self) -> EmailChannel:
        raise_problems(type(self).__name__, [
            ((key,), problem, None)
            for key in ("subject", "body")
            if getattr(self, key) and (problem := template_problem(getattr(self, key)))
        ])
        return self


class WebhookChannel(PlanModel):
    """A JSON request to a webhook; string values of ``payload`` are Jinja templates."""

    kind: Literal["webhook"]
    http_conn_id: ConnId | None = Field(None, description="Airflow HTTP connection (base URL, auth)")
    url: str | None = Field(None, description="full URL when no connection is needed")
    endpoint: str = Field("", description="path appended to the connection's base URL")
    method: Literal["POST", "PUT"] = "POST"
    payload: dict[str, Any] | None = Field(None, description="JSON body template; default: a summary of the execution")

    @model_validator(mode="after")
    def _one_target(self) -> WebhookChannel:
        problems: list[Any] = []
        problems += http_target_problems(url=self.url, http_conn_id=self.http_conn_id, endpoint=self.endpoint)
        for path in find_secret_keys(self.payload or {}):
            problems.append((("payload", *path), secret_key_message(str(path[-1]), ["http_conn_id"]), None))
        for path, text in template_strings(self.payload or {}, ("payload",)):
            if problem := template_problem(text):
                problems.append((path, problem, None))
        raise_problems(type(self).__name__, problems)
        return self


Channel = Annotated[EmailChannel | WebhookChannel, Field(discriminator="kind")]


class PlanNotifications(PlanModel):
    """Plan-wide notices about an execution, and the default channels of notification steps."""

    channels: tuple[Channel, ...] = ()
    events: tuple[NotificationEvent, ...] = (
        NotificationEvent.COMPLETED,
        NotificationEvent.FAILED,
        NotificationEvent.ROLLED_BACK,
    )

"""The summary email (SPEC §6): render, build MIME, look the user up, send through SES.

:func:`render_summary_email` is pure (usable without AWS); :func:`send_summary_email` is the
coroutine the ``send-user-email`` Lambda runs for one ``Transactions Summarized`` event.
"""

from stori_pipeline.email.errors import (
    EmailRejectedError,
    InvalidEmailError,
    InvalidSummaryEventError,
    RecipientError,
    UnknownAccountError,
)
from stori_pipeline.email.mime import build_mime, parse_sender
from stori_pipeline.email.recipients import lookup_user, normalize_email
from stori_pipeline.email.render import (
    InlineImage,
    MonthRow,
    Presentation,
    RenderedEmail,
    TemplateProblem,
    TemplateProblemReporter,
    User,
    format_money,
    html_with_embedded_images,
    packaged_template,
    render_summary_email,
)
from stori_pipeline.email.sandbox import DEFAULT_BUDGET, RenderBudget, UnusableTemplateError
from stori_pipeline.email.sender import (
    SentEmail,
    SummaryEvent,
    parse_summary_detail,
    send_summary_email,
)
from stori_pipeline.email.template_store import TEMPLATE_CACHE, TemplateCache, fetch_template

__all__ = [
    "DEFAULT_BUDGET",
    "TEMPLATE_CACHE",
    "EmailRejectedError",
    "InlineImage",
    "InvalidEmailError",
    "InvalidSummaryEventError",
    "MonthRow",
    "Presentation",
    "RecipientError",
    "RenderBudget",
    "RenderedEmail",
    "SentEmail",
    "SummaryEvent",
    "TemplateCache",
    "TemplateProblem",
    "TemplateProblemReporter",
    "UnknownAccountError",
    "UnusableTemplateError",
    "User",
    "build_mime",
    "fetch_template",
    "format_money",
    "html_with_embedded_images",
    "lookup_user",
    "normalize_email",
    "packaged_template",
    "parse_sender",
    "parse_summary_detail",
    "render_summary_email",
    "send_summary_email",
]

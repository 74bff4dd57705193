"""Issue 11 §1: an operator template cannot stall, crash or corrupt the summary email.

Each case is rendered through render_summary_email, exactly as the email function does; the
packaged template must be sent instead, with the reason reported. Cheap cases run under the
production budget; the ones that must run until a budget is exhausted get a small one.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from stori_pipeline.email import (
    DEFAULT_BUDGET,
    RenderBudget,
    RenderedEmail,
    TemplateProblem,
    User,
    render_summary_email,
)
from stori_pipeline.summary import AccountSummary
from tests.spec_example import spec_example_json

SUBJECT = "Your Stori account summary"
LABEL = "s3://templates/email/summary.html.j2"
SMALL = RenderBudget(seconds=0.5, output_bytes=64 * 1024, memory_bytes=64 * 1024 * 1024)
# Fork, kill and reap on a loaded 2-core machine: generous, and still far below "minutes".
SLACK_SECONDS = 3.0
NESTED_PRINT = "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"
NESTED_SILENT = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
MONTH_ROWS = (r"July\s+2\s+MX\$60\.50\s+-MX\$10\.30", r"August\s+2\s+MX\$10\.00\s+-MX\$20\.46")


@pytest.fixture
def summary() -> AccountSummary:
    """SPEC §3's worked example."""
    return AccountSummary.from_json(spec_example_json())


USER = User("AccountId123", "ana@example.com", "Ana", locale="en-US")


def render(
    summary: AccountSummary, template: str, budget: RenderBudget = DEFAULT_BUDGET
) -> tuple[RenderedEmail, list[TemplateProblem], float]:
    """Render with ``template``; returns the email, the problems reported and the seconds."""
    problems: list[TemplateProblem] = []
    started = time.monotonic()
    rendered = render_summary_email(
        summary,
        USER,
        template,
        subject=SUBJECT,
        template_label=LABEL,
        on_template_problem=problems.append,
        budget=budget,
    )
    return rendered, problems, time.monotonic() - started


def assert_packaged_and_whole(rendered: RenderedEmail) -> None:
    """The packaged HTML was sent and both parts show every month row and the balance."""
    assert rendered.template_source == "packaged"
    assert "Month by month" in rendered.html
    assert "39.74" in rendered.html
    assert "39.74" in rendered.text
    for row in MONTH_ROWS:
        assert re.search(row, rendered.text), row


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ '%0999999999d'|format(1) }}", "out_of_memory"),
        ("{{ 'x'|center(999999999) }}", "out_of_memory"),
        ("{{ ((9**64)**64)**64 }}", "render_error"),
        ("{{ 'x'.ljust(10**9) }}", "out_of_memory"),  # made the CSS inliner abort (exit 134)
        ("{{ 'x'|indent(999999999, true) }}", "out_of_memory"),  # took 20 s and 3.8 GB
        ("{% for i in range(1000) %}{{ 'x' * 100000 }}{% endfor %}", "output_too_large"),
        ("{{ '%0999999999d'|format(months|length) }}", "out_of_memory"),  # at render time
    ],
)
def test_resource_bombs_fall_back_quickly_under_the_production_budget(
    summary: AccountSummary, template: str, reason: str
) -> None:
    """Huge single calls and a 100 MB output fail within the budget, with their reason."""
    rendered, problems, seconds = render(summary, template)
    assert_packaged_and_whole(rendered)
    assert [(p.source, p.reason) for p in problems] == [(LABEL, reason)]
    assert seconds < DEFAULT_BUDGET.seconds + SLACK_SECONDS
    assert len(rendered.html.encode()) < DEFAULT_BUDGET.output_bytes


def test_nested_loops_that_print_stop_at_the_output_budget(summary: AccountSummary) -> None:
    """10^10 iterations of 'x' stop once the output passes the budget."""
    rendered, problems, seconds = render(summary, NESTED_PRINT, SMALL)
    assert_packaged_and_whole(rendered)
    assert [p.reason for p in problems] == ["output_too_large"]
    assert seconds < SMALL.seconds + SLACK_SECONDS


def test_nested_loops_that_make_no_call_stop_at_the_deadline(summary: AccountSummary) -> None:
    """A loop nothing in the sandbox sees is killed at budget.seconds."""
    rendered, problems, seconds = render(summary, NESTED_SILENT, SMALL)
    assert_packaged_and_whole(rendered)
    assert [p.reason for p in problems] == ["timeout"]
    assert SMALL.seconds <= seconds < SMALL.seconds + SLACK_SECONDS


def test_loop_without_calls_under_the_production_deadline(summary: AccountSummary) -> None:
    """The production budget stops a call-free loop in about two seconds, not minutes."""
    deep = "{% for c in 'abcdefghij' %}" * 12 + "{% endfor %}" * 12  # 10^12 iterations
    rendered, problems, seconds = render(summary, deep)
    assert_packaged_and_whole(rendered)
    assert [p.reason for p in problems] == ["timeout"]
    assert DEFAULT_BUDGET.seconds <= seconds < DEFAULT_BUDGET.seconds + SLACK_SECONDS


@pytest.mark.parametrize(
    "template",
    [
        "{% set _ = months.append(1) %}<p>{{ balance }}</p>",  # made the text part raise
        "{% set _ = months.clear() %}<p>{{ balance }}</p>",  # sent a text part without months
        "{% set _ = months.pop() %}<p>{{ balance }}</p>",
        "{% set _ = months.reverse() %}<p>{{ balance }}</p>",
    ],
)
def test_template_cannot_change_what_the_text_part_shows(
    summary: AccountSummary, template: str
) -> None:
    """Mutating the context is refused; the text part still lists every month."""
    rendered, problems, _ = render(summary, template)
    assert_packaged_and_whole(rendered)
    assert [p.reason for p in problems] == ["security_error"]


def test_mutation_inside_the_child_never_reaches_the_parent(summary: AccountSummary) -> None:
    """Even through an object the sandbox lets the template change, the parts stay intact."""
    template = (
        "{% set ns = namespace(rows=months) %}{% for m in ns.rows %}<i>{{ m.label }}</i>"
        "{% endfor %}"
    )
    rendered, problems, _ = render(summary, template)
    assert problems == []
    assert rendered.template_source == LABEL
    assert "<i>July</i><i>August</i>" in rendered.html
    for row in MONTH_ROWS:
        assert re.search(row, rendered.text), row


def test_output_that_grows_past_the_budget_when_inlined_is_refused(
    summary: AccountSummary,
) -> None:
    """CSS inlining multiplies a rule by the elements it matches: the result is checked too."""
    rule = "p { margin: 0; padding: 0; color: #123456; font-family: Arial, sans-serif; }"
    template = f"<style>{rule}</style>" + "<p></p>" * 2000  # ~14 KB, ~170 KB once inlined
    rendered, problems, _ = render(summary, template, SMALL)
    assert len(template.encode()) < SMALL.output_bytes
    assert [p.reason for p in problems] == ["output_too_large"]
    assert_packaged_and_whole(rendered)


def test_output_just_under_the_budget_is_sent(summary: AccountSummary) -> None:
    """A template under every budget is used as written (the budget is not a cliff)."""
    template = "<p>{{ balance_value }}</p>" + "<!-- x -->" * 3000
    rendered, problems, _ = render(summary, template, SMALL)
    assert problems == []
    assert rendered.template_source == LABEL
    assert "<p>39.74</p>" in rendered.html


def test_a_good_template_costs_milliseconds(summary: AccountSummary) -> None:
    """Fork, render and inline in the child: a few ms of CPU, far below the budget.

    Measured as CPU time (own and children's), not wall time, so a loaded machine cannot fail it.
    """
    template = (
        "<p>{{ name }}: {{ balance_value }}</p>{% for m in months %}{{ m.label }}{% endfor %}"
    )
    render(summary, template)  # the first render of a source also compiles it in the parent
    before = os.times()
    rendered, problems, _ = render(summary, template)
    after = os.times()
    cpu = sum(b - a for a, b in zip(before[:4], after[:4], strict=True))  # user+sys, own+children
    assert problems == []
    assert "<p>Ana: 39.74</p>" in rendered.html
    assert cpu < DEFAULT_BUDGET.seconds / 10


def test_only_templates_that_rendered_within_budget_are_compiled_outside_the_child(
    summary: AccountSummary,
) -> None:
    """A bomb is never compiled in the parent; a good source is, and the cache stays small."""
    from stori_pipeline.email import render as render_module  # noqa: PLC0415

    bomb = "{{ 'x'|center(999999999) }}"  # runs at compile time (constant folding)
    render(summary, bomb)
    assert bomb not in render_module._VETTED
    sources = [f"<p>{n} {{{{ balance_value }}}}</p>" for n in range(6)]
    for source in sources:
        rendered, problems, _ = render(summary, source)
        assert problems == []
        assert rendered.template_source == LABEL
    assert list(render_module._VETTED) == sources[-4:]
    rendered, _, _ = render(summary, sources[-1])  # rendered again from the inherited compile
    assert "<p>5 39.74</p>" in rendered.html


def test_fallback_is_logged_with_its_reason(
    summary: AccountSummary, caplog: pytest.LogCaptureFixture
) -> None:
    """The error log names the template, the reason and the detail (what an operator reads)."""
    with caplog.at_level("ERROR", logger="stori_pipeline.email"):
        render(summary, "{{ 'x'.ljust(10**9) }}")
    (record,) = [r for r in caplog.records if r.name.startswith("stori_pipeline.email")]
    assert record.levelname == "ERROR"
    message = record.getMessage()
    assert LABEL in message
    assert "(out_of_memory)" in message
    assert "MemoryError" in message

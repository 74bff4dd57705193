"""The operator commands find what they need in the stack's Outputs (template.yaml)."""

from __future__ import annotations

from typing import Any

import pytest

from stori_pipeline.ops import deployment

# Output key -> (resource it must name, how: Ref or a GetAtt attribute).
NEEDED = {
    deployment.TRANSACTIONS_BUCKET: ("TransactionsBucket", "Ref"),
    deployment.TEMPLATES_BUCKET: ("TemplatesBucket", "Ref"),
    deployment.USERS_TABLE: ("UsersTable", "Ref"),
    deployment.IDEMPOTENCY_TABLE: ("IdempotencyTable", "Ref"),
    deployment.INGEST_FUNCTION: ("ProcessUserTransactionFunction", "Arn"),
    **{output: (output.removesuffix("Url"), "Ref") for output in deployment.DLQ_OUTPUTS},
}


@pytest.mark.parametrize("output", sorted(NEEDED))
def test_every_output_the_commands_read_exists(template: dict[str, Any], output: str) -> None:
    """Each output ops reads names the resource it is taken for (a queue's URL, a table...)."""
    resource, how = NEEDED[output]
    value = template["Outputs"][output]["Value"]
    if how == "Ref":
        assert value == {"Ref": resource}
    else:
        assert value == {"Fn::GetAtt": [resource, how]}


def test_the_dlqs_are_every_queue_of_the_stack(template: dict[str, Any]) -> None:
    """`status` reads every SQS queue the template declares, so no DLQ goes unseen."""
    queues = {n for n, r in template["Resources"].items() if r["Type"] == "AWS::SQS::Queue"}
    assert {o.removesuffix("Url") for o in deployment.DLQ_OUTPUTS} == queues

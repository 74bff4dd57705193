"""Print the CloudFormation that the SAM transform makes of a template, offline, as JSON.

Runs in the SAM CLI's environment (``.tools/sam/bin/python deploy/sam_transform.py``), never in
the project's: ``samtranslator`` comes with the SAM CLI and pins a boto3 the project cannot
share. ``sam validate`` does not print its translation, and the IAM test needs the expanded
policy templates, so this calls the same translator ``sam deploy`` relies on (the managed policy
names resolve from the translator's bundled map, so no AWS credentials are needed).

Usage: python deploy/sam_transform.py TEMPLATE [PARAMETERS_JSON]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}


class BundledPolicies:
    """The translator's ManagedPolicyLoader interface, answered from its bundled map."""

    def load(self) -> dict[str, str]:
        """Managed policy name -> ARN in the commercial partition."""
        return get_bundled_managed_policy_map("aws") or {}


def as_packaged(template: dict[str, Any]) -> dict[str, Any]:
    """Local code paths replaced by S3 URIs, as `sam package` (and `sam validate`) do."""
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(properties.get(key), str) and "://" not in properties[key]:
                properties[key] = f"s3://packaged-code/{properties[key].strip('/') or 'root'}"
    return template


def main() -> None:
    """Translate argv[1] with the parameters in argv[2] (JSON) and print the result."""
    # The translator asks boto for the region to build ARNs; any commercial region will do.
    os.environ.setdefault("AWS_DEFAULT_REGION", PSEUDO["AWS::Region"])
    template = as_packaged(yaml_parse(Path(sys.argv[1]).read_text(encoding="utf-8")))
    parameters = {**PSEUDO, **(json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})}
    json.dump(transform(template, parameters, BundledPolicies()), sys.stdout, indent=1)


if __name__ == "__main__":
    main()

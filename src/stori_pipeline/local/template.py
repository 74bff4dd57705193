"""Read ``template.yaml`` into the plan of a local stack — nothing is copied from it by hand.

The SAM template is the single source of truth: bucket and table names, key schemas, rule
patterns, function handlers, environment variables and retry settings all come from it. This
module parses the YAML (with CloudFormation's short tags), resolves the intrinsic functions the
template uses for names (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::If`` …) to
deterministic local names, and returns a frozen :class:`StackPlan`. It does no I/O beyond
reading the file, so the plan is unit-testable.

Both rule styles are understood: ``AWS::Events::Rule`` resources whose targets are the
functions, and a function's ``Events: {Type: EventBridgeRule | CloudWatchEvent}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from stori_pipeline import cfn
from stori_pipeline.errors import StoriPipelineError

__all__ = [
    "DEFAULT_MAX_RECEIVE_COUNT",
    "LOCAL_ACCOUNT_ID",
    "LOCAL_REGION",
    "BucketPlan",
    "FunctionPlan",
    "RulePlan",
    "StackPlan",
    "TablePlan",
    "TemplateError",
    "load_template",
    "parse_parameter_overrides",
    "plan_stack",
]

LOCAL_ACCOUNT_ID = "123456789012"  # moto's default account
LOCAL_REGION = "us-east-1"
# Lambda's asynchronous invocation default: 2 retries, so 3 attempts in all.
DEFAULT_MAX_RECEIVE_COUNT = 3
DEFAULT_TIMEOUT_SECONDS = 3  # Lambda's default function timeout

_FUNCTION_TYPES = {"AWS::Serverless::Function", "AWS::Lambda::Function"}
_RULE_EVENT_TYPES = {"EventBridgeRule", "CloudWatchEvent"}


class TemplateError(StoriPipelineError):
    """The template cannot be turned into a local stack (unknown reference, bad shape)."""


# --- YAML with CloudFormation short tags ------------------------------------------------------


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template (short tags included) into long-form JSON."""
    try:
        document = cfn.load_template(path)
    except (OSError, yaml.YAMLError, TypeError) as exc:
        raise TemplateError(f"cannot read template {path}: {exc}") from exc
    if not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    return document


# --- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BucketPlan:
    """An S3 bucket and whether it sends its events to EventBridge."""

    logical_id: str
    name: str
    eventbridge: bool


@dataclass(frozen=True, slots=True)
class TablePlan:
    """A DynamoDB table: the CreateTable arguments taken from the template, and its TTL."""

    logical_id: str
    name: str
    key_schema: tuple[dict[str, str], ...]
    attribute_definitions: tuple[dict[str, str], ...]
    global_secondary_indexes: tuple[dict[str, Any], ...] = ()
    ttl_attribute: str | None = None


@dataclass(frozen=True, slots=True)
class RulePlan:
    """An EventBridge rule with its resolved pattern, targeting one function's queue."""

    logical_id: str
    name: str
    event_bus: str
    pattern: dict[str, Any]
    function: str


@dataclass(frozen=True, slots=True)
class FunctionPlan:
    """A function: where its handler lives, its environment and its retry budget."""

    logical_id: str
    name: str
    handler: str
    code_dir: Path
    environment: dict[str, str]
    timeout_seconds: int
    max_receive_count: int

    @property
    def module(self) -> str:
        """The handler's module (``process_user_transaction`` of ``….handler``)."""
        return self.handler.rsplit(".", 1)[0]

    @property
    def attribute(self) -> str:
        """The handler's function name inside its module."""
        return self.handler.rsplit(".", 1)[1]


@dataclass(frozen=True, slots=True)
class StateMachinePlan:
    """A Step Functions state machine: its definition file and resolved substitutions.

    ``queues`` are the SQS queues its definition sends to (its dead-letter queue), which the
    local stack creates so that a ``sqs:sendMessage`` task can reach them.
    """

    logical_id: str
    name: str
    arn: str
    definition_path: Path
    substitutions: dict[str, str]
    queues: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StackPlan:
    """Everything the local stack creates, resolved to local names."""

    stack_name: str
    buckets: tuple[BucketPlan, ...]
    tables: tuple[TablePlan, ...]
    functions: tuple[FunctionPlan, ...]
    rules: tuple[RulePlan, ...]
    parameters: dict[str, str] = field(default_factory=dict)
    state_machines: tuple[StateMachinePlan, ...] = ()

    def bucket(self, logical_id: str) -> BucketPlan:
        """The bucket with this logical id."""
        return _by_id(self.buckets, logical_id)

    def table(self, logical_id: str) -> TablePlan:
        """The table with this logical id."""
        return _by_id(self.tables, logical_id)

    def function(self, logical_id: str) -> FunctionPlan:
        """The function with this logical id."""
        return _by_id(self.functions, logical_id)

    def function_named(self, env_var: str) -> FunctionPlan:
        """The (first) function whose environment has this variable, e.g. ``USERS_TABLE``."""
        for function in self.functions:
            if env_var in function.environment:
                return function
        raise TemplateError(f"no function has the environment variable {env_var}")


_Item = TypeVar("_Item", BucketPlan, TablePlan, FunctionPlan)


def _by_id(items: tuple[_Item, ...], logical_id: str) -> _Item:
    for item in items:
        if item.logical_id == logical_id:
            return item
    raise TemplateError(f"the template has no {logical_id}")


# --- resolving intrinsic functions ------------------------------------------------------------

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
_NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Events::Rule": "Name",
    "AWS::Serverless::SimpleTable": "TableName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
}
_STATE_MACHINE_TYPES = {"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"}
_STATE_MACHINE_ARN = "arn:aws:states:{region}:{account}:stateMachine:{name}"
_ARN_SERVICES = {
    "AWS::S3::Bucket": "arn:aws:s3:::{name}",
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{region}:{account}:table/{name}",
    "AWS::SQS::Queue": "arn:aws:sqs:{region}:{account}:{name}",
    "AWS::Serverless::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "AWS::Lambda::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "AWS::Events::Rule": "arn:aws:events:{region}:{account}:rule/{name}",
}


class _Resolver:
    """Resolves intrinsic functions against local names, deterministically."""

    def __init__(
        self, template: Mapping[str, Any], stack_name: str, parameters: Mapping[str, str]
    ) -> None:
        self.resources: dict[str, Any] = dict(template["Resources"])
        self.conditions: dict[str, Any] = dict(template.get("Conditions") or {})
        self.stack_name = stack_name
        self.parameters = dict(parameters)
        self.pseudo = {
            "AWS::StackName": stack_name,
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": (
                f"arn:aws:cloudformation:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:stack/{stack_name}/local"
            ),
            "AWS::NoValue": None,
        }
        self._naming: set[str] = set()

    def type_of(self, logical_id: str) -> str:
        return str(self.resources[logical_id].get("Type", ""))

    def physical_name(self, logical_id: str) -> str:
        """The template's explicit name when it gives one, else ``<stack>-<logicalid>``."""
        if logical_id not in self.resources:
            raise TemplateError(f"reference to unknown resource {logical_id!r}")
        if logical_id in self._naming:
            raise TemplateError(f"the name of {logical_id} refers to itself")
        resource_type = self.type_of(logical_id)
        properties = self.resources[logical_id].get("Properties") or {}
        explicit = properties.get(_NAME_PROPERTIES.get(resource_type, ""))
        if explicit is not None:
            self._naming.add(logical_id)
            try:
                name = str(self.resolve(explicit))
            finally:
                self._naming.discard(logical_id)
        else:
            name = f"{self.stack_name}-{logical_id.lower()}"
        # S3 bucket names are lower case; moto enforces it like AWS.
        return name.lower() if resource_type == "AWS::S3::Bucket" else name

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name not in self.resources:
            raise TemplateError(f"!Ref to unknown name {name!r}")
        if self.type_of(name) == "AWS::SQS::Queue":
            return f"http://sqs.local/{LOCAL_ACCOUNT_ID}/{self.physical_name(name)}"
        if self.type_of(name) in _STATE_MACHINE_TYPES:  # Ref of a state machine is its ARN
            return _STATE_MACHINE_ARN.format(
                region=LOCAL_REGION, account=LOCAL_ACCOUNT_ID, name=self.physical_name(name)
            )
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.resources:
            raise TemplateError(f"!GetAtt of unknown resource {logical_id!r}")
        name = self.physical_name(logical_id)
        resource_type = self.type_of(logical_id)
        if attribute == "Arn" and resource_type in _ARN_SERVICES:
            return _ARN_SERVICES[resource_type].format(
                name=name, region=LOCAL_REGION, account=LOCAL_ACCOUNT_ID
            )
        if attribute in {"QueueName", "Name"}:
            return name
        if attribute == "QueueUrl":
            return f"http://sqs.local/{LOCAL_ACCOUNT_ID}/{name}"
        return f"{name}.{attribute}"

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            raise TemplateError(f"unknown condition {name!r}")
        return bool(self.resolve(self.conditions[name]))

    def sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {k: self.resolve(v) for k, v in argument[1].items()}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, str(text)).replace("${!", "${")

    def resolve(self, value: Any) -> Any:  # noqa: C901, PLR0911, PLR0912 - one branch per intrinsic
        """Resolve every intrinsic function inside ``value``."""
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                parts = argument.split(".", 1) if isinstance(argument, str) else argument
                return self.get_att(*[str(self.resolve(p)) for p in parts])
            if key == "Fn::Sub":
                return self.sub(argument)
            if key == "Fn::Join":
                separator, items = argument
                return str(separator).join(str(i) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in argument)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(argument[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in argument)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in argument)
            if key == "Condition":
                return self.condition(argument)
            if key in {"Fn::ImportValue", "Fn::FindInMap", "Fn::GetAZs", "Fn::Base64"}:
                raise TemplateError(f"{key} is not supported by the local stack")
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not None}


# --- building the plan -----------------------------------------------------------------------


def _parameters(template: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, declaration in (template.get("Parameters") or {}).items():
        if name in overrides:
            values[name] = overrides[name]
        elif isinstance(declaration, dict) and "Default" in declaration:
            values[name] = str(declaration["Default"])
    missing = [n for n in (template.get("Parameters") or {}) if n not in values]
    if missing:
        raise TemplateError(f"parameters without a default need a local value: {missing}")
    return values


def parse_parameter_overrides(items: Sequence[str], template: Mapping[str, Any]) -> dict[str, str]:
    """``Key=Value`` items, as ``sam deploy --parameter-overrides`` takes them, checked.

    Both of SAM's spellings are accepted: ``Key=Value`` and
    ``ParameterKey=Key,ParameterValue=Value``. Each key must be one of the template's
    ``Parameters``, and each value must satisfy that parameter's ``AllowedValues``,
    ``AllowedPattern`` and, for a ``Number``, ``MinValue`` / ``MaxValue`` — as CloudFormation
    would refuse the deployment.

    Raises:
        TemplateError: an item is not ``Key=Value``, names no parameter, or breaks a rule.
    """
    declared: Mapping[str, Any] = template.get("Parameters") or {}
    values: dict[str, str] = {}
    for item in items:
        spelled = re.fullmatch(r"ParameterKey=([^,]*),ParameterValue=(.*)", item, re.DOTALL)
        key, separator, value = (
            (spelled.group(1), "=", spelled.group(2)) if spelled else item.partition("=")
        )
        if not separator or not key:
            raise TemplateError(f"parameter override {item!r} is not Key=Value")
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise TemplateError(f"unknown parameter {key!r}: the template declares {known}")
        _check_parameter(key, value, declared[key] if isinstance(declared[key], dict) else {})
        values[key] = value
    return values


def _check_parameter(name: str, value: str, declaration: Mapping[str, Any]) -> None:
    allowed = declaration.get("AllowedValues")
    if allowed is not None and value not in [str(v) for v in allowed]:
        raise TemplateError(f"parameter {name}={value!r} is not one of {list(map(str, allowed))}")
    pattern = declaration.get("AllowedPattern")
    if pattern is not None and re.fullmatch(str(pattern), value) is None:
        reason = declaration.get("ConstraintDescription") or f"must match {pattern}"
        raise TemplateError(f"parameter {name}={value!r}: {reason}")
    if declaration.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise TemplateError(f"parameter {name}={value!r} is not a number") from None
        low, high = declaration.get("MinValue"), declaration.get("MaxValue")
        if (low is not None and number < float(low)) or (high is not None and number > float(high)):
            raise TemplateError(f"parameter {name}={value!r} is outside {low}..{high}")


def _target_function(resolver: _Resolver, arn: Any) -> str | None:
    """The logical id of the function a target's ``Arn`` points at, if any."""
    if isinstance(arn, dict):
        if "Fn::GetAtt" in arn:
            target = arn["Fn::GetAtt"]
            logical_id = target.split(".")[0] if isinstance(target, str) else target[0]
        elif "Ref" in arn:
            logical_id = arn["Ref"]
        else:
            return None
        if logical_id in resolver.resources and resolver.type_of(logical_id) in _FUNCTION_TYPES:
            return str(logical_id)
    return None


def _retry_attempts(resource: Mapping[str, Any], globals_function: Mapping[str, Any]) -> Any:
    config = (resource.get("Properties") or {}).get("EventInvokeConfig") or globals_function.get(
        "EventInvokeConfig"
    )
    return (config or {}).get("MaximumRetryAttempts")


def plan_stack(  # noqa: C901, PLR0912, PLR0915 - a straight walk over the template's resources
    template: Mapping[str, Any],
    *,
    template_dir: Path,
    stack_name: str = "stori-local",
    parameter_overrides: Mapping[str, str] | None = None,
) -> StackPlan:
    """Turn a parsed template into the resources of a local stack, names resolved."""
    parameters = _parameters(template, parameter_overrides or {})
    resolver = _Resolver(template, stack_name, parameters)
    resources: dict[str, Any] = resolver.resources
    globals_function: dict[str, Any] = dict((template.get("Globals") or {}).get("Function") or {})

    if any(
        isinstance(r, dict) and r.get("Condition") and not resolver.condition(r["Condition"])
        for r in resources.values()
    ):
        resources = {
            k: r
            for k, r in resources.items()
            if not (r.get("Condition") and not resolver.condition(r["Condition"]))
        }

    # Retry budgets declared as separate AWS::Lambda::EventInvokeConfig resources.
    invoke_configs: dict[str, Any] = {}
    for resource in resources.values():
        if resource.get("Type") == "AWS::Lambda::EventInvokeConfig":
            props = resource.get("Properties") or {}
            function = _target_function(resolver, props.get("FunctionName"))
            if function is not None:
                invoke_configs[function] = props.get("MaximumRetryAttempts")

    buckets: list[BucketPlan] = []
    tables: list[TablePlan] = []
    functions: list[FunctionPlan] = []
    rules: list[RulePlan] = []
    state_machines: list[StateMachinePlan] = []
    for logical_id, resource in resources.items():
        resource_type = resource.get("Type")
        props = resource.get("Properties") or {}
        if resource_type == "AWS::S3::Bucket":
            notification = resolver.resolve(props.get("NotificationConfiguration") or {})
            eventbridge = notification.get("EventBridgeConfiguration") or {}
            buckets.append(
                BucketPlan(
                    logical_id=logical_id,
                    name=resolver.physical_name(logical_id),
                    eventbridge=str(eventbridge.get("EventBridgeEnabled", False)).lower() == "true",
                )
            )
        elif resource_type == "AWS::DynamoDB::Table":
            resolved = resolver.resolve(props)
            ttl = resolved.get("TimeToLiveSpecification") or {}
            tables.append(
                TablePlan(
                    logical_id=logical_id,
                    name=resolver.physical_name(logical_id),
                    key_schema=tuple(resolved["KeySchema"]),
                    attribute_definitions=tuple(resolved["AttributeDefinitions"]),
                    global_secondary_indexes=tuple(
                        {
                            "IndexName": g["IndexName"],
                            "KeySchema": g["KeySchema"],
                            "Projection": g.get("Projection", {"ProjectionType": "ALL"}),
                        }
                        for g in resolved.get("GlobalSecondaryIndexes") or ()
                    ),
                    ttl_attribute=(
                        ttl.get("AttributeName")
                        if str(ttl.get("Enabled", False)).lower() == "true"
                        else None
                    ),
                )
            )
        elif resource_type in _FUNCTION_TYPES:
            merged_env = {
                **((globals_function.get("Environment") or {}).get("Variables") or {}),
                **((props.get("Environment") or {}).get("Variables") or {}),
            }
            environment = {k: str(v) for k, v in resolver.resolve(merged_env).items()}
            handler = props.get("Handler") or globals_function.get("Handler")
            code_uri = props.get("CodeUri") or globals_function.get("CodeUri") or "."
            if not isinstance(handler, str) or "." not in handler:
                raise TemplateError(f"{logical_id} has no Handler of the form module.function")
            attempts = invoke_configs.get(logical_id, _retry_attempts(resource, globals_function))
            functions.append(
                FunctionPlan(
                    logical_id=logical_id,
                    name=resolver.physical_name(logical_id),
                    handler=handler,
                    code_dir=(template_dir / str(resolver.resolve(code_uri))).resolve(),
                    environment=environment,
                    timeout_seconds=int(
                        resolver.resolve(
                            props.get("Timeout")
                            or globals_function.get("Timeout")
                            or DEFAULT_TIMEOUT_SECONDS
                        )
                    ),
                    max_receive_count=(
                        int(resolver.resolve(attempts)) + 1
                        if attempts is not None
                        else DEFAULT_MAX_RECEIVE_COUNT
                    ),
                )
            )
            for event_id, event in (props.get("Events") or {}).items():
                if event.get("Type") not in _RULE_EVENT_TYPES:
                    continue
                event_props = event.get("Properties") or {}
                rules.append(
                    RulePlan(
                        logical_id=f"{logical_id}{event_id}",
                        name=str(
                            resolver.resolve(event_props["RuleName"])
                            if "RuleName" in event_props
                            else f"{stack_name}-{logical_id.lower()}-{event_id.lower()}"
                        ),
                        event_bus=str(resolver.resolve(event_props.get("EventBusName", "default"))),
                        pattern=resolver.resolve(event_props["Pattern"]),
                        function=logical_id,
                    )
                )
        elif resource_type in _STATE_MACHINE_TYPES:
            uri = props.get("DefinitionUri")
            if not isinstance(uri, str):
                raise TemplateError(f"{logical_id}: only a local DefinitionUri file is supported")
            substitutions = {
                k: str(v)
                for k, v in resolver.resolve(props.get("DefinitionSubstitutions") or {}).items()
            }
            name = resolver.physical_name(logical_id)
            state_machines.append(
                StateMachinePlan(
                    logical_id=logical_id,
                    name=name,
                    arn=str(resolver.ref(logical_id)),
                    definition_path=(template_dir / uri).resolve(),
                    substitutions=substitutions,
                    queues=tuple(
                        v.rsplit("/", 1)[1]
                        for v in substitutions.values()
                        if v.startswith("http://sqs.local/")
                    ),
                )
            )
        elif resource_type == "AWS::Events::Rule":
            targets = [
                function
                for t in props.get("Targets") or ()
                if (function := _target_function(resolver, t.get("Arn"))) is not None
            ]
            if str(resolver.resolve(props.get("State", "ENABLED"))) != "ENABLED":
                continue
            rules.extend(
                RulePlan(
                    logical_id=logical_id,
                    name=resolver.physical_name(logical_id),
                    event_bus=str(resolver.resolve(props.get("EventBusName", "default"))),
                    pattern=resolver.resolve(props["EventPattern"]),
                    function=function,
                )
                for function in targets
            )
    return StackPlan(
        stack_name=stack_name,
        buckets=tuple(buckets),
        tables=tuple(tables),
        functions=tuple(functions),
        rules=tuple(rules),
        parameters=parameters,
        state_machines=tuple(state_machines),
    )

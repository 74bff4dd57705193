"""Read ``template.yaml`` as CloudFormation does: short tags, and a small intrinsic resolver.

PyYAML's safe loader rejects CloudFormation's short-form tags (``!Ref``, ``!GetAtt``, ``!Sub``
…). :class:`CfnLoader` turns each into the long form CloudFormation itself uses
(``{"Ref": …}``, ``{"Fn::GetAtt": [resource, attribute]}``, ``{"Condition": …}``), so code
that reads the template sees one shape whichever form the author wrote. :func:`resolve` then
substitutes the references a caller knows (a bucket's concrete name, a function's ARN) — enough
to build resources from the template in a local emulator and to check rule patterns against
real events. It is a reader for this project's template, not a CloudFormation engine.

Needs PyYAML (the ``local`` extra); nothing that runs in Lambda imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from stori_pipeline.errors import StoriPipelineError

__all__ = ["CfnLoader", "Node", "UnresolvedReferenceError", "load_template", "resolve"]

# A template fragment: a mapping, list, string, number, bool or None, nested arbitrarily.
Node: TypeAlias = Any

# Short tags whose long form is "Fn::<Name>"; !Ref and !Condition have no "Fn::" prefix.
_FN_TAGS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "If",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
)


class UnresolvedReferenceError(StoriPipelineError):
    """A reference in the template names something the caller gave no value for."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(f"no value for {reference!r} in the template")


class CfnLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that understands CloudFormation's short-form intrinsic tags.

    Timestamps stay strings (``Version: 2012-10-17`` is text to CloudFormation, not a date).
    """


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Node:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise yaml.constructor.ConstructorError(
        None, None, f"unexpected node {node!r}", node.start_mark
    )


def _long_form(key: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Node]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Node]:
        return {key: _construct(loader, node)}

    return construct


def _get_att(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Node]:
    value = _construct(loader, node)
    if isinstance(value, str):
        # "Resource.Attribute": the attribute itself may contain dots (Endpoint.Address).
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


CfnLoader.add_constructor("!Ref", _long_form("Ref"))
CfnLoader.add_constructor("!Condition", _long_form("Condition"))
CfnLoader.add_constructor("!GetAtt", _get_att)
for _name in _FN_TAGS:
    CfnLoader.add_constructor(f"!{_name}", _long_form(f"Fn::{_name}"))

CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_template(source: str | Path) -> dict[str, Any]:
    """Parse a template (a path, or the YAML text itself) into long-form intrinsics."""
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    document = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    if not isinstance(document, dict):
        raise TypeError("a CloudFormation template is a mapping at the top level")
    return document


# `Ref: AWS::NoValue` removes the property (or list item) that holds it.
_NO_VALUE = object()

_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


def resolve(  # noqa: C901, PLR0911 - one branch per intrinsic reads best as one function
    node: Node,
    refs: Mapping[str, Node],
    attrs: Mapping[str, Node] | None = None,
    conditions: Mapping[str, bool] | None = None,
) -> Node:
    """Replace intrinsics in ``node`` by the values the caller knows.

    Args:
        node: Any part of a template loaded by :func:`load_template`.
        refs: Values of ``Ref``: parameters, pseudo parameters (``AWS::Region``) and resources.
        attrs: Values of ``Fn::GetAtt``, keyed ``"Resource.Attribute"``.
        conditions: Values of the template's conditions, for ``Fn::If``.

    ``Ref: AWS::NoValue`` removes the key or list item holding it, as CloudFormation does.
    Supports ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::Select``,
    ``Fn::Split`` and ``Fn::If``; raises :class:`UnresolvedReferenceError` for a name without
    a value and ``ValueError`` for any other intrinsic.
    """
    attrs = attrs or {}
    conditions = conditions or {}
    if isinstance(node, list):
        items = [resolve(item, refs, attrs, conditions) for item in node]
        return [item for item in items if item is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) != 1 or not next(iter(node)).startswith(("Ref", "Fn::")):
        values = {key: resolve(value, refs, attrs, conditions) for key, value in node.items()}
        return {key: value for key, value in values.items() if value is not _NO_VALUE}
    ((function, argument),) = node.items()
    if function == "Ref":
        return _NO_VALUE if argument == "AWS::NoValue" else _lookup(refs, argument)
    if function == "Fn::GetAtt":
        resource, attribute = argument
        return _lookup(attrs, f"{resource}.{attribute}")
    if function == "Fn::If":
        # Only the chosen branch is resolved: the other may name what the caller lacks.
        condition, when_true, when_false = argument
        branch = when_true if _lookup(conditions, condition) else when_false
        return resolve(branch, refs, attrs, conditions)
    args = resolve(argument, refs, attrs, conditions)
    if function == "Fn::Sub":
        text, local = (args, {}) if isinstance(args, str) else args
        names = {**refs, **attrs, **local}
        substituted = _SUB_VARIABLE.sub(lambda m: str(_lookup(names, m.group(1).strip())), text)
        return substituted.replace("${!", "${")  # "${!Literal}" is Sub's escape
    if function == "Fn::Join":
        separator, items = args
        return separator.join(str(item) for item in items)
    if function == "Fn::Select":
        index, items = args
        return items[int(index)]
    if function == "Fn::Split":
        separator, text = args
        return text.split(separator)
    raise ValueError(f"{function} is not supported by this resolver")


def _lookup(values: Mapping[str, Node], name: str) -> Node:
    try:
        return values[name]
    except KeyError:
        raise UnresolvedReferenceError(name) from None

"""The CloudFormation YAML reader: short tags become long-form intrinsics; resolve fills them."""

from __future__ import annotations

import pytest

from stori_pipeline.cfn import UnresolvedReferenceError, load_template, resolve

TEXT = """
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Rule:
    Properties:
      Version: 2012-10-17
      Name: !Sub ${AWS::StackName}-rule
      Bucket: !Ref TransactionsBucket
      Arn: !GetAtt Function.Arn
      Address: !GetAtt Db.Endpoint.Address
      Pick: !Select [1, !Split ["@", !Ref SenderEmail]]
      Maybe: !If [IsLocal, !Ref LocalEndpointUrl, !Ref AWS::NoValue]
      Joined: !Join ["-", [a, !Ref Stage]]
      Cond: !Condition IsLocal
      Escaped: !Sub "${!Literal}/${Stage}"
      WithMap: !Sub
        - "${Prefix}/${Stage}"
        - Prefix: !Ref Stage
"""


def _props() -> dict[str, object]:
    props: dict[str, object] = load_template(TEXT)["Resources"]["Rule"]["Properties"]
    return props


def test_short_tags_become_long_form_intrinsics() -> None:
    """!Ref, !GetAtt, !Sub, !Select, !Split, !If and !Condition load in the long form."""
    props = _props()
    assert props["Bucket"] == {"Ref": "TransactionsBucket"}
    assert props["Arn"] == {"Fn::GetAtt": ["Function", "Arn"]}
    assert props["Name"] == {"Fn::Sub": "${AWS::StackName}-rule"}
    assert props["Pick"] == {"Fn::Select": [1, {"Fn::Split": ["@", {"Ref": "SenderEmail"}]}]}
    assert props["Cond"] == {"Condition": "IsLocal"}


def test_get_att_splits_at_the_first_dot_only() -> None:
    """`!GetAtt Db.Endpoint.Address` is resource Db, attribute Endpoint.Address."""
    assert _props()["Address"] == {"Fn::GetAtt": ["Db", "Endpoint.Address"]}


def test_dates_stay_text() -> None:
    """An unquoted policy Version stays the string CloudFormation sees, not a date."""
    assert _props()["Version"] == "2012-10-17"


def test_resolve_fills_known_references() -> None:
    """Ref, GetAtt, Sub (both forms, with the ${!} escape), Join, Select and Split resolve."""
    refs = {"AWS::StackName": "st", "TransactionsBucket": "b", "SenderEmail": "a@ex.com",
            "Stage": "dev"}  # fmt: skip
    attrs = {"Function.Arn": "arn:f", "Db.Endpoint.Address": "db.local"}
    resolved = resolve(_props(), refs, attrs, {"IsLocal": False})
    assert resolved["Name"] == "st-rule"
    assert resolved["Bucket"] == "b"
    assert resolved["Arn"] == "arn:f"
    assert resolved["Address"] == "db.local"
    assert resolved["Pick"] == "ex.com"
    assert resolved["Joined"] == "a-dev"
    assert resolved["Escaped"] == "${Literal}/dev"
    assert resolved["WithMap"] == "dev/dev"


def test_if_resolves_only_the_chosen_branch() -> None:
    """Fn::If needs no value for the branch it does not take."""
    chosen = resolve(_props()["Maybe"], {"LocalEndpointUrl": "http://x"}, {}, {"IsLocal": True})
    assert chosen == "http://x"


def test_no_value_removes_the_property() -> None:
    """`!If [cond, x, !Ref AWS::NoValue]` with cond false leaves no key at all."""
    resolved = resolve(
        {"Variables": {"A": "1", "B": _props()["Maybe"]}}, {}, {}, {"IsLocal": False}
    )
    assert resolved == {"Variables": {"A": "1"}}


def test_an_unknown_reference_is_reported_by_name() -> None:
    """A Ref without a value raises UnresolvedReferenceError naming it."""
    with pytest.raises(UnresolvedReferenceError) as caught:
        resolve({"Ref": "Nope"}, {})
    assert caught.value.reference == "Nope"


def test_a_template_must_be_a_mapping() -> None:
    """A document that is not a mapping is not a template."""
    with pytest.raises(TypeError):
        load_template("- a\n- b\n")

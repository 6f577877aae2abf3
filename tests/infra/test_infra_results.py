"""The results distribution and least privilege on the data bucket, read off the synthesized template."""

from __future__ import annotations

import json

from cloud.stacks.results import EDGE_FUNCTION
from spaceport.cloud.links import RESULT_FOLDERS, SECRET_OBJECT
from spaceport.cloud.settings import ENV


def _statements(doc: dict) -> list[dict]:
    return doc["PolicyDocument"]["Statement"] if "PolicyDocument" in doc else doc["Statement"]


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _object_suffix(resource) -> str | None:
    """``/jobs/*`` of ``{"Fn::Join": ["", [<bucket Arn>, "/jobs/*"]]}``; None for the bucket itself."""
    return resource["Fn::Join"][1][1] if isinstance(resource, dict) and "Fn::Join" in resource else None


def test_results_are_served_by_cloudfront_through_origin_access_control(synth):
    res = synth.template["Resources"]
    results = synth.stack.results
    (dist,) = synth.resources("AWS::CloudFront::Distribution").values()
    config = dist["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": [synth.logical_id(synth.stack.storage.data), "RegionalDomainName"]}
    oac = synth.logical_id(results.origin_access)
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac, "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}  # OAC, not a legacy identity
    assert res[oac]["Properties"]["OriginAccessControlConfig"] | {"Description": "", "Name": ""} == {
        "Description": "", "Name": "", "OriginAccessControlOriginType": "s3", "SigningBehavior": "always",
        "SigningProtocol": "sigv4"}
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https" and behavior["AllowedMethods"] == ["GET", "HEAD"]
    assert config.get("CacheBehaviors") is None  # one behaviour: every path goes through the token check
    check, types = synth.logical_id(results.check), synth.logical_id(results.types)
    assert behavior["FunctionAssociations"] == [
        {"EventType": "viewer-request", "FunctionARN": {"Fn::GetAtt": [check, "FunctionARN"]}},
        {"EventType": "viewer-response", "FunctionARN": {"Fn::GetAtt": [types, "FunctionARN"]}}]


def test_the_deployed_edge_functions_are_the_file_the_tests_run(synth):
    res = synth.template["Resources"]
    store = synth.logical_id(synth.stack.results.store)
    for function in (synth.stack.results.check, synth.stack.results.types):
        fn = res[synth.logical_id(function)]["Properties"]
        assert fn["FunctionCode"] == EDGE_FUNCTION.read_text()
        assert fn["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
        assert fn["FunctionConfig"]["KeyValueStoreAssociations"] == [
            {"KeyValueStoreARN": {"Fn::GetAtt": [store, "Arn"]}}]
    # The store is imported from the secret file, after the deploy-time resource wrote it.
    kvs = res[store]
    assert kvs["Properties"]["ImportSource"]["SourceType"] == "S3"
    assert _object_suffix(kvs["Properties"]["ImportSource"]["SourceArn"]) == "/" + SECRET_OBJECT
    secret = synth.logical_id(synth.stack.results.secret)
    assert secret in kvs["DependsOn"]
    # The secret is made in the account: the template passes the bucket, never a value.
    assert set(res[secret]["Properties"]) == {"ServiceToken", "Bucket"}


def test_bucket_policy_grants_cloudfront_only_the_result_folders(synth):
    data = synth.logical_id(synth.stack.storage.data)
    (policy,) = [p for p in synth.resources("AWS::S3::BucketPolicy").values()
                 if p["Properties"]["Bucket"] == {"Ref": data}]
    allows = [s for s in _statements(policy["Properties"]) if s["Effect"] == "Allow"]
    (grant,) = allows  # CloudFront's is the only Allow in the data bucket's policy
    assert grant["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert grant["Action"] == "s3:GetObject"
    assert sorted(_object_suffix(r) for r in grant["Resource"]) == sorted(f"/jobs/*/{f}/*" for f in RESULT_FOLDERS)
    source = grant["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Join"][1]
    assert {"Ref": synth.logical_id(synth.stack.results.distribution)} in source


def test_notify_signs_links_for_the_distribution(synth):
    res = synth.template["Resources"]
    env = res[synth.logical_id(synth.stack.functions.notify)]["Properties"]["Environment"]["Variables"]
    dist = synth.logical_id(synth.stack.results.distribution)
    assert env[ENV["results_domain"]] == {"Fn::GetAtt": [dist, "DomainName"]}
    assert synth.template["Outputs"]["ResultsDomain"]["Value"] == {"Fn::GetAtt": [dist, "DomainName"]}
    # Only notify (signs) and the deploy-time resource (writes) may touch the secret.
    readers = set()
    for policy in synth.resources("AWS::IAM::Policy").values():
        for st in _statements(policy["Properties"]):
            if any(_object_suffix(r) == "/" + SECRET_OBJECT for r in _listed(st["Resource"])):
                readers.add(policy["Properties"]["Roles"][0]["Ref"])
    roles = {synth.logical_id(fn.role) for fn in (synth.stack.functions.notify, synth.stack.results.secret_function)}
    assert readers == roles


def test_no_role_may_list_the_whole_bucket(synth):
    """Every s3:ListBucket is scoped by s3:prefix and no Allow names s3:List*. CodeBuild has no grant
    on the data bucket at all: it reads the deployed source from the CDK bootstrap bucket, where its
    listing is fenced by a Deny outside that asset's key (tests/infra/test_infra_images.py)."""
    data_arn = {"Fn::GetAtt": [synth.logical_id(synth.stack.storage.data), "Arn"]}
    build_role = synth.logical_id(synth.stack.images.project.role)
    checked = 0
    for policy in synth.resources("AWS::IAM::Policy").values():
        role = policy["Properties"]["Roles"][0]["Ref"]
        statements = _statements(policy["Properties"])
        for st in statements:
            actions = _listed(st["Action"])
            if st["Effect"] != "Allow" or data_arn not in _listed(st["Resource"]):
                continue
            listing = [a for a in actions if a.startswith("s3:List")]
            if not listing:
                continue
            checked += 1
            assert role != build_role
            assert listing == ["s3:ListBucket"]
            (prefixes,) = st["Condition"]["StringLike"].values()
            assert prefixes and all(p.endswith("/*") and p != "/*" for p in prefixes), st
    assert checked == 2  # SageMaker (jobs/, scratch/), start_job (uploads/)


def test_no_function_gets_wildcard_object_actions(synth):
    roles = {synth.logical_id(fn.role) for fn in (synth.stack.functions.start_job, synth.stack.functions.record,
                                                  synth.stack.functions.quality_gate, synth.stack.functions.notify,
                                                  synth.stack.results.secret_function)}
    roles.add(synth.logical_id(synth.stack.sagemaker.role))
    for policy in synth.resources("AWS::IAM::Policy").values():
        if policy["Properties"]["Roles"][0]["Ref"] not in roles:
            continue
        for st in _statements(policy["Properties"]):
            s3_actions = [a for a in _listed(st["Action"]) if a.startswith("s3:")]
            assert not [a for a in s3_actions if "*" in a], st


def test_alarm_key_trusts_cloudwatch_of_this_account_only(synth):
    key = synth.template["Resources"][synth.logical_id(synth.stack.monitoring.topic.master_key)]
    (st,) = [s for s in _statements(key["Properties"]["KeyPolicy"])
             if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert sorted(_listed(st["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert st["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert json.dumps(st).count("cloudwatch") == 1

#!/usr/bin/env python3
"""Checks what cfn-lint cannot see in Herald's SAM template.

    .venv/bin/python scripts/check_template.py deploy/template.yaml
    .venv/bin/python scripts/check_template.py --self-test deploy/template.yaml

cfn-lint checks that the template is valid CloudFormation; this checks that it
keeps Herald's promises for a deployed fleet (the README's "Deployment"):

- the consumer's role grants what its code calls, on the resources it calls
  them on, and nothing else: the event source mapping's and the dead-letter
  move's SQS calls (src/consumer/dead_letter.rs), GetSecretValue on exactly
  the provider secrets its environment names; no wildcard action and no
  Resource "*" (beyond STAR_RESOURCE_OK) in any IAM policy of the template;
- both topics are KMS-encrypted, every queue and table encrypted at rest;
- no function's Environment holds a secret: no `{{resolve:secretsmanager:…}}`
  or `{{resolve:ssm-secure:…}}`, no literal or parameter value in a variable
  named like a secret (a `*_SECRET_ID` / `*_SECRET_ARN` variable names the
  secret instead, and the consumer reads it at start-up);
- the consumer's log group exists with RetentionInDays, and is the one the
  function logs to;
- the dead-letter queue (and only it) has a RedriveAllowPolicy naming the
  source queue, whose RedrivePolicy targets it;
- the SQS event source's ScalingConfig.MaximumConcurrency is a parameter
  within Lambda's 2-1000.

The template is evaluated (conditions, !If, !Sub, !Ref, !GetAtt, …) for every
parameter set in SCENARIOS, so a grant that only exists, or only goes wrong,
with FIFO, with one provider or with a customer-managed key is seen too.
When the consumer's code starts calling something new, add it to the
expectations in consumer_expectations() along with the grant.

--self-test applies known-bad mutations to the template in memory and fails
unless each one is reported (and the template as it is passes).

Needs PyYAML (cfn-lint depends on it, so .venv/bin/python has it).
"""

import copy
import itertools
import json
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    print("check_template: PyYAML is missing; run it with .venv/bin/python (cfn-lint installs PyYAML)")
    sys.exit(2)

# --- the template's YAML, with CloudFormation's short-form tags --------------


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns `!Ref x` into {"Ref": x}, `!GetAtt a.b` into
    {"Fn::GetAtt": [a, b]} and any other `!Name v` into {"Fn::Name": v}."""


def _construct_short_form(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {"Fn::" + suffix: value}


CfnLoader.add_multi_constructor("!", _construct_short_form)


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=CfnLoader)  # noqa: S506 (a SafeLoader subclass)


# --- what is checked against -------------------------------------------------

REGION, ACCOUNT, PARTITION, STACK = "eu-west-1", "123456789012", "aws", "herald-check"
CMK_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"

# Parameter sets the template is evaluated with (the rest keep their defaults).
FIFO = {"FifoTopic": "true"}
WHATSAPP = {"WhatsAppPhoneNumberId": "100000000000001", "WhatsAppTokenSecretName": "herald/whatsapp-token"}
INFOBIP = {
    "InfobipBaseUrl": "https://xxxxx.api.infobip.com",
    "InfobipApiKeySecretName": "herald/infobip-api-key",
    "InfobipSender": "Herald",
    "PublicBaseUrl": "https://herald.example.com",
}
CMK = {"TopicKmsKeyId": CMK_ARN}
TENANTS = {
    "TenantsLayerArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:herald-tenants:3",
    "TenantSecretPrefix": "herald/tenants/",
}
# The variables the consumer reads a provider secret's id from (the Rust side
# uses exactly these names): set when that provider is configured, else not.
PROVIDER_SECRET_VARS = {"whatsapp": "WHATSAPP_ACCESS_TOKEN_SECRET_ID", "infobip": "INFOBIP_API_KEY_SECRET_ID"}


def scenarios():
    for fifo, providers, key in itertools.product(
        (False, True), ((), ("whatsapp",), ("infobip",), ("whatsapp", "infobip")), ("aws/sns", "cmk")
    ):
        params = {}
        if fifo:
            params.update(FIFO)
        if "whatsapp" in providers:
            params.update(WHATSAPP)
        if "infobip" in providers:
            params.update(INFOBIP)
        if key == "cmk":
            params.update(CMK)
        name = "{} {} {}".format("fifo" if fifo else "standard", "+".join(providers) or "no-providers", key)
        yield name, params, set(providers)
    # TENANTS_FILE from a layer, tokens under a secret-name prefix.
    for fifo in (False, True):
        params = {**WHATSAPP, **TENANTS, **(FIFO if fifo else {})}
        yield "{} whatsapp+tenants".format("fifo" if fifo else "standard"), params, {"whatsapp"}


# Resource "*" is accepted only for actions that have no resource-level
# permissions (a narrower Resource would match nothing). None is used today.
STAR_RESOURCE_OK = {
    # CloudWatch custom metrics: IAM knows no metric resources; narrow it with
    # the cloudwatch:namespace condition instead.
    "cloudwatch:PutMetricData",
    # X-Ray (Tracing: Active) has no resource-level permissions.
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}

# Item-level table actions a consumer may hold on the template's tables.
DYNAMODB_ITEM_ACTIONS = {
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
}

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|KEY")
SECRET_ID_SUFFIXES = ("_SECRET_ID", "_SECRET_ARN", "_SECRET_PREFIX")
# Named like a secret, but not one.
NOT_SECRET_VARS = {"ADMIN_KEY_IDS"}
SECRET_DYNAMIC_REFS = ("resolve:secretsmanager", "resolve:ssm-secure")

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
INTRINSICS = {
    "Ref", "Fn::GetAtt", "Fn::Sub", "Fn::If", "Fn::Join", "Fn::Select", "Fn::Split", "Fn::FindInMap",
    "Fn::Base64", "Fn::ImportValue", "Fn::GetAZs", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition",
}


class EvalError(Exception):
    pass


NOVALUE = object()


def is_intrinsic(v):
    return isinstance(v, dict) and len(v) == 1 and next(iter(v)) in INTRINSICS


def text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return v
    raise EvalError(f"cannot use {v!r} as a string")


def as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def as_json(v):
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return {}
    return v if isinstance(v, dict) else {}


# --- evaluating the template under one parameter set ------------------------


class Rendered:
    """The template evaluated with given parameter values."""

    def __init__(self, template, overrides):
        self.t = template
        self.resources_raw = template.get("Resources") or {}
        params = template.get("Parameters") or {}
        self.params = {name: (spec or {}).get("Default") for name, spec in params.items()}
        self.params.update(overrides)
        self._conditions = {}
        self._names = {}
        self.resources = {}
        for rid, res in self.resources_raw.items():
            cond = res.get("Condition")
            if cond and not self.condition(cond):
                continue
            self.resources[rid] = {"Type": res.get("Type"), "Properties": None}
        for rid in self.resources:
            self.resources[rid]["Properties"] = self.render(self.resources_raw[rid].get("Properties") or {})

    # conditions
    def condition(self, name):
        if name not in self._conditions:
            conds = self.t.get("Conditions") or {}
            if name not in conds:
                raise EvalError(f"unknown condition {name}")
            self._conditions[name] = bool(self.cond_value(conds[name]))
        return self._conditions[name]

    def cond_value(self, v):
        if isinstance(v, dict) and len(v) == 1:
            (k, arg), = v.items()
            if k == "Fn::Equals":
                a, b = (self.render(x) for x in arg)
                return text(a) == text(b)
            if k == "Fn::Not":
                return not self.cond_value(arg[0])
            if k == "Fn::And":
                return all(self.cond_value(x) for x in arg)
            if k == "Fn::Or":
                return any(self.cond_value(x) for x in arg)
            if k == "Condition":
                return self.condition(arg)
        raise EvalError(f"cannot evaluate condition {v!r}")

    # names and attributes of resources
    def _prop(self, rid, key):
        return self.render((self.resources_raw[rid].get("Properties") or {}).get(key))

    def name_of(self, rid):
        if rid in self._names:
            return self._names[rid]
        if rid not in self.resources_raw:
            raise EvalError(f"reference to unknown resource {rid}")
        typ = self.resources_raw[rid].get("Type")
        key = {
            "AWS::SQS::Queue": "QueueName", "AWS::SNS::Topic": "TopicName", "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::DynamoDB::Table": "TableName", "AWS::IAM::Role": "RoleName",
            "AWS::Serverless::Function": "FunctionName", "AWS::Lambda::Function": "FunctionName",
            "AWS::S3::Bucket": "BucketName",
        }.get(typ)
        name = self._prop(rid, key) if key else None
        if name is None or name is NOVALUE:
            name = f"{STACK}-{rid}-GENERATED"
            if typ == "AWS::SQS::Queue" and text(self._prop(rid, "FifoQueue") or False) == "true":
                name += ".fifo"
        self._names[rid] = text(name)
        return self._names[rid]

    def ref(self, name):
        pseudo = {
            "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": PARTITION,
            "AWS::StackName": STACK, "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/id",
        }
        if name == "AWS::NoValue":
            return NOVALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        if name not in self.resources_raw:
            raise EvalError(f"Ref to unknown {name}")
        typ = self.resources_raw[name].get("Type")
        if typ == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.name_of(name)}"
        if typ == "AWS::SNS::Topic":
            return self.getatt(name, "TopicArn")
        if typ == "AWS::IAM::ManagedPolicy":
            return f"arn:{PARTITION}:iam::{ACCOUNT}:policy/{name}"
        if typ in ("AWS::Logs::LogGroup", "AWS::DynamoDB::Table", "AWS::IAM::Role", "AWS::S3::Bucket") + FUNCTION_TYPES:
            return self.name_of(name)
        return f"<{name}>"

    def getatt(self, rid, attr):
        if rid not in self.resources_raw:
            raise EvalError(f"GetAtt of unknown resource {rid}")
        typ = self.resources_raw[rid].get("Type")
        arn = f"arn:{PARTITION}:{{}}:{REGION}:{ACCOUNT}:{{}}"
        if typ == "AWS::SQS::Queue":
            if attr == "Arn":
                return arn.format("sqs", self.name_of(rid))
            if attr == "QueueName":
                return self.name_of(rid)
            if attr == "QueueUrl":
                return self.ref(rid)
        if typ == "AWS::SNS::Topic" and attr in ("TopicArn", "Arn"):
            return arn.format("sns", self.name_of(rid))
        if typ == "AWS::SNS::Topic" and attr == "TopicName":
            return self.name_of(rid)
        if typ == "AWS::Logs::LogGroup" and attr == "Arn":
            return arn.format("logs", f"log-group:{self.name_of(rid)}:*")
        if typ == "AWS::DynamoDB::Table" and attr == "Arn":
            return arn.format("dynamodb", f"table/{self.name_of(rid)}")
        if typ == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:{PARTITION}:s3:::{self.name_of(rid)}"
        if typ == "AWS::IAM::Role" and attr == "Arn":
            return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{self.name_of(rid)}"
        if typ in FUNCTION_TYPES and attr == "Arn":
            return arn.format("lambda", f"function:{self.name_of(rid)}")
        return f"<{rid}.{attr}>"

    # intrinsic functions
    def sub(self, arg):
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1] if len(arg) > 1 else {})

        def one(m):
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                value = self.render(variables[name])
            elif "." in name and not name.startswith("AWS::"):
                value = self.getatt(*name.split(".", 1))
            else:
                value = self.ref(name)
            if value is NOVALUE:
                raise EvalError(f"${{{name}}} is AWS::NoValue in a !Sub")
            return text(value)

        return re.sub(r"\$\{([^}]+)\}", one, template)

    def render(self, v):
        if isinstance(v, list):
            return [r for r in (self.render(x) for x in v) if r is not NOVALUE]
        if not isinstance(v, dict):
            return v
        if not is_intrinsic(v):
            return {k: r for k, r in ((k, self.render(x)) for k, x in v.items()) if r is not NOVALUE}
        (k, arg), = v.items()
        if k == "Ref":
            return self.ref(arg)
        if k == "Fn::GetAtt":
            rid, attr = arg.split(".", 1) if isinstance(arg, str) else arg
            return self.getatt(rid, text(self.render(attr)))
        if k == "Fn::Sub":
            return self.sub(arg)
        if k == "Fn::If":
            return self.render(arg[1] if self.condition(arg[0]) else arg[2])
        if k == "Fn::Join":
            return text(arg[0]).join(text(x) for x in self.render(arg[1]))
        if k == "Fn::Select":
            return self.render(arg[1])[int(text(self.render(arg[0])))]
        if k == "Fn::Split":
            return text(self.render(arg[1])).split(text(arg[0]))
        if k == "Fn::FindInMap":
            mapping, top, second = (self.render(x) for x in arg[:3])
            try:
                return (self.t.get("Mappings") or {})[text(mapping)][text(top)][text(second)]
            except KeyError as e:
                raise EvalError(f"!FindInMap {mapping}/{top}/{second}: no {e}") from None
        if k in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"):
            return self.cond_value(v)
        if k == "Fn::Base64":
            return text(self.render(arg))
        if k == "Fn::ImportValue":
            return f"<import {text(self.render(arg))}>"
        if k == "Fn::GetAZs":
            return [f"{REGION}a", f"{REGION}b"]
        raise EvalError(f"cannot evaluate {k}")

    # conveniences
    def of_type(self, typ):
        return [rid for rid, res in self.resources.items() if res["Type"] == typ]

    def props(self, rid):
        return self.resources[rid]["Properties"]

    def queue_by_arn(self, arn):
        for qid in self.of_type("AWS::SQS::Queue"):
            if self.getatt(qid, "Arn") == arn:
                return qid
        return None


# --- the consumer ------------------------------------------------------------


def sqs_event_sources(t):
    """(function id, event source properties (raw), where) for every SQS trigger."""
    resources = t.get("Resources") or {}
    found = []
    for rid, res in resources.items():
        if res.get("Type") == "AWS::Serverless::Function":
            for ename, event in ((res.get("Properties") or {}).get("Events") or {}).items():
                if (event or {}).get("Type") == "SQS":
                    found.append((rid, event.get("Properties") or {}, f"{rid}.Events.{ename}"))
        if res.get("Type") == "AWS::Lambda::EventSourceMapping":
            props = res.get("Properties") or {}
            fn = props.get("FunctionName")
            fid = fn.get("Ref") if isinstance(fn, dict) else None
            if isinstance(fn, dict) and "Fn::GetAtt" in fn:
                fid = fn["Fn::GetAtt"][0]
            source = json.dumps(props.get("EventSourceArn"))
            if fid in resources and (":sqs:" in source or "Queue" in source):
                found.append((fid, props, rid))
    return found


def referenced_id(v):
    """The resource a {"Ref": x} or {"Fn::GetAtt": [x, "Arn"]} names."""
    if isinstance(v, dict):
        if "Ref" in v:
            return v["Ref"]
        if "Fn::GetAtt" in v:
            att = v["Fn::GetAtt"]
            return att.split(".")[0] if isinstance(att, str) else att[0]
    return None


def consumer_of(t):
    sources = sqs_event_sources(t)
    if not sources:
        return None
    fid, event, where = sources[0]
    queue = event.get("Queue", event.get("EventSourceArn"))
    return {"function": fid, "event": event, "where": where, "source_queue": referenced_id(queue)}


def function_env(t, fid):
    """Raw environment variables of a function, Globals first."""
    env = {}
    glob = ((t.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    env.update(glob.get("Variables") or {})
    props = ((t.get("Resources") or {}).get(fid) or {}).get("Properties") or {}
    env.update((props.get("Environment") or {}).get("Variables") or {})
    return env


def role_statements(t, r, role_id):
    """Rendered statements of every identity policy attached to role_id."""
    statements = []
    role = r.props(role_id)
    for policy in role.get("Policies") or []:
        for s in as_list((policy.get("PolicyDocument") or {}).get("Statement")):
            statements.append((f"{role_id}/{policy.get('PolicyName')}", s))
    for pid in r.of_type("AWS::IAM::Policy") + r.of_type("AWS::IAM::ManagedPolicy"):
        raw_roles = ((t["Resources"][pid].get("Properties") or {}).get("Roles")) or []
        if any(referenced_id(x) == role_id for x in raw_roles):
            for s in as_list((r.props(pid).get("PolicyDocument") or {}).get("Statement")):
                statements.append((pid, s))
    return statements


def secret_arn(secret_id):
    if secret_id.startswith("arn:"):
        return secret_id
    return f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret_id}-??????"


def consumer_expectations(r, c, env):
    """Resource → (label, required actions, also allowed actions, why) for the
    consumer's role, under this parameter set."""
    exp = {}
    source = c["source_queue"]
    source_arn = r.getatt(source, "Arn")
    exp[source_arn] = (
        f"the source queue {source}",
        {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"},
        # The poller extends visibility while it delivers; kept for a Lambda
        # consumer that returns a record later.
        {"sqs:ChangeMessageVisibility"},
        {
            "sqs:ReceiveMessage": "Lambda's event source mapping polls with the function's role",
            "sqs:DeleteMessage": "Lambda's event source mapping deletes what the function handled",
            "sqs:GetQueueAttributes": "the event source mapping needs it, and the dead-letter move reads the "
            "source queue's RedrivePolicy (dead_letter.rs, find)",
            "sqs:GetQueueUrl": "the dead-letter move looks up the record's source queue URL from its "
            "eventSourceARN (dead_letter.rs, queue_url_for_arn)",
        },
    )
    redrive = as_json(r.props(source).get("RedrivePolicy"))
    dlq = r.queue_by_arn(redrive.get("deadLetterTargetArn"))
    if dlq:
        exp[r.getatt(dlq, "Arn")] = (
            f"the dead-letter queue {dlq}",
            {"sqs:GetQueueUrl", "sqs:SendMessage"},
            set(),
            {
                "sqs:GetQueueUrl": "the dead-letter move looks up the URL of the queue the redrive policy names "
                "(dead_letter.rs, queue_url_for_arn)",
                "sqs:SendMessage": "the dead-letter move writes the envelope there (dead_letter.rs, send)",
            },
        )
    fn = r.props(c["function"])
    log_group = log_group_of(r, c["function"])
    if log_group:
        name = r.name_of(log_group)
        label = f"the consumer's log group {log_group}"
        why = {a: "the function writes its logs there" for a in ("logs:CreateLogStream", "logs:PutLogEvents")}
        for arn in (
            r.getatt(log_group, "Arn"),
            f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{name}:log-stream:*",
        ):
            exp[arn] = (label, {"logs:CreateLogStream", "logs:PutLogEvents"}, set(), why)
    for tid in r.of_type("AWS::DynamoDB::Table"):
        arn = r.getatt(tid, "Arn")
        exp[arn] = (
            f"the table {tid}",
            {"dynamodb:DescribeTable"},
            DYNAMODB_ITEM_ACTIONS | {"dynamodb:DescribeTable"},
            {"dynamodb:DescribeTable": "the consumer checks the table's keys at start-up (preflight.rs)"},
        )
        exp[arn + "/index/*"] = (f"the table {tid}", set(), DYNAMODB_ITEM_ACTIONS, {})
    env_values = {text(v) for v in env.values() if not isinstance(v, (dict, list))}
    for bid in r.of_type("AWS::S3::Bucket"):
        named = r.name_of(bid) in env_values
        exp[r.getatt(bid, "Arn")] = (
            f"the bucket {bid}",
            {"s3:ListBucket"} if named else set(),
            {"s3:ListBucket"},
            {"s3:ListBucket": "S3 answers a missing key 404 only with it (else 403): an upload record "
             "not written yet must read as none (media/s3.rs, uploaded)"},
        )
        exp[r.getatt(bid, "Arn") + "/media/*"] = (
            f"the media in bucket {bid}",
            {"s3:GetObject", "s3:PutObject"} if named else set(),
            {"s3:GetObject", "s3:PutObject"},
            {"s3:GetObject": "sends by mediaId read their files (media/s3.rs, open)",
             "s3:PutObject": "media jobs keep what people send (delivery/media_job.rs, media/s3.rs keep)"},
        )
        exp[r.getatt(bid, "Arn") + "/uploads/*"] = (
            f"the upload records in bucket {bid}",
            {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} if named else set(),
            {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
            {
                "s3:GetObject": "a file's WhatsApp id is reused for 29 days (media/s3.rs, uploaded)",
                "s3:PutObject": "the WhatsApp id of an upload is remembered (media/s3.rs, set_uploaded)",
                "s3:DeleteObject": "an id WhatsApp no longer knows is forgotten (delivery/media.rs)",
            },
        )
    keys = set()
    for topic in r.of_type("AWS::SNS::Topic"):
        arn = r.getatt(topic, "TopicArn")
        publishes = arn in env_values
        exp[arn] = (
            f"the topic {topic}",
            {"sns:Publish", "sns:GetTopicAttributes"} if publishes else set(),
            {"sns:Publish", "sns:GetTopicAttributes"},
            {
                "sns:Publish": "the consumer publishes events, and failover legs, to the topics its environment names",
                "sns:GetTopicAttributes": "the consumer checks at start-up that the topics exist (preflight.rs)",
            },
        )
        key = r.props(topic).get("KmsMasterKeyId")
        if publishes and isinstance(key, str) and key:
            keys.add(key)
    for key in keys:
        customer = key.startswith("arn:")
        res = key if customer else f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/*"
        exp[res] = (
            f"the topics' key {key}",
            # The AWS-managed key's own policy already lets the account's
            # principals use it through SNS; a customer key may not.
            {"kms:GenerateDataKey", "kms:Decrypt"} if customer else set(),
            {"kms:GenerateDataKey", "kms:Decrypt"},
            {a: "SNS uses the topic's key on the publisher's behalf" for a in ("kms:GenerateDataKey", "kms:Decrypt")},
        )
    for var, value in env.items():
        if var.endswith("_SECRET_PREFIX") and isinstance(value, str):
            # TENANT_SECRET_PREFIX: the consumer reads tenants' tokens named
            # under it, and refuses any other (tenants/file.rs).
            exp[f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:{value}*"] = (
                f"the secrets {var} names",
                {"secretsmanager:GetSecretValue"},
                set(),
                {"secretsmanager:GetSecretValue": "the consumer reads the tenants' tokens at start-up"},
            )
        elif var.endswith(SECRET_ID_SUFFIXES) and isinstance(value, str):
            exp[secret_arn(value)] = (
                f"the secret {var} names",
                {"secretsmanager:GetSecretValue"},
                set(),
                {"secretsmanager:GetSecretValue": "the consumer reads it at start-up"},
            )
    return exp


def log_group_of(r, fid):
    """The AWS::Logs::LogGroup the function logs to, if the template has it."""
    raw = ((r.resources_raw[fid].get("Properties") or {}).get("LoggingConfig") or {}).get("LogGroup")
    rid = referenced_id(raw)
    if rid in r.resources and r.resources[rid]["Type"] == "AWS::Logs::LogGroup":
        return rid
    rendered = (r.props(fid).get("LoggingConfig") or {}).get("LogGroup")
    wanted = rendered if isinstance(rendered, str) else f"/aws/lambda/{r.name_of(fid)}"
    for lg in r.of_type("AWS::Logs::LogGroup"):
        if r.name_of(lg) == wanted:
            return lg
    return None


# --- the checks ----------------------------------------------------------------


def check_scenario(t, overrides, providers, fail):
    try:
        r = Rendered(t, overrides)
    except EvalError as e:
        fail(f"cannot evaluate the template: {e}")
        return
    c = consumer_of(t)
    if not c:
        fail("no function has an SQS event source: cannot find the consumer")
        return
    fid = c["function"]
    if fid not in r.resources:
        fail(f"the consumer {fid} is not in the template")
        return
    fn = r.props(fid)
    env = (fn.get("Environment") or {}).get("Variables") or {}
    globals_env = r.render(((t.get("Globals") or {}).get("Function") or {}).get("Environment") or {})
    env = {**(globals_env.get("Variables") or {}), **env}

    # Provider secrets: exactly the variables the consumer reads.
    for provider, var in PROVIDER_SECRET_VARS.items():
        if provider in providers and not env.get(var):
            fail(f"{fid}: {var} is not set although {provider} is configured (the consumer reads the secret's id from it)")
        if provider not in providers and var in env:
            fail(f"{fid}: {var} is set although {provider} is not configured")

    check_encryption(r, fail)
    check_redrive(r, c, fail)
    check_log_group(r, fid, fail)
    check_wildcards(r, fail)

    # The consumer's role.
    raw_props = r.resources_raw[fid].get("Properties") or {}
    role_id = referenced_id(raw_props.get("Role"))
    if "Policies" in raw_props:
        fail(f"{fid}: a SAM Policies property adds grants this check cannot see; put them in the role")
    if not role_id or role_id not in r.resources:
        fail(f"{fid}: no Role of its own in the template (SAM would make one, with the SQS trigger's policy on \"*\")")
        return
    role = r.props(role_id)
    if role.get("ManagedPolicyArns"):
        fail(f"{role_id}: managed policies {role['ManagedPolicyArns']} grant what this check cannot see")
    if source_qid := c["source_queue"]:
        if source_qid not in r.resources or r.resources[source_qid]["Type"] != "AWS::SQS::Queue":
            fail(f"{c['where']}: its queue {source_qid} is not a queue of the template")
            return
    else:
        fail(f"{c['where']}: its Queue is not a !GetAtt of a queue of the template")
        return
    exp = consumer_expectations(r, c, env)
    granted = {}
    sns_region = f"sns.{REGION}.amazonaws.com"
    for where, s in role_statements(t, r, role_id):
        if s.get("Effect") != "Allow":
            continue
        sid = s.get("Sid") or "(no Sid)"
        for action in as_list(s.get("Action")):
            for res in as_list(s.get("Resource")):
                granted.setdefault(res, set()).add(action)
                if res == "*" or "*" in action:
                    continue  # check_wildcards reports it
                if action.startswith("kms:"):
                    via = ((s.get("Condition") or {}).get("StringEquals") or {}).get("kms:ViaService")
                    if via != sns_region:
                        fail(f"{role_id} {sid}: {action} on {res} without the condition kms:ViaService = {sns_region}")
                if res not in exp:
                    what = ("which is not a provider secret the consumer's environment names"
                            if action.startswith("secretsmanager:") else "which is none of the consumer's resources")
                    fail(f"{role_id} {sid}: grants {action} on {res}, {what}")
                    continue
                label, required, optional, _ = exp[res]
                if action not in required | optional:
                    fail(f"{role_id} {sid}: grants {action} on {label} ({res}); it needs only "
                         f"{', '.join(sorted(required | optional)) or 'nothing'}")
    # Several ARNs may name one resource (a log group, and its streams): what
    # is required is granted on any of them.
    groups = {}
    for res, (label, required, _, why) in exp.items():
        group = groups.setdefault(label, {"resources": [], "required": required, "why": why, "granted": set()})
        group["resources"].append(res)
        group["granted"] |= granted.get(res, set())
    for label, group in groups.items():
        for action in sorted(group["required"] - group["granted"]):
            fail(f"{role_id}: lacks {action} on {label} ({group['resources'][0]}): {group['why'].get(action, 'needed')}")


def check_wildcards(r, fail):
    """No wildcard action and no Resource "*" (beyond STAR_RESOURCE_OK) in any
    identity policy of the template."""
    docs = []
    for rid in r.of_type("AWS::IAM::Role"):
        for p in r.props(rid).get("Policies") or []:
            docs.append((f"{rid}/{p.get('PolicyName')}", p.get("PolicyDocument") or {}))
    for rid in r.of_type("AWS::IAM::Policy") + r.of_type("AWS::IAM::ManagedPolicy"):
        docs.append((rid, r.props(rid).get("PolicyDocument") or {}))
    for where, doc in docs:
        for s in as_list(doc.get("Statement")):
            sid = s.get("Sid") or "(no Sid)"
            if s.get("Effect") != "Allow":
                continue
            for k in ("NotAction", "NotResource"):
                if k in s:
                    fail(f"{where} {sid}: {k} grants everything else")
            actions = as_list(s.get("Action"))
            for action in actions:
                if "*" in action:
                    fail(f"{where} {sid}: wildcard action {action!r}: name the actions")
            if "*" in as_list(s.get("Resource")):
                broad = [a for a in actions if a not in STAR_RESOURCE_OK]
                if broad:
                    fail(f"{where} {sid}: Resource \"*\" for {', '.join(broad)}: name the resources")


def check_encryption(r, fail):
    for tid in r.of_type("AWS::SNS::Topic"):
        if not r.props(tid).get("KmsMasterKeyId"):
            fail(f"{tid}: no KmsMasterKeyId: the topic is not encrypted at rest")
    sns_endpoints = {r.props(s).get("Endpoint") for s in r.of_type("AWS::SNS::Subscription")}
    for qid in r.of_type("AWS::SQS::Queue"):
        props = r.props(qid)
        key = props.get("KmsMasterKeyId")
        if text(props.get("SqsManagedSseEnabled", False)) != "true" and not key:
            fail(f"{qid}: neither SqsManagedSseEnabled nor KmsMasterKeyId: the queue is not encrypted at rest")
        if key == "alias/aws/sqs" and r.getatt(qid, "Arn") in sns_endpoints:
            fail(f"{qid}: under alias/aws/sqs, which SNS cannot use: its subscription cannot deliver "
                 "(use SqsManagedSseEnabled or a customer key granting sns.amazonaws.com)")
    for tid in r.of_type("AWS::DynamoDB::Table"):
        if text((r.props(tid).get("SSESpecification") or {}).get("SSEEnabled", False)) != "true":
            fail(f"{tid}: SSESpecification.SSEEnabled is not true")
    for bid in r.of_type("AWS::S3::Bucket"):
        props = r.props(bid)
        if not (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration"):
            fail(f"{bid}: no BucketEncryption: the media is not encrypted at rest")
        block = props.get("PublicAccessBlockConfiguration") or {}
        for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if text(block.get(k, False)) != "true":
                fail(f"{bid}: PublicAccessBlockConfiguration.{k} is not true: the media could be made public")


def check_redrive(r, c, fail):
    queues = r.of_type("AWS::SQS::Queue")
    sources_of = {}  # dead-letter queue → queues whose RedrivePolicy targets it
    for qid in queues:
        policy = as_json(r.props(qid).get("RedrivePolicy"))
        if policy:
            dlq = r.queue_by_arn(policy.get("deadLetterTargetArn"))
            if not dlq:
                fail(f"{qid}: its RedrivePolicy targets {policy.get('deadLetterTargetArn')}, no queue of the template")
            else:
                sources_of.setdefault(dlq, []).append(qid)
    source = c["source_queue"]
    if source in queues and not any(source in s for s in sources_of.values()):
        fail(f"{source}: the consumer's queue has no RedrivePolicy targeting a dead-letter queue")
    for qid in queues:
        allow = r.props(qid).get("RedriveAllowPolicy")
        if allow is None:
            if qid in sources_of:
                fail(f"{qid}: the dead-letter queue has no RedriveAllowPolicy (byQueue, naming "
                     f"{', '.join(sources_of[qid])})")
            continue
        if qid not in sources_of:
            fail(f"{qid}: has a RedriveAllowPolicy but is no queue's dead-letter queue "
                 "(RedriveAllowPolicy belongs on the dead-letter queue)")
            continue
        allow = as_json(allow)
        wanted = sorted(r.getatt(s, "Arn") for s in sources_of[qid])
        if allow.get("redrivePermission") != "byQueue" or sorted(as_list(allow.get("sourceQueueArns"))) != wanted:
            fail(f"{qid}: RedriveAllowPolicy should be byQueue with sourceQueueArns {wanted}, "
                 f"not {json.dumps(allow)}")


def check_log_group(r, fid, fail):
    lg = log_group_of(r, fid)
    fname = r.name_of(fid)
    if not lg:
        fail(f"{fid}: no AWS::Logs::LogGroup for it (/aws/lambda/{fname}, or its LoggingConfig.LogGroup): "
             "Lambda's own keeps logs forever")
        return
    if r.props(lg).get("RetentionInDays") in (None, ""):
        fail(f"{lg}: no RetentionInDays")
    if r.name_of(lg) != f"/aws/lambda/{fname}":
        fail(f"{lg}: named {r.name_of(lg)}, not /aws/lambda/{fname}")
    raw = ((r.resources_raw[fid].get("Properties") or {}).get("LoggingConfig") or {}).get("LogGroup")
    if referenced_id(raw) != lg:
        fail(f"{fid}: LoggingConfig.LogGroup should be !Ref {lg}")


def check_static(t, fail):
    """Checks on the template as written (not evaluated)."""
    params = t.get("Parameters") or {}
    for fid, res in (t.get("Resources") or {}).items():
        if res.get("Type") not in FUNCTION_TYPES:
            continue
        for var, value in function_env(t, fid).items():
            check_env_var(fid, var, value, params, fail)
    c = consumer_of(t)
    if not c:
        return
    scaling = (c["event"].get("ScalingConfig") or {}).get("MaximumConcurrency")
    pname = scaling.get("Ref") if isinstance(scaling, dict) else None
    if scaling is None:
        fail(f"{c['where']}: no ScalingConfig.MaximumConcurrency: the consumer fleet is unbounded")
    elif pname not in params:
        fail(f"{c['where']}: ScalingConfig.MaximumConcurrency should be !Ref of a parameter, not {scaling!r}")
    else:
        spec = params[pname] or {}
        lo, hi, default = spec.get("MinValue"), spec.get("MaxValue"), spec.get("Default")
        if spec.get("Type") != "Number" or lo is None or hi is None or not 2 <= float(lo) <= float(hi) <= 1000:
            fail(f"parameter {pname}: should be a Number with MinValue/MaxValue within 2-1000 "
                 "(Lambda's range for MaximumConcurrency)")
        elif default is None or not float(lo) <= float(default) <= float(hi):
            fail(f"parameter {pname}: its Default is outside {lo}-{hi}")


def _strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from _strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)


def _branches(v):
    """The values an expression may take (both sides of every !If)."""
    if isinstance(v, dict) and "Fn::If" in v and len(v) == 1:
        for x in v["Fn::If"][1:]:
            yield from _branches(x)
    else:
        yield v


def _is_literal(v):
    if isinstance(v, (str, int, float, bool)):
        return v != ""
    if isinstance(v, dict) and "Fn::Sub" in v:
        arg = v["Fn::Sub"]
        return isinstance(arg, str) and "${" not in arg
    if isinstance(v, dict) and "Fn::Join" in v:
        return all(_is_literal(x) for x in as_list(v["Fn::Join"][1]))
    return False


def _parameters_in(v, params):
    found = set()
    for s in _strings(v):
        found.update(p for p in re.findall(r"\$\{([^}!.]+)\}", s) if p in params)
    if isinstance(v, dict):
        if v.get("Ref") in params:
            found.add(v["Ref"])
        for x in v.values():
            found |= _parameters_in(x, params)
    elif isinstance(v, list):
        for x in v:
            found |= _parameters_in(x, params)
    return found


def check_env_var(fid, var, value, params, fail):
    for s in _strings(value):
        for dyn in SECRET_DYNAMIC_REFS:
            if dyn in s:
                fail(f"{fid}: Environment {var} holds {{{{{dyn}:…}}}}: the secret's value would be readable "
                     "with lambda:GetFunctionConfiguration; pass its id in a *_SECRET_ID variable")
    if not SECRET_NAME.search(var.upper()) or var in NOT_SECRET_VARS:
        return
    for branch in _branches(value):
        if branch == {"Ref": "AWS::NoValue"}:
            continue
        if var.endswith(SECRET_ID_SUFFIXES):
            if _is_literal(branch):
                fail(f"{fid}: Environment {var} is the literal {branch!r}: name the secret through a parameter")
        elif _is_literal(branch):
            fail(f"{fid}: Environment {var} is a literal-looking secret: pass its Secrets Manager id in "
                 f"{var}_SECRET_ID instead")
        elif _parameters_in(branch, params):
            fail(f"{fid}: Environment {var} holds parameter {', '.join(sorted(_parameters_in(branch, params)))}: "
                 f"a secret passed that way is in the function's configuration; use {var}_SECRET_ID")


def run_checks(t):
    """Every failure, as sorted lines."""
    failures = {}
    order = []

    def collector(label):
        def fail(msg):
            if msg not in failures:
                failures[msg] = []
                order.append(msg)
            failures[msg].append(label)
        return fail

    check_static(t, collector("as written"))
    names = []
    for name, params, providers in scenarios():
        names.append(name)
        unknown = [p for p in params if p not in (t.get("Parameters") or {})]
        if unknown:
            collector(name)(f"parameter(s) {', '.join(unknown)} that this check sets are not in the template")
            params = {k: v for k, v in params.items() if k not in unknown}
        check_scenario(t, params, providers, collector(name))
    lines = []
    for msg in order:
        labels = failures[msg]
        if labels == ["as written"] or len(labels) == len(names):
            lines.append(msg)
        else:
            lines.append(f"{msg} [with: {'; '.join(labels)}]")
    return lines


# --- self-test -----------------------------------------------------------------


def _consumer_parts(t):
    c = consumer_of(t)
    if not c:
        raise LookupError("no SQS consumer")
    res = t["Resources"]
    role_id = referenced_id((res[c["function"]].get("Properties") or {}).get("Role"))
    statements = res[role_id]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    dlq = referenced_id(res[c["source_queue"]]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
    return c, res, statements, dlq


def _unwrap(s):
    return s["Fn::If"][1] if isinstance(s, dict) and "Fn::If" in s else s


def _statement_on(statements, queue_id, action):
    for s in statements:
        s = _unwrap(s)
        if referenced_id(s.get("Resource")) == queue_id and action in as_list(s.get("Action")):
            return s
    raise LookupError(f"no statement grants {action} on {queue_id}")


def _drop_action(s, action):
    s["Action"] = [a for a in as_list(s["Action"]) if a != action]


def _topics(t):
    return [rid for rid, res in t["Resources"].items() if res.get("Type") == "AWS::SNS::Topic"]


def _m_topic_key(index):
    def m(t):
        del t["Resources"][_topics(t)[index]]["Properties"]["KmsMasterKeyId"]
    return m


def _m_env(var, value):
    def m(t):
        c, res, _, _ = _consumer_parts(t)
        res[c["function"]]["Properties"]["Environment"]["Variables"][var] = value
    return m


def _m_no_scaling(t):
    c, _, _, _ = _consumer_parts(t)
    del c["event"]["ScalingConfig"]


def _m_redrive_allow_on_source(t):
    c, res, _, dlq = _consumer_parts(t)
    res[c["source_queue"]]["Properties"]["RedriveAllowPolicy"] = res[dlq]["Properties"].pop("RedriveAllowPolicy")


def _m_drop_grant(which, action):
    def m(t):
        c, _, statements, dlq = _consumer_parts(t)
        _drop_action(_statement_on(statements, c["source_queue"] if which == "source" else dlq, action), action)
    return m


def _m_secret_wildcard(t):
    _, _, statements, _ = _consumer_parts(t)
    for s in statements:
        s = _unwrap(s)
        if "secretsmanager:GetSecretValue" in as_list(s.get("Action")):
            s["Resource"] = {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*"}
            return
    raise LookupError("no GetSecretValue statement")


def _m_no_via_service(t):
    _, _, statements, _ = _consumer_parts(t)
    for s in statements:
        s = _unwrap(s)
        if any(a.startswith("kms:") for a in as_list(s.get("Action"))):
            s.pop("Condition", None)
            return
    raise LookupError("no kms statement")


def _m_add_statement(statement):
    def m(t):
        _, _, statements, _ = _consumer_parts(t)
        statements.append(statement)
    return m


def _m_no_retention(t):
    for res in t["Resources"].values():
        if res.get("Type") == "AWS::Logs::LogGroup":
            del res["Properties"]["RetentionInDays"]
            return
    raise LookupError("no log group")


def _m_unencrypted_dlq(t):
    _, res, _, dlq = _consumer_parts(t)
    del res[dlq]["Properties"]["SqsManagedSseEnabled"]


MUTATIONS = [
    # (what, mutation, a string one reported line must contain)
    ("first topic without KmsMasterKeyId", _m_topic_key(0), "KmsMasterKeyId"),
    ("second topic without KmsMasterKeyId", _m_topic_key(-1), "KmsMasterKeyId"),
    ("resolve:secretsmanager in an Environment value",
     _m_env("WHATSAPP_ACCESS_TOKEN", {"Fn::Sub": "{{resolve:secretsmanager:${WhatsAppTokenSecretName}}}"}),
     "resolve:secretsmanager"),
    ("resolve:ssm-secure in an Environment value",
     _m_env("INFOBIP_WEBHOOK_SECRET", "{{resolve:ssm-secure:/herald/infobip}}"), "resolve:ssm-secure"),
    ("literal secret in an Environment value", _m_env("INFOBIP_API_KEY", "0123456789abcdef0123"), "literal"),
    ("secret parameter in an Environment value",
     _m_env("WHATSAPP_ACCESS_TOKEN", {"Ref": "WhatsAppTokenSecretName"}), "holds parameter"),
    ("ScalingConfig dropped", _m_no_scaling, "MaximumConcurrency"),
    ("RedriveAllowPolicy back on the source queue", _m_redrive_allow_on_source, "RedriveAllowPolicy"),
    ("GetQueueUrl removed from the source queue's grant", _m_drop_grant("source", "sqs:GetQueueUrl"),
     "lacks sqs:GetQueueUrl on the source queue"),
    ("GetQueueAttributes removed from the source queue's grant", _m_drop_grant("source", "sqs:GetQueueAttributes"),
     "lacks sqs:GetQueueAttributes on the source queue"),
    ("SendMessage removed from the dead-letter queue's grant", _m_drop_grant("dlq", "sqs:SendMessage"),
     "lacks sqs:SendMessage on the dead-letter queue"),
    ("GetQueueUrl removed from the dead-letter queue's grant", _m_drop_grant("dlq", "sqs:GetQueueUrl"),
     "lacks sqs:GetQueueUrl on the dead-letter queue"),
    ("GetSecretValue on every secret", _m_secret_wildcard, "not a provider secret"),
    ("topic key grant without kms:ViaService", _m_no_via_service, "without the condition kms:ViaService"),
    ("wildcard action", _m_add_statement({"Effect": "Allow", "Action": "sqs:*", "Resource": "arn:aws:sqs:x:1:q"}),
     "wildcard action"),
    ("Resource \"*\"", _m_add_statement({"Effect": "Allow", "Action": "sns:Publish", "Resource": "*"}),
     "Resource \"*\""),
    ("an action the consumer has no use for",
     _m_add_statement({"Effect": "Allow", "Action": "sqs:PurgeQueue",
                       "Resource": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}), "sqs:PurgeQueue"),
    ("log group without RetentionInDays", _m_no_retention, "RetentionInDays"),
    ("dead-letter queue not encrypted", _m_unencrypted_dlq, "not encrypted"),
]


def self_test(t):
    ok = True
    clean = run_checks(t)
    if clean:
        ok = False
        print(f"self-test: the template itself fails ({len(clean)} problems):")
        for line in clean:
            print(f"  FAIL {line}")
    for what, mutate, expected in MUTATIONS:
        mutated = copy.deepcopy(t)
        try:
            mutate(mutated)
        except (LookupError, KeyError, IndexError, TypeError) as e:
            ok = False
            print(f"self-test: {what}: cannot apply the mutation ({e!r})")
            continue
        lines = run_checks(mutated)
        hit = next((line for line in lines if expected in line), None)
        if hit:
            print(f"self-test: {what}: reported ({hit})")
        else:
            ok = False
            print(f"self-test: {what}: NOT reported (expected a line with {expected!r}; got {lines})")
    print(f"self-test: {'ok' if ok else 'FAILED'} ({len(MUTATIONS)} mutations)")
    return ok


def main(argv):
    args = [a for a in argv if a != "--self-test"]
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: check_template.py [--self-test] TEMPLATE")
        return 2
    t = load(args[0])
    if "--self-test" in argv:
        return 0 if self_test(t) else 1
    lines = run_checks(t)
    for line in lines:
        print(f"check_template: FAIL {line}")
    if lines:
        print(f"check_template: {args[0]}: {len(lines)} problem(s)")
        return 1
    print(f"check_template: {args[0]}: ok ({sum(1 for _ in scenarios())} parameter sets)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

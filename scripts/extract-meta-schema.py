#!/usr/bin/env python3
"""Extracts the `Message` schema (the send request body) from Meta's official
WhatsApp Business Messaging OpenAPI file into a standalone JSON Schema that the
consumer's tests validate every request against.

Usage (needs PyYAML, which the test virtualenv has):
    .venv/bin/python scripts/extract-meta-schema.py \
        path/to/business-messaging-api_v23.0.yaml \
        > tests/fixtures/meta/message.schema.json

The input is Meta's file from https://github.com/facebook/openapi (commit
ecba623b4aba6ae770185b074ed77ed5acef22f7; see docs/providers/whatsapp.md).

Meta's file is written for documentation generators, not strict validators, so
five mechanical changes are made, each to a known gap in the file:
  1. `allOf` branches are merged into one object schema. Meta puts
     `additionalProperties: false` inside each branch, which a strict validator
     reads as "no message can ever be valid" (each branch forbids the other's
     properties).
  2. `InteractiveObject.type` gains `cta_url`, and the interactive `action` gains
     the `cta_url` shape (`name` + `parameters.display_text/url`): documented by
     Meta, missing from the file.
  3. `LocationMessage` latitude/longitude accept numbers as well as strings: the
     file types them as strings while Meta's own examples send numbers.
  4. `BaseMessageProperties` gains `biz_opaque_callback_data` (string), which
     Meta documents for status correlation but the file omits.
  5. `TemplateComponent.index` gets the pattern `^[0-9]$`: the file's pattern
     `^[2-6, 11-14]$` is a malformed character class that rejects "0" and "1",
     the indexes in Meta's own examples (the description says 0-9).
Everything else is Meta's text. The file is MIT-licensed (see LICENSE beside the output).
"""
import copy
import json
import sys

import yaml

REF = "#/components/schemas/"


def main(path):
    with open(path) as f:
        spec = yaml.safe_load(f)
    schemas = spec["components"]["schemas"]

    base = schemas["BaseMessageProperties"]["properties"]
    base["biz_opaque_callback_data"] = {"type": "string", "maxLength": 512}
    schemas["InteractiveObject"]["properties"]["type"]["enum"].append("cta_url")
    action = schemas["ActionObject"]
    action.setdefault("oneOf", []).append({
        "required": ["name", "parameters"],
        "properties": {
            "name": {"type": "string", "enum": ["cta_url"]},
            "parameters": {
                "type": "object",
                "required": ["display_text", "url"],
                "properties": {"display_text": {"type": "string", "maxLength": 20}, "url": {"type": "string"}},
                "additionalProperties": False,
            },
        },
    })
    for name in ("TemplateComponent", "ButtonComponent"):
        for part in [schemas[name]] + schemas[name].get("allOf", []):
            idx = part.get("properties", {}).get("index")
            if idx and "pattern" in idx:
                idx["pattern"] = "^[0-9]$"
    loc = schemas["LocationMessage"]["allOf"][1]["properties"]["location"]["properties"]
    for k in ("latitude", "longitude"):
        loc[k] = {"type": ["string", "number"], "description": loc[k].get("description", "")}

    def resolve(node):
        if isinstance(node, dict) and "$ref" in node and len(node) == 1:
            return schemas[node["$ref"][len(REF):]]
        return node

    def merge_all_of(node):
        merged = {"type": "object", "properties": {}, "required": []}
        closed = False
        for branch in node["allOf"]:
            branch = copy.deepcopy(resolve(branch))
            if "allOf" in branch:
                branch = merge_all_of(branch)
            merged["properties"].update(branch.get("properties", {}))
            merged["required"] += [r for r in branch.get("required", []) if r not in merged["required"]]
            closed = closed or branch.get("additionalProperties") is False
            for key in ("oneOf", "anyOf", "description"):
                if key in branch:
                    merged[key] = branch[key]
        if closed:
            merged["additionalProperties"] = False
        return merged

    def fix(node):
        if isinstance(node, list):
            return [fix(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "allOf" in node:
            node = merge_all_of(node)
        out = {}
        for k, v in node.items():
            if k in ("discriminator", "example", "examples", "xml"):
                continue
            if k == "$ref":
                out[k] = "#/$defs/" + v[len(REF):]
            elif k == "properties":
                out[k] = {name: fix(s) for name, s in v.items()}
            else:
                out[k] = fix(v)
        return out

    # Keep only what the Message schema reaches.
    defs, todo = {}, ["Message"]
    while todo:
        name = todo.pop()
        if name in defs:
            continue
        defs[name] = fix(copy.deepcopy(schemas[name]))
        text = json.dumps(defs[name])
        todo += [part.split('"')[0] for part in text.split('"#/$defs/')[1:]]
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Generated by scripts/extract-meta-schema.py from Meta's business-messaging-api_v23.0.yaml (MIT).",
        "$ref": "#/$defs/Message",
        "$defs": defs,
    }
    json.dump(doc, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])

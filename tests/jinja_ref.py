#!/usr/bin/env python3
"""jinja_ref.py - the independent reference for tests/test_jinja.c.

Renders Jinja2 templates with Python's jinja2 the way Hugging Face
transformers renders chat templates: an ImmutableSandboxedEnvironment with the
loopcontrols extension, HF's tojson filter (json.dumps with ensure_ascii=False,
no HTML escaping), raise_exception and strftime_now globals, and a
{% generation %} block that renders its body.

    python3 tests/jinja_ref.py CASES.json > RESULTS.json

CASES.json: {"cases": [{"template": "..." | "template_file": "path",
                         "context": {...}, "trim_blocks": bool, "lstrip_blocks": bool,
                         "now": [year, month, day, hour, minute, second]}, ...]}
RESULTS.json: a list, one entry per case, in order:
    {"ok": true, "output": "..."} or {"ok": false, "type": "UndefinedError", "error": "..."}
"""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationBlock(jinja2.ext.Extension):
    """HF's assistant-mask marker: {% generation %}...{% endgeneration %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def render(case):
    env = ImmutableSandboxedEnvironment(
        trim_blocks=bool(case.get("trim_blocks")),
        lstrip_blocks=bool(case.get("lstrip_blocks")),
        extensions=[GenerationBlock, jinja2.ext.loopcontrols],
    )
    now = datetime(*case.get("now", [2024, 7, 26, 13, 45, 30]))
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: now.strftime(fmt)
    if "template_file" in case:
        with open(case["template_file"], encoding="utf-8", newline="") as f:
            source = f.read()
    else:
        source = case["template"]
    try:
        out = env.from_string(source).render(**case.get("context", {}))
        return {"ok": True, "output": out}
    except Exception as e:  # every failure is a result to compare, not a crash
        return {"ok": False, "type": type(e).__name__, "error": str(e)}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    json.dump([render(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()

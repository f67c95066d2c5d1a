"""Reading a job file's text (libconfig syntax) into nested dicts, so a worker
program can take keys of its own from the JOB task's job_text (the data
paths, data.validation, data.subset, seed). Groups become dicts, arrays and
lists Python lists, strings str, integers int (an L suffix allowed), other
numbers float, true/false bool. Not a validator: mltunerd checked the job.
"""

import re

_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<num>[-+]?(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)L{0,2})
  | (?P<name>[A-Za-z*][-A-Za-z0-9_*]*)
  | (?P<punct>[=:;,{}\[\]()])
""", re.VERBOSE | re.DOTALL)


class JobTextError(ValueError):
    pass


def _tokens(text):
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise JobTextError("job text line %d: unexpected %r" % (line, text[pos:pos + 10]))
        pos = m.end()
        if m.lastgroup != "ws":
            yield m.lastgroup, m.group()


def _unquote(s):
    return bytes(s[1:-1], "utf-8").decode("unicode_escape")


class _Parser:
    def __init__(self, text):
        self.toks = list(_tokens(text))
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, want=None):
        t = self.peek()
        if t[0] is None or (want is not None and t[1] != want):
            raise JobTextError("job text: expected %r, found %r" % (want or "a value", t[1]))
        self.i += 1
        return t

    def settings(self, end):
        out = {}
        while self.peek()[1] != end:
            kind, name = self.take()
            if kind != "name":
                raise JobTextError("job text: expected a setting name, found %r" % name)
            self.take("=") if self.peek()[1] == "=" else self.take(":")
            out[name] = self.value()
            if self.peek()[1] in (";", ","):
                self.i += 1
        return out

    def value(self):
        kind, v = self.take()
        if kind == "str":
            s = _unquote(v)
            while self.peek()[0] == "str":  # adjacent strings concatenate
                s += _unquote(self.take()[1])
            return s
        if kind == "num":
            t = v.rstrip("L")
            if t.lower().startswith(("0x", "-0x", "+0x")):
                return int(t, 16)
            return int(t) if re.fullmatch(r"[-+]?\d+", t) else float(t)
        if kind == "name" and v.lower() in ("true", "false"):
            return v.lower() == "true"
        if v == "{":
            g = self.settings("}")
            self.take("}")
            return g
        if v in ("[", "("):
            close = "]" if v == "[" else ")"
            items = []
            while self.peek()[1] != close:
                items.append(self.value())
                if self.peek()[1] == ",":
                    self.i += 1
            self.take(close)
            return items
        raise JobTextError("job text: unexpected %r" % v)


def parse(text):
    """The job text as nested dicts."""
    p = _Parser(text)
    out = p.settings(None)
    return out


def get(job, path, default=None):
    """job["a"]["b"] for path "a.b", or default where a part is missing."""
    cur = job
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur

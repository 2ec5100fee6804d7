"""Reads SCIM filters (one JSON string per line) and prints, per line, whether
scim2-filter-parser (an independent implementation, from PyPI) accepts it:
`ok` or `err`."""
import json
import sys

from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser

for line in sys.stdin:
    text = json.loads(line)
    try:
        accepted = SCIMParser().parse(SCIMLexer().tokenize(text)) is not None
    except Exception:  # the parser signals a bad filter by raising
        accepted = False
    print("ok" if accepted else "err", flush=False)

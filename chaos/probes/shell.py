"""{name} placeholders filled into a shell command as literal words (no imports beyond re,
shlex: the Python probes' agent uses it too)."""

from __future__ import annotations

import re
import shlex

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.-]*)\}")


def shell_expand(command: str, variables: dict[str, str]) -> str:
    """Fill ``{name}`` placeholders into a shell command, quoted for where each one stands:
    outside quotes as a single-quoted word, inside '...' by closing and reopening the quote
    around it, inside "..." with $ ` \\ " escaped. A value that needs no quoting is
    unchanged, so commands read as before (`{cache}/library/busybox:1`)."""
    out: list[str] = []
    state: str | None = None  # None (unquoted), "'" or '"'
    i = 0
    while i < len(command):
        ch = command[i]
        match = _PLACEHOLDER.match(command, i) if ch == "{" else None
        if match and match[1] in variables:
            value = variables[match[1]]
            if state is None:
                out.append(shlex.quote(value))
            elif state == "'":
                out.append(value if "'" not in value else value.replace("'", "'\\''"))
            else:
                out.append(re.sub(r'([$`\\"])', r"\\\1", value))
            i = match.end()
            continue
        out.append(ch)
        if ch == "\\" and state != "'" and i + 1 < len(command):
            out.append(command[i + 1])  # an escaped character: no quote starts or ends here
            i += 2
            continue
        if state is None and ch in "'\"":
            state = ch
        elif state == ch:
            state = None
        i += 1
    return "".join(out)

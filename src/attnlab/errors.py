"""The errors a user can cause, as opposed to bugs.

Every one derives from `AttnlabError` (what the CLI turns into a one-line message and
exit 2) and from ValueError (what these errors were before, so `except ValueError` in
callers keeps working). Anything else that reaches the CLI is a bug and keeps its
traceback.
"""

from __future__ import annotations


class AttnlabError(Exception):
    """Base of the errors a user can cause and fix: bad input, spec or option."""


class InputError(AttnlabError, ValueError):
    """Text or a file the model cannot take: unreadable, empty, or longer than its context."""


class SpecError(AttnlabError, ValueError):
    """A bad 'name:key=value' spec: unknown kernel / modifier / parameter, or a wrong value type."""


class OptionError(AttnlabError, ValueError):
    """A bad option value (format, split, norm, model name, heads, ...)."""
